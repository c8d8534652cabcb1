"""The own-data tutorial's walkthrough (docs/tutorials/own-data.md): example-data -> data -> train -> predict ->
benchmark -> report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.datasets.folder.loader import load_folder
from simmlm.datasets.folder.loader import read_input as read_folder_input
from simmlm.datasets.folder.synthetic import example_modalities, write_example_dataset
from simmlm.engine import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated")  # Lightning, `simmlm train`
TINY = ["--set", "train.stage1.epochs=1", "--set", "train.stage2.epochs=1", "--set", "train.min_steps=0"]


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own") / "example"
    output = _invoke("example-data", str(root), "--modalities", "3", "--samples", "80")
    assert f"simmlm data folder --data-dir {root}" in output
    return root


def test_example_data_layout_and_missing_training_modalities(example: Path) -> None:
    with (example / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["sample_id", "label", "split", "image", "sensor1", "sensor2"]
    assert [sum(r["split"] == s for r in rows) for s in ("train", "val", "test")] == [48, 16, 16]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert any(not r["sensor1"] for r in train_rows) and all(r["image"] or r["sensor1"] or r["sensor2"] for r in rows)
    assert np.load(example / rows[0]["image"]).shape == (16, 16) if rows[0]["image"] else True
    splits = load_folder(example)
    assert splits.modalities == example_modalities(3)
    assert not splits.train.mask.all()


def test_example_data_refuses_a_non_empty_folder_and_bad_options(example: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in example.iterdir())
    result = CliRunner().invoke(app, ["example-data", str(example)])
    assert result.exit_code == 2 and "already exists and is not empty" in result.output
    assert sorted(p.name for p in example.iterdir()) == before
    result = CliRunner().invoke(app, ["example-data", str(tmp_path / "one"), "--modalities", "1"])
    assert result.exit_code == 2 and "at least 2 modalities" in result.output
    assert not (tmp_path / "one").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind


def test_example_data_is_learnable_and_shows_the_benefit_of_more_modalities(tmp_path: Path) -> None:
    splits = load_folder(write_example_dataset(tmp_path / "d", num_modalities=2, num_samples=400))
    y = splits.train.targets

    def centroid_accuracy(names: list[str]) -> float:
        # isotropic Gaussian classifier per modality (class centroids, pooled variance), log-likelihoods summed;
        # over the test samples that have every modality in ``names``
        test_have = splits.test.mask[:, [splits.modalities.index(n) for n in names]].all(1)
        scores = torch.zeros(int(test_have.sum()), splits.num_classes)
        for name in names:
            m = splits.modalities.index(name)
            x, have = splits.train.inputs[name].flatten(1), splits.train.mask[:, m]
            centroids = torch.stack([x[have & (y == k)].mean(0) for k in range(splits.num_classes)])
            variance = (x[have] - centroids[y[have]]).pow(2).mean()
            scores -= torch.cdist(splits.test.inputs[name].flatten(1)[test_have], centroids).pow(2) / (2 * variance)
        return (scores.argmax(1) == splits.test.targets[test_have]).float().mean().item()

    single = [centroid_accuracy([n]) for n in splits.modalities]
    both = centroid_accuracy(splits.modalities)
    assert all(0.5 < acc < 1.0 for acc in single) and both > max(single)


def test_walkthrough_train_predict_benchmark_report(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # outside the repository: benchmark uses the packaged folder config
    run = tmp_path / "run"
    output = _invoke(
        "train", "-c", "folder", "--set", "data.dataset=folder", "--data-dir", str(example),
        "--out", str(run), *TINY,
    )  # fmt: skip
    assert "image+sensor1+sensor2: accuracy" in output and "samples)" in output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["subsets"]["image"]["samples"] < 16  # some test samples lack the image

    with (example / "manifest.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    row = next(r for r in rows if r["image"] and r["sensor2"])
    output = _invoke(
        "predict", str(run), "--input", f"image={example / row['image']}", "--input",
        f"sensor2={example / row['sensor2']}", "--json",
    )  # fmt: skip
    result = json.loads(output)
    assert result["modalities"] == ["image", "sensor2"]
    assert result["gate_weights"]["sensor1"] == 0.0
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-4)

    # predict reads a file exactly as training did (the stored standardisation), so it gives the model's output
    model, _, meta = load_checkpoint(run / "model.pt")
    splits = load_folder(example)
    i = [r["sample_id"] for r in rows].index(row["sample_id"])
    for name in ("image", "sensor2"):
        tensor = read_folder_input(name, example / row[name], meta["preprocessing"])
        torch.testing.assert_close(tensor, splits.test.inputs[name][i])
    mask = torch.tensor([[True, False, True]])
    inputs, _, _ = splits.test[[i]]
    with torch.no_grad():
        probs = model(inputs, mask).logits.softmax(-1)[0]
    assert result["probabilities"] == pytest.approx(probs.tolist(), abs=1e-5)

    bench = tmp_path / "bench"
    _invoke(
        "benchmark",
        "folder",
        "--data-dir",
        str(example),
        "--methods",
        "simmlm",
        "--seeds",
        "0",
        "--out",
        str(bench),
        *TINY,
    )
    summary = json.loads((bench / "summary.json").read_text())
    assert summary["dataset"] == "folder" and summary["modalities"] == ["image", "sensor1", "sensor2"]
    assert len(summary["methods"]["simmlm"]["subsets"]) == 7
    assert "have all of its modalities" in summary["protocol"]
    assert {n: e["kind"] for n, e in summary["experts"].items()} == {
        "image": "lenet",
        "sensor1": "mlp",
        "sensor2": "mlp",
    }
    assert "Experts: image: lenet (auto: a square" in (bench / "summary.md").read_text()
    _invoke("report", str(bench))
    assert (bench / "report.html").is_file() and (bench / "reliability.png").is_file()
    page = (bench / "report.html").read_text()
    assert "Experts: image: lenet; sensor1: mlp" in page and f"simmlm report: folder ({example.name})" in page


def test_predict_rejects_bad_own_data_inputs(example: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _invoke("train", "--set", "data.dataset=folder", "--data-dir", str(example), "--out", str(run), *TINY)  # no config
    np.save(tmp_path / "nan.npy", np.full(12, np.nan, dtype=np.float32))
    np.save(tmp_path / "short.npy", np.zeros(5, dtype=np.float32))
    (tmp_path / "x.png").write_bytes(b"")
    for arg, message in [
        (f"sensor1={tmp_path / 'nan.npy'}", "NaN"),
        (f"sensor1={tmp_path / 'short.npy'}", "the model expects [12]"),
        (f"image={tmp_path / 'x.png'}", "must be .npy"),
        (f"sensor1={tmp_path / 'absent.npy'}", "file not found"),
        (f"depth={tmp_path / 'nan.npy'}", "unknown modality"),
    ]:
        result = CliRunner().invoke(app, ["predict", str(run), "--input", arg])
        assert result.exit_code == 2, arg
        assert message in result.output, (arg, result.output)
