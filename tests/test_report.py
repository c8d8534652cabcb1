"""`simmlm report`: figures and an HTML page built from a benchmark's summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simmlm.benchmark import summary_markdown
from simmlm.cli import app


def _summary() -> dict:
    subsets = {
        "image": {"accuracy": [0.91, 0.93], "ece": [0.02, 0.03], "sce": [0.01, 0.01]},
        "audio": {"accuracy": [0.71, 0.75], "ece": [0.08, 0.07], "sce": [0.03, 0.03]},
        "image+audio": {"accuracy": [0.987, 0.991], "ece": [0.01, 0.01], "sce": [0.002, 0.003]},
    }
    method = {
        "subsets": subsets,
        "average_accuracy": [0.869, 0.890],
        "counterintuitive_rate": [0.004, 0.002],
        "gate_weights": {"image": {"image": 1.0}, "audio": {"audio": 1.0}, "image+audio": {"image": 0.6, "audio": 0.4}},
        "train_seconds": [10.0, 11.0],
        "params": 1000,
        "flops_full": 2_000_000,
        "mofe_lambda": 0.1,
        "mofe_hinge_mean": [0.01, 0.01],
        "mofe_active_fraction": [0.3, 0.3],
        "val_average_accuracy": [0.9, 0.9],
    }
    no_gates = {**method, "gate_weights": {}}
    return {
        "dataset": "avmnist",
        "modalities": ["image", "audio"],
        "seeds": [0, 1],
        "protocol": "a <test> protocol",
        "methods": {"simmlm": method, "mmp": no_gates},
    }


def test_report_writes_figures_and_html_with_the_numbers(tmp_path: Path) -> None:
    summary = _summary()
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "summary.md").write_text(summary_markdown(summary))
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("accuracy.png", "ece.png", "counterintuitive_rate.png", "gate_weights.png"):
        assert (tmp_path / name).stat().st_size > 1000
    page = (tmp_path / "report.html").read_text()
    assert "a &lt;test&gt; protocol" in page  # escaped, not raw HTML
    assert "92.00 ± 1.41" in page  # image accuracy of simmlm, mean ± std in %
    assert 'src="gate_weights.png"' in page and "mmp" in page


def test_report_on_a_folder_without_summary_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "summary.json not found" in result.output


def test_reliability_bins_reproduce_the_ece() -> None:
    import numpy as np
    import torch

    from simmlm.metrics import expected_calibration_error
    from simmlm.report import reliability_bins

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 10)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    targets = rng.integers(0, 10, 300)
    conf, acc, count = reliability_bins(probs, targets)
    ece = float((count / count.sum() * np.abs(acc - conf)).sum())
    expected = expected_calibration_error(torch.tensor(probs), torch.tensor(targets)).item()
    assert ece == pytest.approx(expected, abs=1e-6)


def test_report_draws_reliability_diagrams_from_saved_predictions(tmp_path: Path) -> None:
    import numpy as np

    summary = _summary()
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    rng = np.random.default_rng(0)
    for method in summary["methods"]:
        for seed in summary["seeds"]:
            run = tmp_path / "runs" / f"{method}-seed{seed}"
            run.mkdir(parents=True)
            probs = rng.dirichlet(np.ones(10), size=(3, 50)).astype(np.float32)
            np.savez_compressed(
                run / "predictions.npz", probs=probs, subsets=np.array([1, 2, 3]), targets=rng.integers(0, 10, 50)
            )
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    assert 'src="reliability.png"' in (tmp_path / "report.html").read_text()


def test_report_and_tables_show_a_subset_no_test_sample_has_as_a_dash(tmp_path: Path) -> None:
    summary = _summary()
    for method in summary["methods"].values():
        method["subsets"] = {**method["subsets"], "audio": {k: [float("nan")] * 2 for k in ("accuracy", "ece", "sce")}}
    markdown = summary_markdown(summary)
    assert "| simmlm | 92.00 ± 1.41 | – | 98.90 ± 0.28 |" in markdown
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "summary.md").write_text(markdown)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output


def test_gate_evenness_shows_a_collapsing_gate() -> None:
    from simmlm.benchmark import gate_evenness

    assert gate_evenness([0.25] * 4) == pytest.approx(1.0)
    assert gate_evenness([1.0, 0.0, 0.0]) == 0.0
    assert (
        0.0 < gate_evenness([0.56, 0.18, 0.12, 0.04, 0.07, 0.03]) < gate_evenness([0.19, 0.17, 0.17, 0.15, 0.17, 0.15])
    )


def test_summary_markdown_becomes_html_tables() -> None:
    from simmlm.report import markdown_to_html

    page = markdown_to_html("# title\n\nsome <text>\nmore\n\n| a | b |\n|---|---|\n| 1 | x<y |\n| 2 | z |\n\n## next\n")
    assert "<h2>title</h2>" in page and "<h3>next</h3>" in page
    assert "<p>some &lt;text&gt; more</p>" in page
    assert '<table class="sortable"><thead><tr><th>a</th><th>b</th></tr></thead>' in page
    assert "<tr><td>1</td><td>x&lt;y</td></tr><tr><td>2</td><td>z</td></tr>" in page
    assert "---" not in page and "<pre>" not in page
