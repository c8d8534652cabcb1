"""Classification metrics: accuracy and calibration errors (ECE, SCE), from probabilities or logits."""

from __future__ import annotations

import torch
from torch import Tensor


def accuracy(probs: Tensor, target: Tensor) -> Tensor:
    """Fraction of samples whose arg-max class equals the target (``probs``: ``[N, K]``, logits work too)."""
    return (probs.argmax(-1) == target).float().mean()


def calibration_bins(confidence: Tensor, correct: Tensor, n_bins: int) -> Tensor:
    """Per-bin sums ``[3, n_bins]``: counts, confidence sums and correct counts, over equal-width bins in [0, 1].

    Bin ``b`` holds confidences in ``(b/n, (b+1)/n]`` (the first bin also holds 0). Sums over several batches
    add up, so calibration errors can be accumulated over data too large to hold at once (voxels).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = torch.linspace(0, 1, n_bins + 1, device=confidence.device, dtype=confidence.dtype)
    bins = (torch.bucketize(confidence, edges[1:-1], right=False)).clamp(0, n_bins - 1)
    sums = torch.zeros(3, n_bins, device=confidence.device, dtype=confidence.dtype)
    sums[0].index_add_(0, bins, torch.ones_like(confidence))
    sums[1].index_add_(0, bins, confidence)
    sums[2].index_add_(0, bins, correct.to(confidence.dtype))
    return sums


def calibration_gap(sums: Tensor) -> Tensor:
    """``sum_b (n_b / N) * |acc_b - conf_b|`` from :func:`calibration_bins` sums."""
    return (sums[2] - sums[1]).abs().sum() / sums[0].sum()


def _binned_calibration_gap(confidence: Tensor, correct: Tensor, n_bins: int, total: int) -> Tensor:
    """``sum_b (n_b / total) * |acc_b - conf_b|`` over ``n_bins`` equal-width bins of ``confidence``."""
    sums = calibration_bins(confidence, correct, n_bins)
    return (sums[2] - sums[1]).abs().sum() / total


def expected_calibration_error(probs: Tensor, target: Tensor, n_bins: int = 20) -> Tensor:
    """ECE: 20 equal-width bins over max-probability confidence; ``sum_b (n_b/N) |acc_b - conf_b|``."""
    confidence, predicted = probs.max(-1)
    confidence = confidence.contiguous()
    return _binned_calibration_gap(confidence, predicted == target, n_bins, len(target))


def static_calibration_error(probs: Tensor, target: Tensor, n_bins: int = 20) -> Tensor:
    """SCE (Nixon et al. 2019): ``(1/K) sum_k sum_b (n_bk/N) |acc_bk - conf_bk|``, bins over ``p_k``.

    ``acc_bk`` is the fraction of samples in bin ``b`` of class ``k``'s probability whose label is ``k``.
    """
    num_classes = probs.shape[-1]
    gaps = [
        _binned_calibration_gap(probs[:, k].contiguous(), target == k, n_bins, len(target)) for k in range(num_classes)
    ]
    return torch.stack(gaps).mean()
