"""The reports of every mode: text tables for people (`text`), strict JSON for
machines (`as_dict`, `write_json`): `inference` (parity.run, run_against), `port`,
`training`; `tables` holds what they share."""
