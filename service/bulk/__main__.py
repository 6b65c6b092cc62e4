"""``python -m service.bulk``: :func:`service.bulk.cli.main`."""

import sys

from service.bulk.cli import main

sys.exit(main())
