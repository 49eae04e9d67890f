"""``python -m diffir.data.prepare``: see :mod:`diffir.data.prepare`."""

import sys

from .cli import main

sys.exit(main())
