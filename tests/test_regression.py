"""Sentiment regression as a task kind: the report against scikit-learn / SciPy, its intervals, the whole engine."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.metrics import f1_score, mean_absolute_error
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.evaluation.evaluate import regression_report
from simmlm.evaluation.inferers import SubsetPredictions
from simmlm.experiments.comparisons import compare_methods, comparison_markdown
from simmlm.metrics.bootstrap import RunArrays, weighted_regression_metrics
from simmlm.subsets import all_subsets

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated")
DIMS = {"text": 5, "audio": 4, "vision": 3}


def _predictions(seed: int, n: int = 80) -> SubsetPredictions:
    """Scores of three modalities under every subset; some samples lack the vision."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(-6, 7, (n,), generator=g).float() / 2  # [-3, 3] in halves, with some exact zeros
    subsets = all_subsets(3)
    noise = torch.stack([torch.randn(n, generator=g) / (1 + s.bit_count()) for s in subsets])
    scores = (targets + noise).unsqueeze(-1)  # [S, N, 1]
    available = torch.where(torch.arange(n) % 4 == 0, 0b011, 0b111)
    covered = (torch.tensor(subsets).unsqueeze(1) & ~available.unsqueeze(0)) == 0
    scores = torch.where(covered.unsqueeze(-1), scores, torch.nan)
    return SubsetPredictions(subsets=subsets, logits=scores, gate_weights=None, targets=targets, available=available)


def test_the_regression_report_is_what_scikit_learn_and_scipy_compute() -> None:
    preds = _predictions(0)
    report = regression_report(preds, list(DIMS))
    for s, (name, values) in enumerate(report["subsets"].items()):
        rows = preds.covered[s].numpy()
        p, t = preds.logits[s, rows, 0].numpy().astype(np.float64), preds.targets.numpy()[rows].astype(np.float64)
        assert values["samples"] == rows.sum()
        assert values["mae"] == pytest.approx(mean_absolute_error(t, p), abs=1e-9), name
        assert values["corr"] == pytest.approx(pearsonr(p, t).statistic, abs=1e-9)
        assert values["acc2_has0"] == pytest.approx(np.mean((p >= 0) == (t >= 0)), abs=1e-12)
        assert values["f1_has0"] == pytest.approx(f1_score(t >= 0, p >= 0, average="weighted"), abs=1e-9)
        non0 = t != 0
        assert values["f1_non0"] == pytest.approx(f1_score(t[non0] > 0, p[non0] > 0, average="weighted"), abs=1e-9)
        assert values["acc7"] == pytest.approx(np.mean(np.round(np.clip(p, -3, 3)) == np.round(np.clip(t, -3, 3))))
    assert report["subsets"]["text+audio+vision"]["samples"] == 60  # a quarter lacks the vision
    maes = [v["mae"] for v in report["subsets"].values()]
    assert report["average_mae"] == pytest.approx(sum(maes) / len(maes))
    # Shapley: a sample's abs_error contributions sum to |y| - |error| with all its modalities
    assert set(report["shapley"]) == {"abs_error", "correctness"}


def test_the_weighted_regression_metrics_with_unit_weights_are_the_reports_and_resamples_move_them() -> None:
    preds = _predictions(1)
    report = regression_report(preds, list(DIMS))
    ones = torch.ones(2, len(preds.targets), dtype=torch.float64)
    ones[1, :10] = 0  # a resample that leaves ten samples out
    ones[1, 10:20] = 2
    got = weighted_regression_metrics(preds.logits[..., 0], preds.targets, preds.subsets, preds.available, ones)
    assert got["average_mae"][0].item() == pytest.approx(report["average_mae"], abs=1e-12)
    assert got["average_f1_has0"][0].item() == pytest.approx(report["average_f1_has0"], abs=1e-12)
    assert got["counterintuitive_rate"][0].item() == pytest.approx(report["counterintuitive_rate"], abs=1e-7)  # float32
    assert got["average_mae"][1].item() != pytest.approx(report["average_mae"], abs=1e-9)


def test_regression_runs_compare_on_mae_f1_and_cr_and_a_better_one_shows(tmp_path: Path) -> None:
    def run(seed: int, shrink: float) -> RunArrays:
        preds, noisy = _predictions(0), _predictions(seed)  # one test set, each seed's own errors
        scores = preds.targets + (noisy.logits[..., 0] - noisy.targets) * shrink  # smaller errors with shrink < 1
        path = tmp_path / f"{seed}-{shrink}.npz"
        np.savez(path, scores=scores.numpy(), subsets=np.asarray(preds.subsets), targets=preds.targets.numpy())
        return RunArrays.from_npz(path)

    a = [run(s, 1.0) for s in range(3)]
    assert a[0].regression and a[0].available.tolist() == _predictions(0).available.tolist()
    b = [run(s, 0.5) for s in range(3)]  # the same noise halved: a clearly better method
    out = compare_methods({"simmlm": a, "better": b}, draws=200)
    mae = out["better − simmlm"]["average_mae"]
    assert mae["high"] < 0 and mae["significant"]
    table = "\n".join(comparison_markdown({"": out}))
    assert "Δ average MAE ↓" in table and "Δ average accuracy" not in table


def _split(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    scores = rng.uniform(-3, 3, n).astype(np.float32)
    out = {k: (0.3 * scores[:, None, None] + rng.normal(size=(n, 6, d))).astype(np.float32) for k, d in DIMS.items()}
    return {**out, "regression_labels": scores}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mosi")
    rng = np.random.default_rng(0)
    with (root / "mosi.pkl").open("wb") as handle:
        pickle.dump({"train": _split(120, rng), "valid": _split(40, rng), "test": _split(60, rng)}, handle)
    return root


def test_a_regression_benchmark_reports_the_sentiment_metrics_compares_and_predicts(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    args = ["benchmark", "seqfeatures", "--data-dir", str(data_dir), "--methods", "simmlm,late_fusion,mmp,dream"]
    sets = []
    for item in ("data.file=mosi.pkl", "data.task=regression", "train.stage1.epochs=4", "train.stage2.epochs=2"):
        sets += ["--set", item]
    args += ["--seeds", "0,1", "--out", str(out), *sets]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    simmlm = summary["methods"]["simmlm"]
    metrics = {"mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "samples"}
    assert set(simmlm["subsets"]["text"]) == metrics
    assert simmlm["subsets"]["text+audio+vision"]["mae"][0] < 1.2  # the score is in every frame (|y| is 1.5)
    assert {"average_mae", "average_corr", "average_acc7", "val_average_mae"} <= set(simmlm)
    assert set(summary["comparisons"]["mmp − simmlm"]) == {"average_mae", "average_f1_has0", "counterintuitive_rate"}
    with np.load(out / "runs" / "simmlm-seed0" / "predictions.npz") as npz:
        assert npz["scores"].shape == (7, 60) and npz["targets"].dtype == np.float32
    md = (out / "summary.md").read_text()
    assert "## Test MAE (lower is better) per available-modality subset" in md
    assert "| simmlm | average of the subsets |" in md and "ECE / SCE" not in md
    np.save(tmp_path / "text.npy", _split(1, np.random.default_rng(1))["text"][0])
    run = str(out / "runs" / "simmlm-seed0")
    result = CliRunner().invoke(app, ["predict", run, "--input", f"text={tmp_path / 'text.npy'}"])
    assert result.exit_code == 0 and result.output.startswith("score: "), result.output
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    page = (out / "report.html").read_text()
    for figure in ("mae.png", "by_size.png", "counterintuitive_rate.png", "gate_weights.png", "shapley.png"):
        assert figure in page and (out / figure).is_file(), figure


def test_dream_plays_its_game_on_a_scores_seven_classes() -> None:
    from simmlm.metrics.sentiment import predicted_class

    assert predicted_class(torch.tensor([[0.4], [-2.6], [3.7], [1.5]])).tolist() == [3, 0, 6, 5]  # half to even
    assert predicted_class(torch.tensor([[0.1, 0.9, 0.0]])).tolist() == [1]  # class logits: the arg-max


def test_the_robustness_suite_runs_a_regression_on_mae_and_cr(data_dir: Path, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "train_missing: {fractions: []}\ntrain_corruption: {modalities: [text], fractions: [0.5]}\n"
        "test_corruptions: [{kind: zeros, modalities: [text], severities: [1.0]}]\nlambdas: [0.1, 0.5]\n"
        "bootstrap_draws: 20\n"
    )
    out = tmp_path / "r"
    args = ["robustness", "seqfeatures", "--data-dir", str(data_dir), "--out", str(out), "--suite", str(suite)]
    args += ["--methods", "simmlm,late_fusion", "--seeds", "0"]
    for item in ("data.file=mosi.pkl", "data.task=regression", "train.stage1.epochs=2", "train.stage2.epochs=1"):
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    r = json.loads((out / "robustness.json").read_text())
    assert r["methods"] == ["simmlm", "late_fusion", "simmlm_val", "simmlm_reliable"]
    clean = r["clean"]["methods"]["simmlm"]
    assert set(clean) == {"subsets", "average_mae", "counterintuitive_rate", "shapley"}
    zeros = r["scenarios"]["test zeros: text"]["1"]
    assert zeros["methods"]["simmlm"]["average_mae"] != r["clean"]["methods"]["simmlm"]["average_mae"]
    assert set(zeros["comparisons"]["late_fusion − simmlm"]) == {
        "average_mae",
        "average_f1_has0",
        "counterintuitive_rate",
    }
    md = (out / "robustness.md").read_text()
    assert "| method | Average MAE ↓ | CR (%) ↓ |" in md and "simmlm_val is simmlm with its MoFe lambda chosen" in md
    assert "on validation average MAE among 0.1, 0.5" in md and len(list((out / "robustness").glob("*.png"))) == 4
