"""`python -m dualasr.bench worker ...`: the bench's worker processes (see worker.py)."""

import sys

from .worker import worker_main

sys.exit(worker_main(sys.argv[1:]))
