"""The common method interface: ``forward(inputs, mask) -> ModelOutput``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from simmlm.subsets import check_mask


@dataclass
class ModelOutput:
    """What every method returns.

    Attributes:
        logits: task logits ``[B, T, ...]``.
        gate_weights: fusion weights ``[B, M]`` or ``[B, M, K]`` (0 for missing modalities), or ``None`` for
            methods without explicit per-modality weights.
        aux_losses: extra training losses of the method (name -> scalar), added by the engine.
    """

    logits: Tensor
    gate_weights: Tensor | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


def validate_inputs(inputs: dict[str, Tensor], mask: Tensor, modalities: Sequence[str]) -> None:
    """Raise ``ValueError`` on unknown or absent modality keys, a bad mask, or mismatched batch sizes."""
    unknown = sorted(set(inputs) - set(modalities))
    absent = [m for m in modalities if m not in inputs]
    if unknown or absent:
        raise ValueError(
            f"inputs must have exactly the modalities {list(modalities)} (zeros for missing ones, marked in "
            f"the mask); unknown: {unknown}, absent: {absent}"
        )
    check_mask(mask)
    if mask.shape[1] != len(modalities):
        raise ValueError(f"mask has {mask.shape[1]} columns for {len(modalities)} modalities {list(modalities)}")
    for name in modalities:
        if len(inputs[name]) != len(mask):
            raise ValueError(f"modality {name!r} has batch size {len(inputs[name])}, mask has {len(mask)}")


def zero_fill(inputs: dict[str, Tensor], mask: Tensor, modalities: Sequence[str]) -> dict[str, Tensor]:
    """Replace every missing modality's content by zeros (``torch.where``, so even NaN content is dropped)."""
    filled = {}
    for m, name in enumerate(modalities):
        x = inputs[name]
        keep = mask[:, m].reshape(-1, *([1] * (x.ndim - 1)))
        filled[name] = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return filled
