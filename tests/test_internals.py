"""Pins for the two places that rely on PyTorch / Lightning internals: these fail loudly when the internals change.

- ``engine.resume.EpochCheckpoint`` replays, on resume, the one global-RNG draw that opening a DataLoader iterator
  makes (``torch.utils.data._BaseDataLoaderIter`` draws its base seed with ``torch.empty((), int64).random_()``).
- ``engine.callbacks.ReleaseProcessGroup`` tells spawned DDP workers by ``trainer.strategy._start_method``.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


def test_opening_a_dataloader_iterator_makes_exactly_one_int64_draw() -> None:
    loader = DataLoader(TensorDataset(torch.arange(8.0)), batch_size=4, shuffle=False)
    torch.manual_seed(123)
    iter(loader)
    after_open = torch.get_rng_state()
    torch.manual_seed(123)
    torch.empty((), dtype=torch.int64).random_()
    assert torch.equal(after_open, torch.get_rng_state()), (
        "opening a DataLoader iterator no longer draws one int64 from the global RNG: update the replay in "
        "EpochCheckpoint.on_train_epoch_start (simmlm.engine.resume)"
    )


def test_spawned_strategies_name_their_start_method() -> None:
    for name, expected in (("ddp_spawn", "spawn"), ("ddp_fork", "fork")):
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy=name, logger=False, enable_checkpointing=False)
        assert getattr(trainer.strategy, "_start_method", None) == expected, (
            f"Lightning's {name} strategy no longer exposes _start_method={expected!r}: update ReleaseProcessGroup "
            "(simmlm.engine.callbacks)"
        )
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    assert getattr(trainer.strategy, "_start_method", None) not in ("spawn", "fork", "forkserver")
