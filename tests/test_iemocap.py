"""IEMOCAP's four emotions (MulT's label layout), the weighted F1 as DREAM reports it and as a validation score."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.datasets.seqfeatures.labels import EMOTIONS
from simmlm.datasets.seqfeatures.loader import load_seqfeatures
from simmlm.evaluation.evaluate import classification_report
from simmlm.evaluation.inferers import SubsetPredictions
from simmlm.subsets import all_subsets

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated")
DIMS = {"text": 5, "audio": 4, "vision": 3}


def _split(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """MulT's layout: per emotion a one-hot pair [not, is]; the emotion shows in every frame of every modality."""
    emotion = rng.integers(0, 4, n)
    labels = np.zeros((n, 4, 2), dtype=np.float32)
    labels[:, :, 0] = 1
    labels[np.arange(n), emotion] = [0, 1]
    code = np.eye(4, dtype=np.float32)[emotion]
    out = {
        k: (np.pad(code, ((0, 0), (0, d - 4)) if d > 4 else ((0, 0), (0, 0)))[:, None, :d] + rng.normal(size=(n, 6, d)))
        for k, d in DIMS.items()
    }
    return {**{k: v.astype(np.float32) for k, v in out.items()}, "labels": labels}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("iemocap")
    rng = np.random.default_rng(0)
    with (root / "iemocap_data.pkl").open("wb") as handle:
        pickle.dump({"train": _split(160, rng), "valid": _split(48, rng), "test": _split(64, rng)}, handle)
    return root


def test_mults_emotion_pairs_become_four_classes_and_bad_labels_are_refused(data_dir: Path, tmp_path: Path) -> None:
    splits = load_seqfeatures(data_dir / "iemocap_data.pkl", task="emotions4")
    with (data_dir / "iemocap_data.pkl").open("rb") as handle:
        raw = pickle.load(handle)  # the test's own file
    assert splits.num_classes == 4 and splits.preprocessing["classes"] == list(EMOTIONS)
    assert splits.test.targets.tolist() == raw["test"]["labels"][:, :, 1].argmax(1).tolist()
    assert "emotions4: the one emotion marked present of neutral, happy, sad, angry" in splits.description
    raw["train"]["labels"][:3, :, 1] = 0  # three samples with no emotion
    raw["train"]["labels"][3, :, 1] = 1  # one with all four
    with (tmp_path / "bad.pkl").open("wb") as handle:
        pickle.dump(raw, handle)
    with pytest.raises(ValueError, match="3 samples have no emotion marked present and 1 several"):
        load_seqfeatures(tmp_path / "bad.pkl", task="emotions4")
    with pytest.raises(ValueError, match="IEMOCAP's emotions: set data.task=emotions4"):
        load_seqfeatures(data_dir / "iemocap_data.pkl", task="binary")


def test_the_weighted_and_per_class_f1_are_scikit_learns() -> None:
    g = torch.Generator().manual_seed(0)
    n, subsets = 90, all_subsets(3)
    targets = torch.randint(0, 4, (n,), generator=g)
    logits = torch.randn(len(subsets), n, 4, generator=g) + 1.5 * torch.nn.functional.one_hot(targets, 4)
    available = torch.full((n,), 0b111)
    preds = SubsetPredictions(subsets=subsets, logits=logits, gate_weights=None, targets=targets, available=available)
    report = classification_report(preds, list(DIMS), f1=True, class_names=EMOTIONS)
    for s, values in enumerate(report["subsets"].values()):
        guess, truth = logits[s].argmax(-1).numpy(), targets.numpy()
        assert values["f1"] == pytest.approx(f1_score(truth, guess, average="weighted"), abs=1e-9)
        for k, c in enumerate(EMOTIONS):
            assert values[f"acc_{c}"] == pytest.approx(accuracy_score(truth == k, guess == k), abs=1e-12)
            assert values[f"f1_{c}"] == pytest.approx(f1_score(truth == k, guess == k, average="weighted"), abs=1e-9)
    assert report["average_f1"] == pytest.approx(np.mean([v["f1"] for v in report["subsets"].values()]))
    assert "f1" not in classification_report(preds, list(DIMS))["subsets"]["text"]  # opt-in


def test_an_iemocap_benchmark_selects_on_f1_and_reports_dreams_table_and_mults_emotions(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    args = ["benchmark", "seqfeatures", "--data-dir", str(data_dir), "--methods", "simmlm,late_fusion"]
    args += ["--seeds", "0", "--out", str(out)]
    for item in ("data.file=iemocap_data.pkl", "data.task=emotions4", "data.select_on=f1", "train.stage1.epochs=4"):
        args += ["--set", item]
    result = CliRunner().invoke(app, [*args, "--set", "train.stage2.epochs=2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    simmlm = summary["methods"]["simmlm"]
    assert "validation weighted F1" in summary["protocol"]
    assert {"f1", "acc_happy", "f1_angry"} <= set(simmlm["subsets"]["text"]) and "average_f1" in simmlm
    assert simmlm["subsets"]["text+audio+vision"]["f1"][0] > 0.5  # the emotion is in every frame
    md = (out / "summary.md").read_text()
    assert "## Weighted F1 (%) per test condition, as DREAM's Table 1 (over the classes)" in md
    assert (
        "| method | text | audio | vision | text+audio | text+vision | audio+vision | Avg. | text+audio+vision |" in md
    )
    assert "| method | neutral | happy | sad | angry |" in md


@pytest.mark.parametrize("eta", [0.5, 0.7])
def test_dreams_heterogeneous_protocol_has_its_three_groups(data_dir: Path, eta: float) -> None:
    from simmlm.data.frames import GROUPS

    splits = load_seqfeatures(data_dir / "iemocap_data.pkl", task="emotions4", heterogeneous=eta, seed=3)
    for name, data in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        n = len(data)
        groups = data.missing_groups
        expected = [n - sum(c := [int(np.floor(f * eta * n + 0.5)) for f in (0.4, 0.4, 0.2)]), *c]
        assert [int((groups == k).sum()) for k in range(4)] == expected, name
        lost_modality = ~data.mask.all(1)
        lost_frames = torch.stack(
            [(~f & data.mask[:, m : m + 1]).any(1) for m, f in enumerate(data.frame_masks.values())]
        ).any(0)
        assert lost_modality.tolist() == ((groups == 1) | (groups == 3)).tolist()
        assert lost_frames.tolist() == ((groups == 2) | (groups == 3)).tolist()
        assert data.mask.any(1).all()  # never every modality lost
        kept = data.frame_masks["text"][groups == 2].float().mean().item() if (groups == 2).any() else 0.5
        assert kept == pytest.approx(0.5)  # half of the 6 frames
    assert f"Heterogeneous missingness (DREAM A.4), eta {eta:g}" in splits.description
    assert f"test {GROUPS[0]} " in splits.description
    with pytest.raises(ValueError, match="sets the missingness itself"):
        load_seqfeatures(data_dir / "iemocap_data.pkl", task="emotions4", heterogeneous=0.5, missing_rate=0.2)


def test_example_data_writes_an_iemocap_pickle_beside_the_mosi_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["example-data", str(tmp_path / "ex"), "--layout", "mmsa", "--samples", "80"])
    assert result.exit_code == 0, result.output
    assert "--set data.file=iemocap_example.pkl --set data.task=emotions4" in result.output
    splits = load_seqfeatures(tmp_path / "ex" / "iemocap_example.pkl", task="emotions4")
    assert splits.num_classes == 4 and len(splits.train) == 48 and set(splits.train.targets.tolist()) == {0, 1, 2, 3}
