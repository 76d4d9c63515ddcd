"""``python -m mtl`` is the ``mtl`` command."""

import sys

from mtl.cli import main

sys.exit(main())
