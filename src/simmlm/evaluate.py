"""Per-subset evaluation: accuracy, ECE, SCE, counterintuitive rate and mean gate weights.

Rule for data with missing modalities: a subset's metrics (and mean gate weights) are computed over the samples
that have every modality of the subset (``SubsetPredictions.covered``), with ``samples`` giving their number; a
subset no sample has gets NaN metrics and is left out of ``average_accuracy``. The counterintuitive rate counts,
per sample, only the nested pairs inside its available modalities (NaN if no sample has two).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from simmlm.methods.predict import SubsetPredictions
from simmlm.metrics import (
    accuracy,
    counterintuitive_rate,
    expected_calibration_error,
    static_calibration_error,
)
from simmlm.subsets import subset_name


def classification_report(preds: SubsetPredictions, modalities: Sequence[str], n_bins: int = 20) -> dict[str, Any]:
    """Metrics of a classifier under every subset in ``preds``, each over the samples that have the subset.

    Returns:
        ``{"subsets": {name: {"accuracy", "ece", "sce", "samples"}}, "average_accuracy", "counterintuitive_rate",
        "gate_weights": {name: {modality: mean weight}}}``; CR uses correctness (0/1) as the score P.
    """
    probs = preds.logits.float().softmax(-1)  # [S, N, K]
    covered = preds.covered  # [S, N]
    subsets: dict[str, dict[str, float]] = {}
    gate_weights: dict[str, dict[str, float]] = {}
    for s, bits in enumerate(preds.subsets):
        name = subset_name(bits, modalities)
        rows = covered[s]
        p, y = probs[s][rows], preds.targets[rows]
        n = int(rows.sum())
        subsets[name] = {
            "accuracy": accuracy(p, y).item() if n else math.nan,
            "ece": expected_calibration_error(p, y, n_bins).item() if n else math.nan,
            "sce": static_calibration_error(p, y, n_bins).item() if n else math.nan,
            "samples": n,
        }
        if preds.gate_weights is not None:
            mean = preds.gate_weights[s][rows].float().mean(0)  # [M] or [M, K]; NaN if no sample
            gate_weights[name] = {m: mean[i].mean().item() for i, m in enumerate(modalities) if bits >> i & 1}
    correct = (probs.argmax(-1) == preds.targets.unsqueeze(0)).float().T  # [N, S]; uncovered pairs are not counted
    evaluated = [v["accuracy"] for v in subsets.values() if v["samples"]]
    report: dict[str, Any] = {
        "subsets": subsets,
        "average_accuracy": sum(evaluated) / len(evaluated) if evaluated else math.nan,
        "counterintuitive_rate": _counterintuitive_or_nan(correct, preds),
        "gate_weights": gate_weights,
    }
    return report


def _counterintuitive_or_nan(correct: Any, preds: SubsetPredictions) -> float:
    """CR over each sample's available nested pairs; NaN when no sample has a nested pair of listed subsets."""
    has_pair = any(
        ((plus & ~preds.available) == 0).any().item()
        for plus in preds.subsets
        if any(minus != plus and minus & plus == minus for minus in preds.subsets)
    )
    return counterintuitive_rate(correct, preds.subsets, preds.available).item() if has_pair else math.nan
