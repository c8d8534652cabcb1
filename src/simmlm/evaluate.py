"""Per-subset evaluation: accuracy, ECE, SCE, counterintuitive rate and mean gate weights."""

from __future__ import annotations

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
    """Metrics of a classifier under every subset in ``preds``.

    Returns:
        ``{"subsets": {name: {"accuracy", "ece", "sce"}}, "average_accuracy", "counterintuitive_rate",
        "gate_weights": {name: {modality: mean weight}}}``; CR uses correctness (0/1) as the score P.
    """
    probs = preds.logits.float().softmax(-1)  # [S, N, K]
    subsets: dict[str, dict[str, float]] = {}
    gate_weights: dict[str, dict[str, float]] = {}
    for s, bits in enumerate(preds.subsets):
        name = subset_name(bits, modalities)
        subsets[name] = {
            "accuracy": accuracy(probs[s], preds.targets).item(),
            "ece": expected_calibration_error(probs[s], preds.targets, n_bins).item(),
            "sce": static_calibration_error(probs[s], preds.targets, n_bins).item(),
        }
        if preds.gate_weights is not None:
            mean = preds.gate_weights[s].float().mean(0)  # [M] or [M, K]
            gate_weights[name] = {m: mean[i].mean().item() for i, m in enumerate(modalities) if bits >> i & 1}
    correct = (probs.argmax(-1) == preds.targets.unsqueeze(0)).float().T  # [N, S]
    report: dict[str, Any] = {
        "subsets": subsets,
        "average_accuracy": sum(v["accuracy"] for v in subsets.values()) / len(subsets),
        "counterintuitive_rate": counterintuitive_rate(correct, preds.subsets, preds.available).item(),
        "gate_weights": gate_weights,
    }
    return report
