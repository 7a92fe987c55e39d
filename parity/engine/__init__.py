"""Run set-up shared by every mode: `config` (checks, model, backends, weights,
seeded input, tolerance), `header` (the result header every mode shares, progress,
timing), `session` (the inference steps), `metrics`, `localise`, `tolerances`."""
