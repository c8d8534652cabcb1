"""Numbers as simmlm's tables print them, in one place: ``summary.md`` (:mod:`simmlm.experiments.benchmark`),
``robustness.md`` (:mod:`simmlm.reporting.robustness_report`) and the comparison tables
(:mod:`simmlm.experiments.comparisons`) format with these, so one number reads the same everywhere.

Metrics are stored as fractions and printed as percentages (``scale=100``), one value per seed; ``–`` stands for
a number that does not exist (a subset that no test sample has, an interval from a single seed).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from simmlm.metrics.bootstrap import seed_interval

#: What a table shows where there is no number.
NO_NUMBER = "–"


#: Metrics printed in their own units rather than as percentages: key -> (scale, decimals).
OWN_UNITS = {"mae": (1.0, 3), "corr": (1.0, 3), "abs_error": (1.0, 3)}
#: Headline metrics where lower is better.
LOWER_IS_BETTER = frozenset({"mae"})


def units(key: str) -> tuple[float, int]:
    """``(scale, digits)`` of a metric: a percentage with 2 decimals, or its own units (MAE, Pearson r)."""
    return OWN_UNITS.get(key.removeprefix("average_"), (100.0, 2))


def headline(key: str, value: float) -> str:
    """One metric of one run as a log line shows it: ``"95.31%"``, or ``"0.812"`` in its own units."""
    scale, digits = units(key)
    return f"{value:.{digits}%}" if scale == 100.0 else f"{value * scale:.{digits}f}"


def pm(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``"mean ± std"`` over the seeds: the mean and the sample standard deviation (0 for one seed) of ``values``
    times ``scale``, with ``digits`` decimals; :data:`NO_NUMBER` when a value is NaN."""
    if any(math.isnan(v) for v in values):
        return NO_NUMBER  # e.g. a subset that no test sample has
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def ci(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``"mean ± half-width"`` of the mean's 95 % t-interval over the seeds (its uncertainty from the seeds alone,
    :func:`simmlm.metrics.bootstrap.seed_interval`), times ``scale``; :data:`NO_NUMBER` for fewer than two seeds or
    a NaN."""
    if len(values) < 2 or any(math.isnan(v) for v in values):
        return NO_NUMBER
    interval = seed_interval(values)
    return f"{interval.difference * scale:.{digits}f} ± {(interval.high - interval.difference) * scale:.{digits}f}"


def over_subsets(m: Mapping[str, Any], key: str, names: Sequence[str]) -> list[float]:
    """Per seed, the mean of the subset metric ``key`` of a method's summary ``m`` (``m["subsets"][name][key]``,
    one value per seed) over the subsets ``names``, leaving out those without test samples (NaN)."""
    return [
        statistics.fmean(v for v in per_seed if not math.isnan(v))
        for per_seed in zip(*(m["subsets"][n][key] for n in names), strict=True)
    ]


def training_seconds(m: Mapping[str, Any]) -> str:
    """A method's mean training seconds over the seeds: its own, and the reused (shared) part when there is one,
    e.g. ``"12.3 (+4.5 reused)"``."""
    total = statistics.fmean(m["train_seconds"])
    shared = statistics.fmean(m.get("shared_seconds") or [0.0])  # absent from summaries of older versions
    return f"{total - shared:.1f}" + (f" (+{shared:.1f} reused)" if shared else "")


def difference(value: Mapping[str, Any], scale: float = 100.0, digits: int = 2) -> str:
    """A comparison (``difference``, ``low``, ``high`` as fractions; ``significant``, optionally
    ``significant_holm``) times ``scale`` (percentage points by default), signed, with its 95 % interval,
    ``"+1.23 [+0.45, +2.01]"``, followed by "no significant difference" when the interval covers 0, or "(not after
    Holm)" when Holm's adjustment over its family does not confirm it."""
    d, lo, hi = (value[k] * scale for k in ("difference", "low", "high"))
    text = f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    if not value["significant"]:
        return text + " no significant difference"
    if value.get("significant_holm") is False:
        return text + " (not after Holm)"
    return text


def prediction_lines(result: Mapping[str, Any]) -> list[str]:
    """``simmlm predict``'s report of one sample (:func:`simmlm.engine.runs.predict_files`'s result) as lines:
    the class, its probabilities, the gate weights, the entropy and the Shapley contributions; for a regression, the
    score, its sign and the gate weights; for a segmentation, the region volumes, the gate weights per region and the
    mean entropies."""
    if "region_volumes_ml" in result:
        lines = [f"segmentation from {', '.join(result['modalities'])} ({result['method']})"]
        volumes = result["region_volumes_ml"].items()
        lines.append("region volumes: " + "  ".join(f"{r.upper()} {v:.1f} mL" for r, v in volumes))
        for name, weights in (result["gate_weights"] or {}).items():
            lines.append(f"gate weights {name}: " + "  ".join(f"{r.upper()} {w:.3f}" for r, w in weights.items()))
        tumour = "-" if result["mean_entropy_tumour"] is None else f"{result['mean_entropy_tumour']:.3f}"
        brain = result["mean_entropy_brain"]
        lines.append(f"mean entropy: tumour {tumour}, brain {brain:.3f} nats (max {result['max_entropy']:.3f})")
        if result["output"]:
            lines.append(f"wrote {result['output']}")
        return lines
    if "class_shares" in result:  # a 2-D segmentation
        lines = [f"segmentation from {', '.join(result['modalities'])} ({result['method']})"]
        lines.append("class shares: " + "  ".join(f"{c} {v:.1%}" for c, v in result["class_shares"].items()))
        if result["gate_weights"] is not None:
            lines.append("gate weights: " + "  ".join(f"{k} {w:.3f}" for k, w in result["gate_weights"].items()))
        return lines + ([f"wrote {result['output']}"] if result["output"] else [])
    if "score" in result:  # a regression run
        lines = [
            f"score: {result['score']:+.3f} ({result['sign']})  (from {', '.join(result['modalities'])}; "
            f"{result['method']})"
        ]
        if result["gate_weights"] is not None:
            lines.append("gate weights: " + "  ".join(f"{k} {w:.3f}" for k, w in result["gate_weights"].items()))
        return lines
    label = f" ({result['class_name']})" if result.get("class_name") not in (None, str(result["prediction"])) else ""
    lines = [f"prediction: {result['prediction']}{label}  (from {', '.join(result['modalities'])}; {result['method']})"]
    probabilities = zip(result["class_names"], result["probabilities"], strict=True)
    lines.append("probabilities: " + "  ".join(f"{name}:{p:.3f}" for name, p in probabilities))
    if result["gate_weights"] is not None:
        lines.append("gate weights: " + "  ".join(f"{k} {w:.3f}" for k, w in result["gate_weights"].items()))
    lines.append(f"predictive entropy: {result['entropy']:.3f} nats (max {result['max_entropy']:.3f})")
    if result.get("shapley"):
        contributions = "  ".join(f"{k} {v:+.3f}" for k, v in result["shapley"].items())
        lines.append(f"Shapley contributions to p({result['class_name']}): {contributions} (sum = p - 1/K)")
    return lines
