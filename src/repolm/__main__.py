"""`python -m repolm` runs the command line."""

import sys

from repolm.cli import main

sys.exit(main())
