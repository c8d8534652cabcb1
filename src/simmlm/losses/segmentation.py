"""Segmentation task loss of SimMLM on BraTS (Sec. 4.2): Dice + binary cross-entropy, one value per sample."""

from __future__ import annotations

from functools import cache

import torch.nn.functional as F
from torch import Tensor, nn


@cache
def _dice() -> nn.Module:
    from monai.losses import DiceLoss  # lazy: MONAI is only needed for segmentation

    return DiceLoss(sigmoid=True, reduction="none")


def dice_bce_per_sample(logits: Tensor, target: Tensor) -> Tensor:
    """``l = Dice(sigmoid(o), y) + BCE(o, y)`` per sample: ``[B]``.

    Args:
        logits: ``[B, C, *spatial]`` region logits (independent sigmoids, e.g. C = 3 for WT/TC/ET).
        target: ``[B, C, *spatial]`` binary region maps.

    The soft Dice loss (MONAI ``DiceLoss``, smoothing 1e-5) is averaged over channels, the BCE over channels
    and voxels; both per sample, so the MoFe hinge (eq. 3) compares the two subsets of the same case.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    dice = _dice()(logits, target).flatten(1).mean(1)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    return dice + bce
