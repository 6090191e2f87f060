"""``python -m sandbox`` is the same as ``nic-sandbox``."""

import sys

from sandbox.launch import main

sys.exit(main())
