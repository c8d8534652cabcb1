"""Every method against simmlm, with paired-bootstrap intervals: as data (``summary.json``, ``robustness.json``) and
as a Markdown table (``summary.md``, ``robustness.md``, the report).

A row ``A − simmlm`` holds, for average accuracy, CR and ECE, the mean over seeds of A's metric minus simmlm's on
the full test set, and a 95 % interval from :func:`simmlm.metrics.bootstrap.compare_runs`: test samples resampled
(the same resamples for both methods, so the comparison is paired) pooled with the seeds resampled. An interval
that covers 0 reads "no significant difference".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simmlm.metrics.bootstrap import RunArrays, compare_runs

REFERENCE = "simmlm"
#: metric key -> column title (differences in percentage points; ↓: lower is better)
METRICS = {
    "average_accuracy": "Δ average accuracy (pp)",
    "counterintuitive_rate": "Δ CR (pp) ↓",
    "ece": "Δ ECE (pp) ↓",
}


def reference_method(methods: Sequence[str]) -> str:
    """What every method is compared with: simmlm when it ran, else the first method."""
    return REFERENCE if REFERENCE in methods else methods[0]


def compare_methods(
    runs: Mapping[str, Sequence[RunArrays]], draws: int = 1000, seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"A − simmlm": {metric: {"difference", "low", "high", "significant"}}}`` for every other method A.

    ``runs`` maps a method to its runs' test predictions, one per seed, in the same seed order for every method.
    """
    names = list(runs)
    reference = reference_method(names)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method in names:
        if method == reference:
            continue
        rows = compare_runs(runs[method], runs[reference], num_draws=draws, seed=seed)
        out[f"{method} − {reference}"] = {
            c.metric: {"difference": c.difference, "low": c.low, "high": c.high, "significant": c.significant}
            for c in rows
        }
    return out


def runs_from_folder(directory: Path, methods: Sequence[str], seeds: Sequence[int]) -> dict[str, list[RunArrays]]:
    """The test predictions (``predictions.npz``) of a benchmark's runs; empty when a run has none."""
    files = {m: [directory / "runs" / f"{m}-seed{s}" / "predictions.npz" for s in seeds] for m in methods}
    if not all(f.is_file() for paths in files.values() for f in paths):
        return {}
    return {m: [RunArrays.from_npz(f) for f in paths] for m, paths in files.items()}


def _cell(value: Mapping[str, Any]) -> str:
    text = f"{value['difference'] * 100:+.2f} [{value['low'] * 100:+.2f}, {value['high'] * 100:+.2f}]"
    return text if value["significant"] else text + " no significant difference"


def comparison_markdown(
    groups: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]], lead: str | None = None
) -> list[str]:
    """Table lines, one row per comparison. ``groups`` maps a value of a leading column named ``lead`` (e.g. the
    severity) to the comparisons at that value; without ``lead`` it holds one group (its key is not shown)."""
    head = (f"| {lead} " if lead else "") + "| comparison | " + " | ".join(METRICS.values()) + " |"
    lines = [head, "|---" * (len(METRICS) + 1 + bool(lead)) + "|"]
    for value, comparisons in groups.items():
        for name, metrics in comparisons.items():
            cells = " | ".join(_cell(metrics[k]) for k in METRICS)
            lines.append((f"| {value} " if lead else "") + f"| {name} | {cells} |")
    return lines


def comparison_note(draws: int) -> str:
    """What the comparison tables mean, in one paragraph."""
    return (
        "Differences to simmlm: mean over seeds of the method's metric minus simmlm's on the test set, in percentage "
        f"points, with a 95 % interval from a paired bootstrap ({draws} draws: test samples resampled, the same for "
        "both methods, pooled with the seeds resampled). An interval that covers 0 says: no significant difference."
    )
