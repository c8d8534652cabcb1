"""How long a stage trains: its epochs, raised to a minimum number of optimiser steps for small data."""

from __future__ import annotations

from simmlm.engine.config import TrainConfig

#: Fewer optimiser steps than this in stage 1 (experts alone) usually leave the experts undertrained.
MIN_STAGE1_STEPS = 100


def stage_epochs(epochs: int, samples_per_epoch: int, train: TrainConfig) -> int:
    """The epochs a stage runs: ``epochs``, raised so that the stage makes ``train.min_steps`` optimiser steps (a
    stage with 0 epochs stays off)."""
    per_epoch = -(-samples_per_epoch // train.batch_size)
    return max(epochs, -(-train.min_steps // per_epoch)) if epochs > 0 else 0


def schedule_warning(samples_per_epoch: int, train: TrainConfig) -> str | None:
    """A warning when the schedule makes too few optimiser steps for the data (``None`` when it is fine)."""
    per_epoch = -(-samples_per_epoch // train.batch_size)
    epochs = stage_epochs(train.stage1.epochs, samples_per_epoch, train)
    steps = per_epoch * epochs
    if steps >= MIN_STAGE1_STEPS:
        return None
    return (
        f"{samples_per_epoch} training samples with batch {train.batch_size} make {per_epoch} optimiser step(s) per "
        f"epoch, {steps} in stage 1 ({epochs} epochs): small data usually needs at least {MIN_STAGE1_STEPS}, e.g. "
        f"--set train.min_steps=300 (the folder config's), or a smaller batch and more epochs "
        "(docs/tutorials/own-data.md)"
    )
