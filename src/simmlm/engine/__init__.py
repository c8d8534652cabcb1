"""Training engine (Lightning): two-stage training and resuming. Configs (``engine.config``) and tasks
(``engine.tasks``) need no Lightning; ``train`` and friends are imported on first use, so importing a config
does not import Lightning."""

from __future__ import annotations

from typing import Any

from simmlm.engine.config import RunConfig, load_config

__all__ = ["RunConfig", "RunResult", "load_checkpoint", "load_config", "load_splits", "save_checkpoint", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from simmlm.engine.train import train

        return train
    if name in ("RunResult", "load_checkpoint", "save_checkpoint"):
        from simmlm import runs

        return getattr(runs, name)
    if name == "load_splits":
        from simmlm.engine.tasks import load_splits

        return load_splits
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
