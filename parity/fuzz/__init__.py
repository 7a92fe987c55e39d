"""Differential fuzzing: random valid specs over the whole vocabulary, built in every
backend and compared with the numpy reference; every disagreement shrunk to a minimal
reproducer and classified (`python -m parity fuzz`).

    generate  seeded random specs (case i of seed S is always the same)
    run       one case in every backend against the numpy reference, per dtype
    shrink    a disagreeing case reduced while it still disagrees
    repro     the reproducer files (spec, weights, input, outputs, standalone scripts)
    known     the table of known framework bugs
    cli       the command line

Imports no framework: backends are loaded through `refnets.backends.get`.
"""
