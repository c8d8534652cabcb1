"""Predictive entropy (nats): of a class distribution, and per voxel of independent sigmoid outputs."""

from __future__ import annotations

from torch import Tensor


def categorical_entropy(probs: Tensor) -> Tensor:
    """``-sum_k p_k log p_k`` over the last axis of class probabilities ``[..., K]`` (0 log 0 = 0)."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def binary_entropy(probs: Tensor) -> Tensor:
    """Per-voxel entropy of independent sigmoid outputs, summed over regions: ``[C, *S]`` -> ``[*S]`` (float64)."""
    p = probs.double().clamp(1e-7, 1 - 1e-7)
    return (-(p * p.log() + (1 - p) * (1 - p).log())).sum(0)
