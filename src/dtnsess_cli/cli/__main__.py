"""``python -m dtnsess_cli.cli``: the same as the ``dtnsess`` script."""

import sys

from . import main

sys.exit(main())
