"""Training engine: two-stage training and resuming (Lightning: ``engine.train``, ``engine.stages``,
``engine.resume``, ``engine.callbacks``), and what needs no Lightning: configs (``engine.config``), tasks
(``engine.tasks``), the schedule (``engine.schedule``) and run folders (``engine.runs``: checkpoints, metrics,
``simmlm predict`` on a run). ``train`` and friends are imported on first use, so importing a config, a task or a
run folder does not import Lightning."""

from __future__ import annotations

from typing import Any

from simmlm.engine.config import RunConfig, load_config

__all__ = ["RunConfig", "RunResult", "load_checkpoint", "load_config", "load_splits", "save_checkpoint", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from simmlm.engine.train import train

        return train
    if name in ("RunResult", "load_checkpoint", "save_checkpoint"):
        from simmlm.engine import runs

        return getattr(runs, name)
    if name == "load_splits":
        from simmlm.engine.tasks import load_splits

        return load_splits
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
