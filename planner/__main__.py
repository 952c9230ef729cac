"""`python -m planner`: the same as the `planner` command."""

import sys

from planner.cli import console_main

sys.exit(console_main())
