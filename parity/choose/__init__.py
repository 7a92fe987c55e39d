"""Choosing a framework: `--bench` (speed and memory of each backend, each in a fresh
worker) and `--fit` (training on real data in every backend from the same weights).

    bench    the measurements          fit      the training runs and their curves
    data     digits / IDX / CIFAR-10   machine  the machine and its load
    report   tables and JSON           plots    the figures (matplotlib, lazily)
    cli      the flags (`add_flags`, `selected`, `run`), called from parity/cli.py

Importing this package imports no framework, no matplotlib and no scikit-learn.
"""
