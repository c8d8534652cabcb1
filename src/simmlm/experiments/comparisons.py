"""Every method against simmlm, with 95 % intervals: as data (``summary.json``, ``robustness.json``) and as a
Markdown table (``summary.md``, ``robustness.md``, the report).

A row ``A − simmlm`` holds, for average accuracy, CR and ECE (regression: average MAE, average F1 and CR), the mean
over seeds of A's metric minus simmlm's on the full test set, a 95 % interval and a p-value from
:func:`simmlm.metrics.bootstrap.compare_runs`: the seeds' spread (a t-interval over the paired per-seed differences)
plus the test-set variance the seeds share (test-set resamples, the same for both methods). An interval that covers
0 reads "no significant difference". A family of comparisons (the robustness suite) is also read with Holm's
adjustment (:func:`holm_adjust`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simmlm.metrics.bootstrap import RunArrays, compare_runs, holm
from simmlm.reporting.format import difference

REFERENCE = "simmlm"
#: Bootstrap draws of the comparisons in ``summary.json``.
COMPARISON_DRAWS = 1000
#: metric key -> (column title, scale, decimals): differences in percentage points but MAE's, in the score's
#: units (↓: lower is better). A table shows the metrics its comparisons hold, in this order.
METRICS = {
    "average_accuracy": ("Δ average accuracy (pp)", 100.0, 2),
    "average_mae": ("Δ average MAE ↓", 1.0, 3),
    "average_f1_has0": ("Δ average F1, has-0 (pp)", 100.0, 2),
    "counterintuitive_rate": ("Δ CR (pp) ↓", 100.0, 2),
    "ece": ("Δ ECE (pp) ↓", 100.0, 2),
}


def reference_method(methods: Sequence[str]) -> str:
    """What every method is compared with: simmlm when it ran, else the first method."""
    return REFERENCE if REFERENCE in methods else methods[0]


def compare_methods(
    runs: Mapping[str, Sequence[RunArrays]],
    draws: int = 1000,
    seed: int = 0,
    references: Sequence[str] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"A − R": {metric: {"difference", "low", "high", "p_value", "significant"}}}`` for every reference R and
    every other method A, each pair once (in the first reference's row).

    ``runs`` maps a method to its runs' test predictions, one per seed, in the same seed order for every method.
    ``references``: the methods compared with every other, those of them that ran (default: simmlm when it ran,
    else the first method).
    """
    names = list(runs)
    chosen = [r for r in references or [] if r in runs] or [reference_method(names)]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    done: set[frozenset[str]] = set()
    for reference in chosen:
        for method in names:
            if method == reference or frozenset((method, reference)) in done:
                continue
            done.add(frozenset((method, reference)))
            rows = compare_runs(runs[method], runs[reference], num_draws=draws, seed=seed)
            out[f"{method} − {reference}"] = {
                c.metric: {
                    "difference": c.difference,
                    "low": c.low,
                    "high": c.high,
                    "p_value": c.p_value,
                    "significant": c.significant,
                }
                for c in rows
            }
    return out


def runs_from_folder(directory: Path, methods: Sequence[str], seeds: Sequence[int]) -> dict[str, list[RunArrays]]:
    """The test predictions (``predictions.npz``) of a benchmark's runs; empty when a run has none."""
    files = {m: [directory / "runs" / f"{m}-seed{s}" / "predictions.npz" for s in seeds] for m in methods}
    if not all(f.is_file() for paths in files.values() for f in paths):
        return {}
    return {m: [RunArrays.from_npz(f) for f in paths] for m, paths in files.items()}


def holm_adjust(families: Sequence[Mapping[str, Mapping[str, dict[str, Any]]]], alpha: float = 0.05) -> int:
    """Mark every entry of several comparison tables (``compare_methods``' output) with ``significant_holm``: Holm's
    step-down test at family-wise error ``alpha`` over all their p-values together. Returns the family's size."""
    entries = [e for family in families for metrics in family.values() for e in metrics.values()]
    for entry, rejected in zip(entries, holm([e["p_value"] for e in entries], alpha), strict=True):
        entry["significant_holm"] = rejected
    return len(entries)


def comparison_markdown(
    groups: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]], lead: str | None = None
) -> list[str]:
    """Table lines, one row per comparison. ``groups`` maps a value of a leading column named ``lead`` (e.g. the
    severity) to the comparisons at that value; without ``lead`` it holds one group (its key is not shown)."""
    present = {k for comparisons in groups.values() for metrics in comparisons.values() for k in metrics}
    keys = [k for k in METRICS if k in present] or ["average_accuracy", "counterintuitive_rate", "ece"]
    head = (f"| {lead} " if lead else "") + "| comparison | " + " | ".join(METRICS[k][0] for k in keys) + " |"
    lines = [head, "|---" * (len(keys) + 1 + bool(lead)) + "|"]
    for value, comparisons in groups.items():
        for name, metrics in comparisons.items():
            cells = " | ".join(difference(metrics[k], *METRICS[k][1:]) for k in keys)
            lines.append((f"| {value} " if lead else "") + f"| {name} | {cells} |")
    return lines


def comparison_note(draws: int, family: int | None = None, reference: str | None = REFERENCE) -> str:
    """What the comparison tables mean, in one paragraph; ``family``: the number of comparisons Holm's adjustment
    ran over, when it did; ``reference``: the method every row is compared with (None: rows "A − R" of several)."""
    lead, subject = (
        (f"Differences to {reference}", f"the method's metric minus {reference}'s")
        if reference
        else ("Differences A − R", "method A's metric minus method R's")
    )
    text = (
        f"{lead}: mean over seeds of {subject} on the test set, in percentage "
        "points, with a 95 % interval: a t-interval over the seeds' paired differences with the test-set variance "
        f"the seeds share added ({draws} test-set resamples, the same for both methods; Welch–Satterthwaite degrees "
        "of freedom; false-positive rate 3.9-5.5 % for 3, 5 and 10 seeds in simulation, "
        "`scripts/interval_coverage.py`). An interval that covers 0 says: no significant difference."
    )
    if family:
        text += (
            f' With {family} comparisons in this suite, some intervals exclude 0 by chance: "(not after Holm)" marks '
            "a difference that Holm's step-down adjustment over all of them (family-wise error 5 %) does not confirm."
        )
    return text
