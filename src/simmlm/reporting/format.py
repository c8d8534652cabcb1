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


def difference(value: Mapping[str, Any]) -> str:
    """A comparison (``difference``, ``low``, ``high`` as fractions; ``significant``, optionally
    ``significant_holm``) in signed percentage points with its 95 % interval, ``"+1.23 [+0.45, +2.01]"``, followed
    by "no significant difference" when the interval covers 0, or "(not after Holm)" when Holm's adjustment over its
    family does not confirm it."""
    text = f"{value['difference'] * 100:+.2f} [{value['low'] * 100:+.2f}, {value['high'] * 100:+.2f}]"
    if not value["significant"]:
        return text + " no significant difference"
    if value.get("significant_holm") is False:
        return text + " (not after Holm)"
    return text
