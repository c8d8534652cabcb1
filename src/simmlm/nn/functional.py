"""Masked softmax over modalities (SimMLM eq. 1-2)."""

from __future__ import annotations

import torch
from torch import Tensor

from simmlm.subsets import check_mask


def masked_softmax(gate_logits: Tensor, mask: Tensor, validate_args: bool = True) -> Tensor:
    """Softmax over the modality axis with missing modalities' gates set to ``-inf`` (SimMLM eq. 2).

    Args:
        gate_logits: ``[B, M]`` or ``[B, M, K]`` gate values ``g``.
        mask: boolean ``[B, M]`` availability.
        validate_args: check ``mask`` and the shapes (a device sync on GPU); ``False`` when the caller has.

    Returns:
        Weights of the same shape as ``gate_logits``; exactly 0 for missing modalities, summing to 1 over
        the available ones.

    Raises:
        ValueError: if a sample has no available modality (instead of silently producing NaN).
    """
    if validate_args:
        check_mask(mask)
        if gate_logits.shape[:2] != mask.shape:
            raise ValueError(f"gate logits {tuple(gate_logits.shape)} do not match mask {tuple(mask.shape)}")
    expanded = mask.reshape(*mask.shape, *([1] * (gate_logits.ndim - 2)))
    neg_inf = torch.tensor(float("-inf"), dtype=gate_logits.dtype, device=gate_logits.device)
    masked = torch.where(expanded, gate_logits, neg_inf)
    # over a leading contiguous axis: PyTorch's CPU softmax is ~10x slower over a short innermost one (M values)
    return torch.softmax(masked.movedim(1, 0).contiguous(), dim=0).movedim(0, 1).contiguous()
