"""Batch-level, on-device augmentations of one modality (training only)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import Tensor


class AugmentSpec(BaseModel):
    """How one modality is augmented: ``affine`` (rotation, scale, shift of 2-D maps), ``noise`` or ``none``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["none", "affine", "noise"] = "none"
    degrees: float = 10.0
    translate: float = 0.1
    scale: float = 0.1
    std: float = 0.1


def random_affine(x: Tensor, degrees: float, translate: float, scale: float) -> Tensor:
    """Random rotation (±degrees), isotropic scale (1 ± scale) and shift (± translate of the size) per sample."""
    n = len(x)
    angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(degrees)
    factor = 1 + (torch.rand(n, device=x.device) * 2 - 1) * scale
    shift = (torch.rand(n, 2, device=x.device) * 2 - 1) * 2 * translate
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    background = x.amin(dim=(-2, -1), keepdim=True)  # fill with the sample's own background level
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


def augment(x: Tensor, spec: AugmentSpec) -> Tensor:
    """Apply ``spec`` to a batch ``x`` of one modality."""
    if spec.kind == "affine":
        if x.ndim != 4:
            raise ValueError(f"affine augmentation needs [B, C, H, W] inputs, got {tuple(x.shape)}")
        return random_affine(x, spec.degrees, spec.translate, spec.scale)
    if spec.kind == "noise":
        return x + spec.std * torch.randn_like(x)
    return x


def augment_inputs(inputs: dict[str, Tensor], specs: dict[str, AugmentSpec]) -> dict[str, Tensor]:
    """Augment every modality that has a spec; the others pass through unchanged."""
    return {name: augment(x, specs[name]) if name in specs else x for name, x in inputs.items()}
