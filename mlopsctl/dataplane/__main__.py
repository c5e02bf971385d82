"""``python -m mlopsctl.dataplane --port PORT``: see :mod:`mlopsctl.dataplane.server`."""

import sys

from mlopsctl.dataplane.server import main

sys.exit(main())
