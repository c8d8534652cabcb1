"""The ``simmlm`` command: the typer :data:`app` (:mod:`simmlm.cli.app`; ``simmlm = "simmlm.cli:app"``), its
shared options and helpers (:mod:`simmlm.cli.common`), ``simmlm example-data`` / ``convert-features``
(:mod:`simmlm.cli.example`) and ``simmlm robustness`` (:mod:`simmlm.cli.robustness`). Heavy libraries are imported
inside the commands, so ``simmlm --help`` loads no torch."""

from simmlm.cli.app import app

__all__ = ["app"]
