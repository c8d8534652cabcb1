"""The ``simmlm`` command: the typer :data:`app` (the script ``simmlm = "simmlm.cli:app"``; its commands in
:mod:`simmlm.cli.commands`), their shared options and helpers (:mod:`simmlm.cli.common`), ``simmlm example-data``
and ``simmlm convert-features`` (:mod:`simmlm.cli.example`) and ``simmlm robustness``
(:mod:`simmlm.cli.robustness`). Heavy libraries are imported inside the commands, so ``simmlm --help`` loads no
torch."""

from simmlm.cli.commands import app

__all__ = ["app"]
