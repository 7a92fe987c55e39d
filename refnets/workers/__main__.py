"""`python -m refnets.workers BACKEND_LABEL`: a backend in a worker process (see `server`)."""

import sys

from .server import main

sys.exit(main())
