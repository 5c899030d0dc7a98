"""``python -m dtnsess_cli.cli``: the same as the ``dtnsess`` script."""

from . import console

console()
