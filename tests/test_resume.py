"""An interrupted run, resumed from its checkpoints, ends exactly where an uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import synthetic_splits
from simmlm.engine.config import RunConfig
from simmlm.engine.resume import load_resume_file
from simmlm.engine.runs import RunResult
from simmlm.engine.stages import CooperativeStage, ExpertStage
from simmlm.engine.train import quiet_lightning, train
from simmlm.fileio import torch_save_atomic as atomic_torch_save
from simmlm.methods import get_method


class Killed(Exception):
    """Stands for a kill in the middle of an epoch."""


def _cfg(method: str, stage1: int, stage2: int) -> RunConfig:
    return RunConfig.model_validate(
        {
            "method": method,
            "model": {
                "expert": {"a": "lenet", "b": "mlp"},  # LeNet-5 has dropout: the global RNG matters
                "method_options": get_method(method).smoke_options,
            },
            "train": {
                "seed": 3,
                "batch_size": 8,  # 36 samples: 5 batches, the last one short
                "stage1": {"epochs": stage1},
                "stage2": {"epochs": stage2},
                "augment": {"a": {"kind": "affine"}},
            },
        }
    )


def _kill_at(monkeypatch: pytest.MonkeyPatch, stage: type, epoch: int, batch: int = 2) -> None:
    """Raise in batch ``batch`` of epoch ``epoch`` of ``stage``; epoch -1: after the last epoch's checkpoint."""
    if epoch == -1:
        monkeypatch.setattr(stage, "on_fit_end", lambda self: (_ for _ in ()).throw(Killed()))
        return

    def on_train_batch_start(self: Any, batch_data: Any, batch_idx: int) -> None:
        if self.current_epoch == epoch and batch_idx == batch:
            raise Killed

    monkeypatch.setattr(stage, "on_train_batch_start", on_train_batch_start)


def _assert_same(a: RunResult, b: RunResult) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert a.selected == b.selected
    assert a.mofe == b.mofe


@pytest.mark.parametrize(
    ("method", "stage", "epoch"),
    [
        ("simmlm", ExpertStage, 2),
        ("simmlm", ExpertStage, -1),
        ("simmlm", CooperativeStage, 1),
        ("mmp", CooperativeStage, 2),
    ],
    ids=["simmlm-stage1", "simmlm-stage1-after-last-epoch", "simmlm-stage2", "mmp"],
)
def test_resume_after_a_kill_matches_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, stage: type, epoch: int
) -> None:
    quiet_lightning()
    splits, cfg = synthetic_splits(36), _cfg(method, 3, 3) if method == "simmlm" else _cfg(method, 2, 2)
    reference = train(cfg, splits, progress=False)
    checkpoints = tmp_path / "run" / "checkpoints"
    with monkeypatch.context() as patch:
        _kill_at(patch, stage, epoch)
        with pytest.raises(Killed):
            train(cfg, splits, progress=False, checkpoint_dir=checkpoints)
    phase = "stage1" if stage is ExpertStage else "stage2"
    assert (checkpoints / f"{phase}-last.ckpt").is_file()
    assert (checkpoints / "stage1-done.pt").is_file() == (phase == "stage2" and method == "simmlm")
    if phase == "stage2":  # a finished phase is never trained again
        monkeypatch.setattr(ExpertStage, "training_step", lambda *a: pytest.fail("stage 1 trained again"))
    resumed = train(cfg, splits, progress=False, checkpoint_dir=checkpoints, resume=True)
    _assert_same(reference, resumed)
    assert not (checkpoints / f"{phase}-last.ckpt").exists()  # dropped once the phase is done
    assert (checkpoints / "stage2-done.pt").is_file()
    # A run that finished every phase resumes without training at all, to the same result.
    monkeypatch.setattr(CooperativeStage, "training_step", lambda *a: pytest.fail("stage 2 trained again"))
    _assert_same(reference, train(cfg, splits, progress=False, checkpoint_dir=checkpoints, resume=True))


def test_resume_refuses_another_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet_lightning()
    splits, cfg = synthetic_splits(36), _cfg("simmlm", 1, 1)
    train(cfg, splits, progress=False, checkpoint_dir=tmp_path)
    other = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": 4})})
    with pytest.raises(ValueError, match=r"another config \(differs in train\.batch_size\)"):
        train(other, splits, progress=False, checkpoint_dir=tmp_path, resume=True)
    # where the run executes may change
    moved = cfg.model_copy(update={"train": cfg.train.model_copy(update={"accelerator": "cpu", "strategy": "auto"})})
    monkeypatch.setattr(CooperativeStage, "training_step", lambda *a: pytest.fail("trained again"))
    train(moved, splits, progress=False, checkpoint_dir=tmp_path, resume=True)


def test_checkpoint_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "stage1-last.ckpt"
    atomic_torch_save({"epoch": 1, "w": torch.ones(3)}, path)

    def half_written(obj: Any, f: Any) -> None:  # a kill in the middle of torch.save
        f.write(b"PK\x03\x04 half a zip")
        raise Killed

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(Killed):
        atomic_torch_save({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    blob = load_resume_file(path)  # the previous checkpoint, whole
    assert blob["epoch"] == 1 and torch.equal(blob["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage1-last.ckpt"]  # the half-written temp is removed


def test_truncated_checkpoint_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet_lightning()
    splits, cfg = synthetic_splits(36), _cfg("simmlm", 3, 1)
    checkpoints = tmp_path / "checkpoints"
    with monkeypatch.context() as patch:
        _kill_at(patch, ExpertStage, 2)
        with pytest.raises(Killed):
            train(cfg, splits, progress=False, checkpoint_dir=checkpoints)
    last = checkpoints / "stage1-last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"stage1-last\.ckpt is corrupt or truncated .* delete it"):
        train(cfg, splits, progress=False, checkpoint_dir=checkpoints, resume=True)
    (checkpoints / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_resume_file(checkpoints / "junk.pt")


@pytest.mark.parametrize(("stage", "epoch"), [(ExpertStage, 1), (CooperativeStage, 1)], ids=["stage1", "stage2"])
def test_segmentation_resume_matches_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: type, epoch: int
) -> None:
    """Random crops and flips (MONAI) depend on (seed, epoch, index) only, so a resumed run redraws them exactly."""
    from simmlm.engine.config import load_config
    from simmlm.engine.tasks import load_splits
    from test_brats import BRATS2018, write_case

    for split, seeds in (("train", (0, 1)), ("validation", (2,)), ("test", (3,))):
        for seed in seeds:
            write_case(tmp_path / "data" / split, f"case{seed}", BRATS2018, seed=seed)
    overrides = {
        "data.data_dir": str(tmp_path / "data"),
        "data.brats.crop_size": [8, 8, 8],
        "data.brats.crops_per_epoch": 6,  # 3 batches of 2 per epoch
        "model.expert_options": {"channels": [2, 4], "strides": [2], "num_res_units": 0},
        "train.stage1.epochs": 2,
        "train.stage2.epochs": 2,
        "train.accelerator": "cpu",
        "train.seed": 5,
    }
    cfg = load_config("configs/brats2018_gpu.yaml", overrides)
    splits = load_splits(cfg.data)
    quiet_lightning()
    reference = train(cfg, splits, progress=False)
    checkpoints = tmp_path / "run" / "checkpoints"
    with monkeypatch.context() as patch:
        _kill_at(patch, stage, epoch, batch=1)
        with pytest.raises(Killed):
            train(cfg, splits, progress=False, checkpoint_dir=checkpoints)
    phase = "stage1" if stage is ExpertStage else "stage2"
    assert (checkpoints / f"{phase}-last.ckpt").is_file()
    _assert_same(reference, train(cfg, splits, progress=False, checkpoint_dir=checkpoints, resume=True))
