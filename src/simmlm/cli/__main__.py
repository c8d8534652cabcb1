"""``python -m simmlm.cli``: the ``simmlm`` command."""

from simmlm.cli import app

if __name__ == "__main__":
    app()
