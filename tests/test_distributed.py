"""Multi-process training (DDP over gloo, 2 CPU processes) through the engine, and the sharded batch sampler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import synthetic_splits
from simmlm.data.base import ShardedBatchSampler, Splits, make_loader
from simmlm.engine.config import RunConfig
from simmlm.engine.train import quiet_lightning, train
from simmlm.evaluation.evaluate import classification_report
from simmlm.evaluation.inferers import predict_subsets


def _cfg(stage2: int, **train: object) -> RunConfig:
    return RunConfig.model_validate(
        {
            "method": "simmlm",
            "model": {"expert": "mlp"},  # no dropout, no augmentation: stage 1 draws no random numbers
            "train": {"batch_size": 8, "stage1": {"epochs": 3}, "stage2": {"epochs": stage2}, **train},
        }
    )


def test_two_processes_train_like_one_with_the_global_batch_split() -> None:
    """Each of 2 ranks takes half of every batch of 8; averaged gradients reproduce the 1-process run."""
    quiet_lightning()
    splits = synthetic_splits(36, a_shape=(10,))
    one = train(_cfg(0, accelerator="cpu"), splits, progress=False)
    two = train(_cfg(0, accelerator="cpu", devices=2, strategy="ddp_spawn"), splits, progress=False)
    for key, value in one.model.state_dict().items():
        torch.testing.assert_close(two.model.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    assert two.selected == one.selected  # the same epochs, chosen on the full validation split


@pytest.mark.slow
def test_two_processes_run_both_stages_with_checkpoints(tmp_path: Path) -> None:
    quiet_lightning()
    splits = synthetic_splits(36, a_shape=(10,))
    cfg = _cfg(2, accelerator="cpu", devices=2, strategy="ddp_spawn")
    result = train(cfg, splits, progress=False, checkpoint_dir=tmp_path / "checkpoints")
    assert set(result.selected) == {"stage1", "stage2"}
    assert result.mofe["active_fraction"] >= 0.0
    report = classification_report(predict_subsets(result.model, splits.test), splits.modalities)
    assert 0.0 <= report["average_accuracy"] <= 1.0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "config.json",
        "stage1-done.pt",
        "stage2-done.pt",
    ]


def test_sampler_shards_every_global_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    alone = list(ShardedBatchSampler(10, 4, shuffle=True, seed=5))
    assert alone == list(
        torch.utils.data.BatchSampler(
            torch.utils.data.RandomSampler(range(10), generator=torch.Generator().manual_seed(5)), 4, drop_last=False
        )
    )
    shards = []
    for rank in range(2):
        sampler = ShardedBatchSampler(10, 4, shuffle=True, seed=5, distributed=True)
        monkeypatch.setattr(sampler, "_world", lambda rank=rank: (2, rank))
        shards.append(list(sampler))
        assert len(sampler) == 3
    for batch, r0, r1 in zip(alone, *shards, strict=True):
        assert len(r0) == len(r1) == (len(batch) + 1) // 2
        assert sorted(r0 + r1) == sorted(batch)  # disjoint halves of the global batch (10 % 4: no padding)
    odd = [list(s) for s in (ShardedBatchSampler(5, 5, shuffle=False, distributed=True),)]
    monkeypatch.setattr(ShardedBatchSampler, "_world", lambda self: (2, 1))
    assert list(ShardedBatchSampler(5, 4, shuffle=False, distributed=True)) == [[1, 3], [0]]  # [4] padded with 0
    assert odd == [[[0, 1, 2, 3, 4]]]  # no process group: the whole batch


def test_sampler_state_survives_pickling() -> None:
    import pickle

    loader = make_loader(synthetic_splits(36, a_shape=(10,)).train, 8, shuffle=True, seed=1)
    list(loader)  # one epoch: the generator moved on
    clone = pickle.loads(pickle.dumps(loader.sampler))
    assert list(clone) == list(loader.sampler)


def _tiny_brats(root: Path, **train_settings: object) -> tuple[Splits, RunConfig]:
    from simmlm.engine.config import load_config
    from simmlm.engine.tasks import load_splits
    from test_brats import BRATS2018, write_case

    for split, seeds in (("train", (0, 1)), ("validation", (2,)), ("test", (3,))):
        for seed in seeds:
            if not (root / split / f"case{seed}").exists():
                write_case(root / split, f"case{seed}", BRATS2018, seed=seed)
    overrides = {
        "data.data_dir": str(root),
        "data.brats.crop_size": [8, 8, 8],
        "data.brats.crops_per_epoch": 6,
        "model.expert_options": {"channels": [2, 4], "strides": [2], "num_res_units": 0},
        "train.stage1.epochs": 2,
        "train.stage2.epochs": 0,
        "train.accelerator": "cpu",
        "train.seed": 5,
        **{f"train.{k}": v for k, v in train_settings.items()},
    }
    cfg = load_config("configs/brats2018_gpu.yaml", overrides)
    return load_splits(cfg.data), cfg


@pytest.mark.slow
def test_two_processes_train_segmentation_like_one(tmp_path: Path) -> None:
    """Random crops depend on (seed, epoch, index) only: 2 ranks see the 1-rank run's crops, split in two."""
    quiet_lightning()
    splits, cfg = _tiny_brats(tmp_path)
    one = train(cfg, splits, progress=False)
    two = train(_tiny_brats(tmp_path, devices=2, strategy="ddp_spawn")[1], splits, progress=False)
    assert two.selected == one.selected  # the same epochs, the same validation Dice
    inputs, mask, _ = splits.val[0]
    crop = {name: x[None, :, :8, :8, :8] for name, x in inputs.items()}
    # Outputs agree; weights do too, except conv biases right before an instance norm: their true gradient is 0
    # and Adam turns float noise of either run into steps of size ~lr.
    torch.testing.assert_close(
        two.model.expert_logits(crop, mask[None]), one.model.expert_logits(crop, mask[None]), rtol=0, atol=1e-5
    )
