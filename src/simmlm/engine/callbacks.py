"""The Lightning callbacks every stage's trainer gets: a line per epoch, a clear stop when training diverges, and
the process group of spawned DDP workers released."""

from __future__ import annotations

import logging
import math

import lightning as L

logger = logging.getLogger(__name__)


class EpochLog(L.Callback):
    """One line per finished epoch (its logged losses and validation scores) on this module's logger: the last
    epoch of a stage at ``INFO``, the others at ``DEBUG`` (``--verbose`` shows them).

    Used when progress bars are off (benchmarks, output piped to a file), so long runs still show where they are.
    """

    def _report(self, trainer: L.Trainer, epochs_done: int, level: int = logging.DEBUG) -> None:
        if trainer.is_global_zero and epochs_done > 0:
            metrics = ", ".join(f"{k} {float(v):.4f}" for k, v in sorted(trainer.callback_metrics.items()))
            logger.log(level, "  epoch %d/%d: %s", epochs_done, trainer.max_epochs, metrics)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.first = trainer.current_epoch  # > 0 when resuming

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch > self.first:  # the previous epoch, including its validation, is complete
            self._report(trainer, trainer.current_epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, trainer.current_epoch, logging.INFO)


class ReleaseProcessGroup(L.Callback):
    """Destroys the process group of spawned workers once fitting is over (all collectives done).

    Spawned workers exit without running ``atexit`` handlers, and a gloo group left alive then aborted a worker at
    exit from time to time ("terminate called without an active exception"). Only for spawn/fork strategies: with
    ``ddp`` the same processes run every stage and keep their group.
    """

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import torch.distributed as dist

        spawned = getattr(trainer.strategy, "_start_method", None) in ("spawn", "fork", "forkserver")
        if spawned and dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


class FailOnDivergence(L.Callback):
    """Stop a stage whose training loss has become NaN or infinite, with one error saying so (instead of training on,
    selecting nothing and failing later with an unrelated message). Checked once per epoch, on the epoch's logged
    loss: one host sync per epoch, none per step."""

    def _check(self, trainer: L.Trainer) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.endswith("/loss") and not math.isfinite(float(value)):
                raise ValueError(
                    f"training diverged: {key} is {float(value)} after epoch {trainer.current_epoch}; lower the "
                    "learning rate (train.stage1.lr, train.stage2.lr) or check the scale of the inputs"
                )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)  # the previous epoch, whose losses are complete

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)
