"""``python -m sandbox`` is the same as ``nic-sandbox``."""

import sys

from sandbox.cli import main

sys.exit(main())
