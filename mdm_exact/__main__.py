"""``python -m mdm_exact``: the ``mdm-exact`` command line."""

import sys

from .cli import main

sys.exit(main())
