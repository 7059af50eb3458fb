"""`python -m edge` is the `lineside` command."""

import sys

from edge.cli import main

sys.exit(main())
