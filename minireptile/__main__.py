"""``python -m minireptile`` runs the command line (see :mod:`minireptile.cli`)."""

import sys

from .cli import main

sys.exit(main())
