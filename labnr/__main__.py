"""``python -m labnr`` runs the command line."""

import sys

from labnr.cli import main

sys.exit(main())
