"""Shrinking the gate toward the plain mean of the available experts (an option of stage 2)."""

from __future__ import annotations

import torch
from torch import Tensor


def gate_kl_to_uniform(weights: Tensor, mask: Tensor) -> Tensor:
    """Per-sample ``KL(w || u)`` with ``u`` uniform over the sample's available modalities.

    ``KL = sum_m w_m log w_m + log |S|`` (missing modalities have ``w_m = 0`` and contribute nothing). With
    ``[B, M, K]`` weights (one gate per output channel) the K divergences are averaged. Zero exactly when the gate
    weighs the available experts equally, i.e. when DMoME reduces to late fusion.

    Args:
        weights: ``[B, M]`` or ``[B, M, K]`` gate weights (0 for missing modalities, summing to 1 over the rest).
        mask: boolean ``[B, M]`` availability.

    Returns:
        ``[B]`` non-negative divergences (nats).
    """
    present = mask.sum(1).to(weights.dtype)  # [B]
    keep = mask.reshape(*mask.shape, *([1] * (weights.ndim - 2)))
    # w log w over the present modalities only: a missing one has w = 0 exactly, where log w has no gradient
    terms = torch.where(keep, weights * weights.clamp_min(1e-12).log(), weights.new_zeros(()))
    neg_entropy = terms.sum(1)  # [B] or [B, K]
    if neg_entropy.ndim > 1:
        neg_entropy = neg_entropy.mean(-1)
    return neg_entropy + present.log()
