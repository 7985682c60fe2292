"""`python -m dualasr.corpus`: see dualasr.corpus."""

from dualasr.corpus import main

raise SystemExit(main())
