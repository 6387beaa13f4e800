"""``python -m pygestor``: the command line."""

import sys

from pygestor.cli import main

sys.exit(main())
