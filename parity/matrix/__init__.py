"""`python -m parity matrix`: the run matrix, every (model, dtype, mode) over the
chosen backends, in a local process pool or on a Ray cluster, resumable.

Layout: `cells` (one cell: its settings, its hash, running it through the
library), `engines` (the process pool, Ray, the progress display), `store` (the
results directory: a file per cell, written atomically), `table` (the markdown
table, the JSON document, the exit code), `cli`."""
