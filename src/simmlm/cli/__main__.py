"""``python -m simmlm.cli``: the ``simmlm`` command."""

from simmlm.cli import app

app()
