"""`simmlm report`: figures and an HTML page built from a benchmark's summary.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.reporting.summary import summary_markdown


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
    from simmlm.reporting.report import reliability_bins

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
    from simmlm.reporting.summary import gate_evenness

    assert gate_evenness([0.25] * 4) == pytest.approx(1.0)
    assert gate_evenness([1.0, 0.0, 0.0]) == 0.0
    assert (
        0.0 < gate_evenness([0.56, 0.18, 0.12, 0.04, 0.07, 0.03]) < gate_evenness([0.19, 0.17, 0.17, 0.15, 0.17, 0.15])
    )


def test_summary_markdown_becomes_html_tables() -> None:
    from simmlm.reporting.report import markdown_to_html

    page = markdown_to_html("# title\n\nsome <text>\nmore\n\n| a | b |\n|---|---|\n| 1 | x<y |\n| 2 | z |\n\n## next\n")
    assert "<h2>title</h2>" in page and "<h3>next</h3>" in page
    assert "<p>some &lt;text&gt; more</p>" in page
    assert '<table class="sortable"><thead><tr><th>a</th><th>b</th></tr></thead>' in page
    assert "<tr><td>1</td><td>x&lt;y</td></tr><tr><td>2</td><td>z</td></tr>" in page
    assert "---" not in page and "<pre>" not in page


# --- figures that scale with the number of modalities (3 to 255 subsets) ---------------------------------------

_NAMES = ("pixels", "pca", "profiles", "dct", "morphology", "moments", "texture", "spectrum")
_MAX_PX = (1150, 1600)


def synthetic_summary(m: int, segmentation: bool = False, nan_subset: bool = False) -> dict:
    """A benchmark summary over ``m`` modalities (realistic names), three methods (two with gates), three seeds."""
    import numpy as np

    from simmlm.subsets import all_subsets, subset_name

    rng = np.random.default_rng(m)
    modalities = list(_NAMES[:m])
    strength = rng.uniform(0.2, 0.8, m)
    keys = ("dice_wt", "dice_tc", "dice_et", "dice_mean") if segmentation else ("accuracy",)
    methods = {}
    for shift, name in enumerate(("simmlm", "dmome", "late_fusion")):
        subsets, gates = {}, {}
        for bits in all_subsets(m):
            present = [i for i in range(m) if bits >> i & 1]
            score = 0.95 - 0.8 * np.prod(1 - strength[present]) - 0.01 * shift
            values = {k: [float(score + rng.normal(0, 0.005)) for _ in range(3)] for k in keys}
            values |= {"ece": rng.uniform(0.01, 0.06, 3).tolist(), "sce": [0.01] * 3, "samples": [100] * 3}
            subsets[subset_name(bits, modalities)] = values
            weights = rng.dirichlet(np.ones(len(present)))
            gates[subset_name(bits, modalities)] = {
                modalities[i]: float(w) for i, w in zip(present, weights, strict=True)
            }
        if nan_subset:
            subsets[modalities[-1]] = {k: [float("nan")] * 3 for k in subsets[modalities[-1]]}
        average = "average_dice" if segmentation else "average_accuracy"
        methods[name] = {
            "subsets": subsets,
            average: [0.8] * 3,
            "counterintuitive_rate": rng.uniform(0, 0.05, 3).tolist(),
            "gate_weights": gates if name != "late_fusion" else {},
            "train_seconds": [10.0] * 3,
            "params": 1000,
            "flops_full": 2_000_000,
            "mofe_lambda": 0.1,
            "mofe_hinge_mean": [0.01] * 3,
            "mofe_active_fraction": [0.3] * 3,
        }
        if not segmentation:
            methods[name]["shapley"] = {
                v: {x: rng.uniform(-0.05, 0.3, 3).tolist() for x in modalities} for v in ("probability", "correctness")
            }
        if segmentation:
            regions = {r: [0.01] * 3 for r in ("wt", "tc", "et")}
            per_region = {s: {k: {r: w for r in ("wt", "tc", "et")} for k, w in g.items()} for s, g in gates.items()}
            methods[name] |= {"counterintuitive_rate_regions": regions, "gate_weights_regions": per_region}
    kind = "segmentation" if segmentation else "classification"
    return {
        "dataset": f"synthetic-{m}",
        "modalities": modalities,
        "seeds": [0, 1, 2],
        "protocol": kind,
        "methods": methods,
    }


def write_synthetic(directory: Path, m: int, segmentation: bool = False, predictions: bool = True) -> dict:
    """summary.json, summary.md and (classification) runs/<method>-seed<k>/predictions.npz with NaN rows."""
    import numpy as np

    from simmlm.subsets import all_subsets

    summary = synthetic_summary(m, segmentation, nan_subset=m == 6)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(summary))
    (directory / "summary.md").write_text(summary_markdown(summary))
    if predictions and not segmentation:
        rng = np.random.default_rng(0)
        bits = np.array(all_subsets(m))
        missing = np.arange(40) % (m + 2)  # sample i lacks modality missing[i] when < m
        for method in summary["methods"]:
            for seed in summary["seeds"]:
                run = directory / "runs" / f"{method}-seed{seed}"
                run.mkdir(parents=True)
                probs = rng.dirichlet(np.ones(5) * 0.5, size=(len(bits), 40)).astype(np.float32)
                probs[(bits[:, None] >> missing[None, :] & 1).astype(bool) & (missing < m)[None, :]] = np.nan
                np.savez_compressed(run / "predictions.npz", probs=probs, subsets=bits, targets=rng.integers(0, 5, 40))
    return summary


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def page_images(directory: Path) -> list[Path]:
    import re

    return [directory / src for src in re.findall(r'<img src="([^"]+)"', (directory / "report.html").read_text())]


@pytest.mark.parametrize(("m", "segmentation"), [(2, False), (3, False), (6, False), (8, False), (2, True), (4, True)])
def test_every_figure_fits_the_page_without_overlaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, m: int, segmentation: bool
) -> None:
    from simmlm.reporting import report_figures
    from simmlm.reporting.report import write_report

    problems: list[str] = []
    save = report_figures.save

    def checked_save(fig: Any, path: Path) -> None:
        report_figures.declutter(fig)
        problems.extend(f"{path.name}: {p}" for p in report_figures.layout_problems(fig))
        save(fig, path)

    monkeypatch.setattr(report_figures, "save", checked_save)
    write_synthetic(tmp_path, m, segmentation)
    write_report(tmp_path)
    images = page_images(tmp_path)
    assert len(images) >= 5
    for image in images:
        assert image.is_file(), image
        width, height = png_size(image)
        assert width <= _MAX_PX[0] and height <= _MAX_PX[1], (image.name, width, height)
        assert height >= 200, (image.name, width, height)
    assert not problems, problems
    names, page = {p.name for p in images}, (tmp_path / "report.html").read_text()
    head = "dice_mean" if segmentation else "accuracy"
    assert {"by_size.png", "added_value.png", "counterintuitive_rate.png", "gate_weights.png"} <= names
    if 2**m - 1 <= 7:  # grouped bars per subset and one reliability panel per subset
        assert {f"{head}.png", "ece.png"} <= names and f"{head}_heatmap.png" not in names
    else:
        assert f"{head}_heatmap.png" in names and not {f"{head}.png", "ece.png"} & names
    for caption in _CAPTIONS[m, segmentation]:
        assert caption in page, caption


_CAPTIONS = {
    (2, False): ["one panel per subset.", "Rows: all 3 subsets"],
    (3, False): ["one panel per subset.", "Rows: all 7 subsets"],
    (6, False): [
        "the 15 best and the 15 worst of the 63 subsets, separated by a gap; the 32 in between",
        "(1 without test samples left out)",
        "is every modality except x and y",
        "the full set, the 6 leave-one-out subsets and the 15 pairs",
        "one panel per number k of available modalities",
    ],
    (8, False): [
        "the 15 best and the 15 worst of the 255 subsets",
        "the full set, the 8 leave-one-out subsets and the first 22 (in modality order) of the 28 pairs",
        "one panel per number k of available modalities",
    ],
    (2, True): ["Dice (WT) per subset", "one panel per Dice"],
    (4, True): ["Rows: all 15 subsets; values annotated", "Rows: all 15 subsets; blank: modality absent"],
}


def test_added_value_and_scores_by_size_on_a_hand_computed_case() -> None:
    from simmlm.reporting.report_figures import added_value, by_size

    def entry(*accuracy: float) -> dict:
        return {"accuracy": list(accuracy), "ece": [0.0] * len(accuracy)}

    summary = {
        "modalities": ["a", "b", "c"],
        "seeds": [0, 1],
        "methods": {
            "x": {
                "subsets": {
                    "a": entry(0.5, 0.6),
                    "b": entry(0.4, 0.4),
                    "c": entry(float("nan"), float("nan")),  # no test sample has c alone: pairs with it skipped
                    "a+b": entry(0.7, 0.8),
                    "a+c": entry(0.6, 0.6),
                    "b+c": entry(0.5, 0.7),
                    "a+b+c": entry(0.9, 0.9),
                }
            }
        },
    }
    value = added_value(summary, "accuracy")["x"]
    # a: (a+b − b, a+c − c [NaN: skipped], a+b+c − b+c) = seed 0: (0.3, 0.4) -> 0.35; seed 1: (0.4, 0.2) -> 0.3
    assert value["a"][0] == pytest.approx(0.325) and value["a"][1] == pytest.approx(0.0353553, abs=1e-6)
    # b: (a+b − a, b+c − c [skipped], a+b+c − a+c) = seed 0: (0.2, 0.3) -> 0.25; seed 1: (0.2, 0.3) -> 0.25
    assert value["b"] == pytest.approx((0.25, 0.0))
    # c: (a+c − a, b+c − b, a+b+c − a+b) = seed 0: (0.1, 0.1, 0.2); seed 1: (0.0, 0.3, 0.1)
    assert value["c"][0] == pytest.approx((0.4 / 3 + 0.4 / 3) / 2)
    ks, mean, std = by_size(summary, "accuracy")["x"]
    assert list(ks) == [1, 2, 3]
    # k = 1: seed 0 mean(0.5, 0.4) = 0.45, seed 1 mean(0.6, 0.4) = 0.5 (c skipped)
    assert mean == pytest.approx([0.475, (0.6 + 0.7) / 2, 0.9])
    assert std[0] == pytest.approx(0.0353553, abs=1e-6)
