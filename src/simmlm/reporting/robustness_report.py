"""``robustness.md`` and the figures of a robustness suite; the Shapley bars that benchmark reports share.

Figures (rules of :mod:`simmlm.reporting.report_figures`): per scenario, accuracy and CR against severity, one line per
method, band ± std over seeds (``robustness/<scenario>.png``); the population Shapley contribution of each modality per
method, clean and at each scenario's strongest severity (``robustness/shapley.png``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simmlm.evaluation.evaluate import SHAPLEY_NOTE
from simmlm.experiments.comparisons import comparison_markdown, comparison_note
from simmlm.reporting import report_figures as rf
from simmlm.reporting.format import pm, units
from simmlm.reporting.summary import SHAPLEY_NOTE_REGRESSION

#: What a scenario's severity means, by the scenario's first words.
SEVERITY_MEANING = {
    "train missing": "share of the training and validation samples that lack the modality",
    "train": "share of the training and validation samples whose modality is corrupted (marked present)",
    "test noise": "std of the added Gaussian noise, in units of the modality's std on the training data",
    "test occlude": "share of the area set to 0 (a random block per sample)",
    "test band": "share of the rows (MFCC: coefficients) set to 0 (a random band per sample)",
    "test zeros": "share of the test samples whose content is replaced by zeros, mask still 'present'",
}


def severity_meaning(scenario: str) -> str:
    """What the severity of ``scenario`` measures."""
    for prefix in sorted(SEVERITY_MEANING, key=len, reverse=True):
        if scenario.startswith(prefix):
            return SEVERITY_MEANING[prefix]
    return "severity"


def slug(text: str) -> str:
    """A file name for a scenario."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def variant_text(variant: Mapping[str, Any]) -> str:
    """What a suite's variant of simmlm changes, in words."""
    parts = [f"method options {variant['method_options']}"] if variant["method_options"] else []
    aug = variant.get("stage2_augment")
    if aug:
        shown = ("kind", "prob", "severity", "zero_share")
        what = ", ".join(f"{k} {v}" for k, v in aug.items() if k in shown or (k.endswith("_share") and v))
        parts.append(f"stage 2 augments every modality ({what})")
    return "; ".join(parts or ["as simmlm"]) + "; stage 2 only, from simmlm's stage-1 experts of the same seed"


def _metric_table(severities: Mapping[str, Any], key: str, methods: Sequence[str]) -> list[str]:
    lines = ["| method | " + " | ".join(severities) + " |", "|---" * (len(severities) + 1) + "|"]
    for m in methods:
        cells = " | ".join(pm(s["methods"][m][key], *units(key)) for s in severities.values())
        lines.append(f"| {m} | {cells} |")
    return lines


def _words(title: str) -> str:
    """A table title as words in a sentence: "Average accuracy (%)" -> "average accuracy"."""
    text = title.split(" (")[0].removesuffix(" ↓")
    return text[0].lower() + text[1:]


def suite_metrics(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, title) of the metrics a suite's results hold: average accuracy, CR and ECE, or for a regression
    average MAE and CR."""
    entry = r["clean"] or next(iter(next(iter(r["scenarios"].values())).values()))
    if "average_mae" in next(iter(entry["methods"].values())):
        return [("average_mae", "Average MAE ↓"), ("counterintuitive_rate", "CR (%) ↓")]
    return [("average_accuracy", "Average accuracy (%)"), ("counterintuitive_rate", "CR (%) ↓"), ("ece", "ECE (%) ↓")]


def robustness_markdown(r: dict[str, Any]) -> str:
    """``robustness.json`` as Markdown: the clean results, then per scenario accuracy, CR and ECE against severity
    (mean ± std over seeds, %) and the comparisons with their intervals; Shapley contributions at the end."""
    methods, modalities = r["methods"], r["modalities"]
    suite, metrics = r["suite"], suite_metrics(r)
    regression = metrics[0][0] == "average_mae"
    what = (
        "MAE averaged over every modality subset, CR (the sign's correctness)"
        if regression
        else "accuracy averaged over every modality subset, CR, ECE averaged over subsets (20 bins), in %"
    )
    minutes = sum(c["seconds"] for c in r["cells"].values()) / 60
    lines = [
        f"# Robustness: {r['dataset']}: {', '.join(methods)} (seeds {', '.join(map(str, r['seeds']))})",
        "",
        f"{len(r['cells'])} training conditions (cells: {', '.join(c['title'] for c in r['cells'].values())}), each "
        f"a benchmark of every method and seed, {minutes:.1f} min of training and evaluation in all. Test-time "
        f"corruptions use the models trained on clean data. Metrics as in summary.md: {what}, mean ± std over seeds. "
        + comparison_note(suite["bootstrap_draws"], r.get("holm_family"), reference=None),
    ]
    chosen = {c["title"]: c["lambda_chosen"] for c in r["cells"].values() if "lambda_chosen" in c}
    if chosen:
        grid = ", ".join(f"{lam:g}" for lam in suite["lambdas"])
        picks = "; ".join(
            f"{title}: " + ", ".join(f"seed {s} → {lam:g}" for s, lam in per_seed.items())
            for title, per_seed in chosen.items()
        )
        lines += [
            "",
            f"simmlm_val is simmlm with its MoFe lambda chosen per seed on validation {_words(metrics[0][1])} among "
            f"{grid} (never on test data). Chosen: {picks}.",
        ]
    for name, variant in suite.get("variants", {}).items():
        lines += ["", f"{name} is a variant of simmlm: {variant_text(variant)}."]
    clean = r["clean"]
    if clean is not None:
        lines += ["", "## Clean training and test data", "", "| method | " + " | ".join(t for _, t in metrics) + " |"]
        lines += ["|---" * (len(metrics) + 1) + "|"]
        for m in methods:
            v = clean["methods"][m]
            lines.append(f"| {m} | " + " | ".join(pm(v[k], *units(k)) for k, _ in metrics) + " |")
        lines += ["", *comparison_markdown({"": clean["comparisons"]})]
    for scenario, severities in r["scenarios"].items():
        lines += ["", f"## {scenario}", "", f"Severity: {severity_meaning(scenario)}."]
        for key, title in metrics:
            lines += ["", f"{title} by severity:", "", *_metric_table(severities, key, methods)]
        harder = {s: v["comparisons"] for s, v in severities.items() if float(s) > 0}
        lines += ["", "Comparisons (A − R), by severity:", "", *comparison_markdown(harder, lead="severity")]
    value = "abs_error" if regression else "probability"
    lines += [
        "",
        "## Shapley contributions ("
        + ("the error's reduction against predicting 0" if regression else "pp of the true class's probability")
        + "), clean and at each scenario's worst severity",
        "",
        SHAPLEY_NOTE_REGRESSION if regression else SHAPLEY_NOTE,
        "",
        "| scenario | severity | method | " + " | ".join(modalities) + " |",
        "|---" * (len(modalities) + 3) + "|",
    ]
    for scenario, severity, entry in _shapley_panels(r):
        for m in methods:
            phi = entry["methods"][m].get("shapley", {}).get(value)
            if phi:
                row = " | ".join(pm(phi[x], *units(value)) for x in modalities)
                lines.append(f"| {scenario} | {severity} | {m} | {row} |")
    return "\n".join(lines) + "\n"


def _shapley_panels(r: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(scenario, severity, results): the clean data, then each scenario at its strongest severity."""
    panels = [("clean", "0", r["clean"])] if r["clean"] is not None else []
    for scenario, severities in r["scenarios"].items():
        strongest = max(severities, key=float)
        panels.append((scenario, strongest, severities[strongest]))
    return panels


def write_figures(r: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    """Draw the curves and the Shapley figure under ``out/robustness``; returns (file, caption) pairs."""
    folder = out / "robustness"
    folder.mkdir(exist_ok=True)
    figures = []
    metrics = suite_metrics(r)[:2]
    value = "abs_error" if metrics[0][0] == "average_mae" else "probability"
    for scenario, severities in r["scenarios"].items():
        path = folder / f"{slug(scenario)}.png"
        _curves(scenario, severities, r["methods"], path, metrics)
        caption = f"{scenario}: {_words(metrics[0][1])} and CR against severity ({severity_meaning(scenario)}); "
        figures.append((f"robustness/{path.name}", caption + "line: mean over seeds, band: ± std over seeds"))
    panels = [
        (f"{s} ({v})" if s != "clean" else s, {m: e["methods"][m]["shapley"][value] for m in r["methods"]})
        for s, v, e in _shapley_panels(r)
        if all("shapley" in e["methods"][m] for m in r["methods"])
    ]
    if panels:
        scale = units(value)[0]
        shapley_bars(panels, r["modalities"], folder / "shapley.png", scale)
        caption = "Shapley contribution of each modality to " + (
            "the error's reduction against predicting 0 (score units; "
            if value == "abs_error"
            else "the probability of the true class (pp; "
        )
        caption += (
            "mean over test samples; bars: mean ± std over seeds), clean and at each scenario's strongest severity"
        )
        figures.append(("robustness/shapley.png", caption))
    return figures


def _curves(
    scenario: str, severities: Mapping[str, Any], methods: Sequence[str], path: Path, metrics: Sequence[tuple[str, str]]
) -> None:
    xs = [float(s) for s in severities]
    fig, axes = rf.figure(1, 2, 7.5, 3.2)
    for ax, (key, label) in zip(axes[0], metrics, strict=True):
        scale = units(key)[0]
        for m in methods:
            stats = np.array([rf.mean_std([scale * v for v in s["methods"][m][key]]) for s in severities.values()])
            (line,) = ax.plot(xs, stats[:, 0], marker="o", markersize=3, label=m)
            ax.fill_between(xs, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], color=line.get_color(), alpha=0.2)
        ax.set_xlabel("severity")
        ax.set_title(f"{scenario}: {label[0].lower() + label[1:]}", fontsize=8)
        ax.grid(alpha=0.3)
    rf.legend(fig, axes[0][0])
    rf.save(fig, path)


def shapley_bars(
    panels: Sequence[tuple[str, Mapping[str, Mapping[str, Sequence[float]]]]],
    modalities: Sequence[str],
    path: Path,
    scale: float = 100.0,
) -> None:
    """One panel per (title, method -> modality -> per-seed contributions): grouped bars, modalities on x, one bar
    per method, error bars ± std over seeds; values times ``scale`` (percentage points by default)."""
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    methods = list(panels[0][1])
    fig, axes = rf.figure(nrows, ncols, 0.8 + ncols * (0.8 + 0.35 * len(methods) * len(modalities)), 0.9 + 2.8 * nrows)
    width = 0.8 / len(methods)
    for ax, (title, values) in zip(axes.flat, panels, strict=False):
        for i, m in enumerate(methods):
            stats = [rf.mean_std([scale * v for v in values[m][x]]) for x in modalities]
            xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(modalities))]
            ax.bar(xs, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=2, label=m)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(modalities)), modalities)
        ax.set_title(title, fontsize=8)
        ax.set_ylabel("percentage points" if scale == 100 else "score units", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        fig.delaxes(ax)
    rf.legend(fig, axes.flat[0])
    rf.save(fig, path)
