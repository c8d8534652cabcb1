"""A short end-to-end run on real avMNIST: benchmark command -> summary.json contract -> checkpoint reload."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from simmlm.cli import app

DATA_DIR = Path(os.environ.get("SIMMLM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(
    not (DATA_DIR / "avmnist").is_dir() and not os.environ.get("CI"),
    reason=f"avMNIST raw data not found under {DATA_DIR}",
)


@pytest.mark.slow
@needs_data
def test_benchmark_writes_contract_and_reloadable_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        app,
        [
            "benchmark",
            "avmnist",
            "--methods",
            "simmlm,dmome",
            "--seeds",
            "0,1",
            "--out",
            str(out),
            "--data-dir",
            str(DATA_DIR),
            "--config",
            "configs/avmnist.yaml",
            "--set",
            "train.stage1.epochs=2",
            "--set",
            "train.stage2.epochs=2",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "avmnist"
    assert summary["modalities"] == ["image", "audio"]
    assert summary["seeds"] == [0, 1]
    assert set(summary["methods"]) == {"simmlm", "dmome"}
    for name, m in summary["methods"].items():
        assert set(m["subsets"]) == {"image", "audio", "image+audio"}
        for values in m["subsets"].values():
            for key in ("accuracy", "ece", "sce"):
                assert len(values[key]) == 2 and all(0.0 <= v <= 1.0 for v in values[key])
        # Two epochs per stage already learn digits from real data: far above chance (10 %).
        assert min(m["subsets"]["image+audio"]["accuracy"]) > 0.5, name
        assert len(m["average_accuracy"]) == 2 and len(m["counterintuitive_rate"]) == 2
        assert m["gate_weights"]["image"] == {"image": 1.0}
        assert sum(m["gate_weights"]["image+audio"].values()) == pytest.approx(1.0, abs=1e-5)
        assert len(m["train_seconds"]) == 2 and all(t > 0 for t in m["train_seconds"])
        assert m["params"] > 0 and m["flops_full"] > 0
    assert summary["methods"]["simmlm"]["mofe_lambda"] == 0.1
    assert summary["methods"]["dmome"]["mofe_lambda"] == 0.0
    assert "± " in (out / "summary.md").read_text()

    # The checkpoint rebuilds the same model: its test accuracy matches what the benchmark recorded.
    from simmlm.datasets.avmnist import AvmnistData
    from simmlm.engine import load_checkpoint, load_splits
    from simmlm.evaluation.evaluate import classification_report
    from simmlm.evaluation.inferers import predict_subsets

    model, cfg, meta = load_checkpoint(out / "runs" / "simmlm-seed1" / "model.pt")
    assert cfg.train.seed == 1 and cfg.train.mofe_lambda == 0.1
    splits = load_splits(AvmnistData(data_dir=DATA_DIR))
    report = classification_report(predict_subsets(model, splits.test), meta["modalities"])
    recorded = summary["methods"]["simmlm"]["subsets"]["image+audio"]["accuracy"][1]
    assert report["subsets"]["image+audio"]["accuracy"] == pytest.approx(recorded)


def test_missing_data_dir_gives_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "avmnist", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "avMNIST data is incomplete" in result.output
    assert "train-images-idx3-ubyte.gz" in result.output


def test_unknown_method_is_rejected(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["benchmark", "avmnist", "--methods", "simmlm,nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown method 'nope'" in result.output


def test_seeded_training_is_repeatable() -> None:
    from simmlm.data.base import Splits, TensorMultimodalDataset
    from simmlm.engine.config import RunConfig
    from simmlm.engine.train import quiet_lightning, train

    quiet_lightning()
    g = torch.Generator().manual_seed(0)

    def part(n: int) -> TensorMultimodalDataset:
        y = torch.randint(0, 3, (n,), generator=g)
        return TensorMultimodalDataset(
            {"a": torch.randn(n, 1, 12, 12, generator=g) + y.view(-1, 1, 1, 1), "b": torch.randn(n, 6, generator=g)},
            torch.ones(n, 2, dtype=torch.bool),
            y,
        )

    splits = Splits(part(48), part(24), part(24), num_classes=3, description="synthetic")
    cfg = RunConfig.model_validate(
        {"model": {"expert": {"a": "lenet", "b": "mlp"}}, "train": {"stage1": {"epochs": 2}, "stage2": {"epochs": 2}}}
    )
    first, second = train(cfg, splits, progress=False), train(cfg, splits, progress=False)
    for (k, v), (_, w) in zip(first.model.state_dict().items(), second.model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k

    # Reusing stage 1 from a cache (as the benchmark does for simmlm and dmome) changes nothing.
    cache: dict = {}
    dmome = cfg.model_copy(update={"method": "dmome"})
    train(cfg, splits, progress=False, cache=cache)
    fresh = train(dmome, splits, progress=False)
    reused = train(dmome, splits, progress=False, cache=cache)
    assert reused.selected.get("stage1_reused") and not fresh.selected.get("stage1_reused")
    for (k, v), (_, w) in zip(fresh.model.state_dict().items(), reused.model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k

    # DREAM pre-trains its scorer (late fusion, same seed): from the cache, that run is reused, not retrained.
    late, dream = (cfg.model_copy(update={"method": m}) for m in ("late_fusion", "dream"))
    scorer = train(late, splits, progress=False, cache=cache)
    fresh, reused = train(dream, splits, progress=False), train(dream, splits, progress=False, cache=cache)
    assert reused.selected["scorer"].get("reused") and not fresh.selected["scorer"].get("reused")
    assert reused.shared_seconds >= scorer.train_seconds and reused.selected["encoders_from_scorer"] == ["a"]
    for (k, v), (_, w) in zip(fresh.model.state_dict().items(), reused.model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


@pytest.mark.slow
@needs_data
def test_avmnist_splits_follow_the_protocol() -> None:
    import numpy as np

    from simmlm.datasets.avmnist.loader import load_arrays, load_avmnist, recording_indices

    arrays = load_arrays(DATA_DIR)
    assert arrays["image"].shape == (1500, 28, 28) and arrays["audio"].shape == (1500, 20, 20)
    assert int(arrays["is_test"].sum()) == 450
    assert np.array_equal(arrays["is_test"], recording_indices() < 15)
    # Known facts of this data: a median of 3 real MFCC frames, about 86 % padding.
    assert np.median(arrays["real_frames"]) == 3
    assert 0.8 < 1 - arrays["real_frames"].mean() / 20 < 0.9
    for val_split, n_val in (("stratified", 160), ("recording_index", 150)):
        splits = load_avmnist(DATA_DIR, val_split=val_split)
        assert (len(splits.train), len(splits.val), len(splits.test)) == (1050 - n_val, n_val, 450)
        assert torch.bincount(splits.test.targets).tolist() == [45] * 10
        assert torch.bincount(splits.val.targets).tolist() == [n_val // 10] * 10
        audio = splits.train.inputs["audio"]
        assert audio.mean(dim=(0, 1, 3)).abs().max() < 1e-4  # standardised per coefficient on train
        assert splits.train.inputs["image"].min() >= -1 and splits.train.inputs["image"].max() <= 1


@pytest.mark.slow
@needs_data
def test_avmnist_sequence_layout_is_the_maps_read_as_frames_with_frames_missing() -> None:
    from simmlm.data.frames import SequenceFeatureDataset
    from simmlm.datasets.avmnist.loader import load_avmnist

    maps = load_avmnist(DATA_DIR)
    seq = load_avmnist(DATA_DIR, layout="sequences", frame_missing={"train": 0.5, "test": 0.7}, missing_seed=3)
    assert "28 rows x 28 pixels" in seq.description and seq.preprocessing["layout"] == "sequences"
    for split in ("train", "val", "test"):
        a, b = getattr(maps, split), getattr(seq, split)
        assert isinstance(b, SequenceFeatureDataset) and torch.equal(a.targets, b.targets)
        image, audio = b.inputs["image"], b.inputs["audio"]
        assert image.shape[1:] == (28, 28) and audio.shape[1:] == (20, 20)  # [T, D]
        kept = {"image": b.frame_masks["image"], "audio": b.frame_masks["audio"]}
        dropped = {"train": (14, 10), "val": (0, 0), "test": (20, 14)}[split]  # round(r * T), half up
        assert (~kept["image"]).sum(1).eq(dropped[0]).all() and (~kept["audio"]).sum(1).eq(dropped[1]).all()
        # kept frames are the maps' rows / frames, dropped ones are zeros; the modality mask never changes
        torch.testing.assert_close(image, a.inputs["image"][:, 0] * kept["image"][..., None])
        torch.testing.assert_close(audio, a.inputs["audio"][:, 0].transpose(1, 2) * kept["audio"][..., None])
        assert b.mask.all()
    with pytest.raises(ValueError, match="needs layout 'sequences'"):
        load_avmnist(DATA_DIR, frame_missing=0.3)
