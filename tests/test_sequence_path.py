"""Feature sequences (CMU-MOSI / MOSEI layout) through the whole engine: sequence experts, frame tokens, the CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.engine.config import load_config
from simmlm.engine.tasks import load_splits
from simmlm.methods import create_method
from simmlm.nn.sequence import SequenceExpert

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated")
DIMS = {"text": 5, "audio": 4, "vision": 3}
FRAMES = 6


def _split(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Scores in [-3, 3]; every frame of every modality carries the sign of the score, plus noise."""
    scores = rng.uniform(-3, 3, n).astype(np.float32)
    sign = np.where(scores > 0, 1.0, -1.0).astype(np.float32)[:, None, None]
    out = {k: (0.8 * sign + rng.normal(size=(n, FRAMES, d))).astype(np.float32) for k, d in DIMS.items()}
    return {**out, "regression_labels": scores}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mosi")
    rng = np.random.default_rng(0)
    with (root / "mosi.pkl").open("wb") as handle:
        pickle.dump({"train": _split(120, rng), "valid": _split(40, rng), "test": _split(60, rng)}, handle)
    return root


def _config(data_dir: Path, **overrides: object) -> dict[str, object]:
    return {"data.dataset": "seqfeatures", "data.data_dir": str(data_dir), "data.file": "mosi.pkl", **overrides}


@pytest.mark.parametrize("kind", ["gru", "transformer", "conv1d"])
@pytest.mark.parametrize("pool", ["mean", "attention"])
def test_sequence_experts_ignore_absent_frames_where_they_pool(kind: str, pool: str) -> None:
    torch.manual_seed(0)
    expert = SequenceExpert(4, 3, kind, hidden=8, pool=pool).eval()  # type: ignore[arg-type]
    x = torch.randn(2, 5, 4)
    missing = torch.zeros(1, 5, 4)  # a missing modality: every frame absent
    with torch.no_grad():
        out = expert(torch.cat([x, missing]))
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    if kind == "transformer":  # attention never looks at absent frames: trailing padding changes nothing
        padded = torch.cat([x, torch.zeros(2, 3, 4)], dim=1)
        with torch.no_grad():
            torch.testing.assert_close(expert(padded), out[:2], atol=1e-5, rtol=1e-5)


def test_auto_picks_sequence_experts_frame_tokens_and_a_sequence_gate() -> None:
    shapes = {"text": (6, 5), "audio": (6, 4)}
    model = create_method("simmlm", input_shapes=shapes, num_classes=2, expert="auto")
    assert all(isinstance(e, SequenceExpert) for e in model.experts.values())
    mmp = create_method("mmp", input_shapes=shapes, num_classes=2, expert="transformer")
    assert [e.num_tokens for e in mmp.encoders.values()] == [6, 6]  # tokens = frames


def test_frame_missing_applies_to_the_splits_named(data_dir: Path) -> None:
    cfg = load_config(None, _config(data_dir, **{"data.frame_missing": 0.5, "data.frame_missing_splits": ["test"]}))
    splits = load_splits(cfg.data)
    kept = {name: splits.test.frame_masks[name].float().mean().item() for name in DIMS}
    assert all(v == pytest.approx(0.5) for v in kept.values())
    assert all(splits.train.frame_masks[name].all() for name in DIMS)
    assert "by split: train 0, val 0, test 0.5" in splits.description


def test_benchmark_trains_and_evaluates_sequences_with_every_method_kind(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    sets = ["train.stage1.epochs=8", "train.stage2.epochs=2", "train.batch_size=16", "model.expert_options={}"]
    args = ["benchmark", "seqfeatures", "--data-dir", str(data_dir), "--methods", "simmlm,mmp,dream_paper"]
    args += ["--seeds", "0", "--out", str(out), "--set", "data.file=mosi.pkl"]
    for item in sets:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "simmlm/configs/seqfeatures.yaml" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "seqfeatures" and summary["modalities"] == list(DIMS)
    simmlm = summary["methods"]["simmlm"]
    assert len(simmlm["subsets"]) == 7
    assert simmlm["subsets"]["text+audio+vision"]["accuracy"][0] > 0.8  # the sign is in every frame
    np.save(tmp_path / "text.npy", _split(1, np.random.default_rng(1))["text"][0])
    result = CliRunner().invoke(
        app, ["predict", str(out / "runs" / "simmlm-seed0"), "--input", f"text={tmp_path / 'text.npy'}", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["modalities"] == ["text"]


def write_motion_folder(root: Path, train: int = 40, val: int = 20, test: int = 40, seed: int = 0) -> Path:
    """Two 3-axis sensors, 100 steps, 4 classes (a sinusoid of 1-4 cycles on one axis, random phase, noise): what
    a newcomer's motion data looks like, as ``[T, D]`` arrays in the folder layout."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 100, endpoint=False)
    rows = ["sample_id,label,split,acc,gyro"]
    for i, split in enumerate(["train"] * train + ["val"] * val + ["test"] * test):
        label = i % 4
        for sensor in ("acc", "gyro"):
            signal = rng.normal(scale=0.7, size=(100, 3))
            signal[:, label % 3] += np.sin(2 * np.pi * (label + 1) * t + rng.uniform(0, 2 * np.pi))
            (root / sensor).mkdir(parents=True, exist_ok=True)
            np.save(root / sensor / f"s{i}.npy", signal.astype(np.float32))
        rows.append(f"s{i},{label},{split},acc/s{i}.npy,gyro/s{i}.npy")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_folder_series_are_read_as_sequences_when_listed(tmp_path: Path) -> None:
    root = write_motion_folder(tmp_path / "motion", train=8, val=4, test=4)
    images = load_splits(load_config(None, {"data.dataset": "folder", "data.data_dir": str(root)}).data)
    assert tuple(images.train.inputs["acc"].shape[1:]) == (1, 100, 3)  # 2-D arrays: one-channel images by default
    cfg = load_config(None, {"data.dataset": "folder", "data.data_dir": str(root), "data.sequences": ["acc", "gyro"]})
    splits = load_splits(cfg.data)
    assert tuple(splits.train.inputs["acc"].shape[1:]) == (100, 3)
    means = splits.train.inputs["acc"].mean((0, 1))
    torch.testing.assert_close(means, torch.zeros(3), atol=1e-5, rtol=0)  # standardised per feature (axis)
    model = create_method("simmlm", input_shapes={"acc": (100, 3), "gyro": (100, 3)}, num_classes=4, expert="auto")
    assert isinstance(model.experts["acc"], SequenceExpert)
    with pytest.raises(ValueError, match="sequences names modalities the manifest does not have: \\['accel'\\]"):
        load_splits(
            load_config(None, {"data.dataset": "folder", "data.data_dir": str(root), "data.sequences": ["accel"]}).data
        )


def test_example_data_writes_a_sentiment_pickle_the_sequence_path_reads(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["example-data", str(tmp_path / "try"), "--layout", "mmsa", "--samples", "60"])
    assert result.exit_code == 0, result.output
    assert f"simmlm data seqfeatures --data-dir {tmp_path / 'try'} --set data.file=mosi_example.pkl" in result.output
    out = CliRunner().invoke(
        app, ["data", "seqfeatures", "--data-dir", str(tmp_path / "try"), "--set", "data.file=mosi_example.pkl"]
    )
    assert out.exit_code == 0, out.output
    assert "train 36  val 12  test 12" in out.output and "text (T=20, D=16), audio (T=30, D=8)" in out.output
    again = CliRunner().invoke(app, ["example-data", str(tmp_path / "try"), "--layout", "mmsa"])
    assert again.exit_code == 2 and "already exists and is not empty" in again.output
    wrong = CliRunner().invoke(app, ["example-data", str(tmp_path / "x"), "--layout", "csv"])
    assert wrong.exit_code == 2 and "--layout must be one of folder, mmsa, food101, avmnist" in wrong.output
