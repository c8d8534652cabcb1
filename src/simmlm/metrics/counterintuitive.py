"""Counterintuitive rate (SimMLM Sec. 5): how often fewer modalities score better than more."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def counterintuitive_rate(scores: Tensor, subsets: Sequence[int], available: Tensor | None = None) -> Tensor:
    """``CR = (1/N) sum_i (1/|S_i|) sum_{(S-, S+) in S_i} 1[P_i(S-) > P_i(S+)]``.

    Args:
        scores: ``[N, S]`` per-sample score ``P`` under each subset (correctness 0/1 for classification,
            Dice for segmentation); column ``j`` belongs to ``subsets[j]``.
        subsets: the subsets' bit masks, in column order.
        available: optional ``[N]`` bit mask of each sample's available modalities; pairs are then limited
            to subsets of it (``S_i``). Default: every listed subset is available for every sample.

    Samples with no nested pair (e.g. a single available modality) are left out of the average.
    """
    if scores.ndim != 2 or scores.shape[1] != len(subsets):
        raise ValueError(f"scores must be [N, {len(subsets)}], got {tuple(scores.shape)}")
    pairs = [
        (i, j)
        for i, minus in enumerate(subsets)
        for j, plus in enumerate(subsets)
        if minus != plus and minus & plus == minus
    ]
    if not pairs:
        raise ValueError("no nested pair (S-, S+) among the given subsets")
    minus_idx = torch.tensor([p[0] for p in pairs], device=scores.device)
    plus_idx = torch.tensor([p[1] for p in pairs], device=scores.device)
    worse = (scores[:, minus_idx] > scores[:, plus_idx]).float()  # [N, P]
    if available is None:
        valid = torch.ones_like(worse, dtype=torch.bool)
    else:
        codes = torch.tensor(list(subsets), device=scores.device)
        plus_codes = codes[plus_idx]
        valid = (plus_codes.unsqueeze(0) & ~available.unsqueeze(1)) == 0
    n_pairs = valid.sum(1)
    has_pairs = n_pairs > 0
    if not has_pairs.any():
        raise ValueError("no sample has a nested pair of available subsets")
    per_sample = (worse * valid).sum(1)[has_pairs] / n_pairs[has_pairs]
    return per_sample.mean()
