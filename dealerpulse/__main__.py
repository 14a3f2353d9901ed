"""``python -m dealerpulse``: the same as the ``dealerpulse`` console script."""

import sys

from dealerpulse.cli import main

sys.exit(main())
