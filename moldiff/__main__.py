"""``python -m moldiff`` = the ``moldiff`` command."""
import sys

from moldiff.cli import main

sys.exit(main())
