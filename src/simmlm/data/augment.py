"""Batch-level, on-device augmentations of one modality (training only)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor


class AugmentSpec(BaseModel):
    """How one modality is augmented: ``affine`` (rotation, scale, shift of 2-D maps), ``noise``, ``mask``
    (SpecAugment-style bands of a ``[B, C, F, T]`` spectrogram-like map set to 0), ``corrupt`` (a share of the
    samples degraded while still marked present: :func:`random_corruption`) or ``none``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["none", "affine", "noise", "mask", "corrupt"] = "none"
    degrees: float = 10.0
    translate: float = 0.1
    scale: float = 0.1
    std: float = 0.1
    freq_width: int = Field(4, ge=0, description="mask: widest band of rows (coefficients) per mask")
    time_width: int = Field(0, ge=0, description="mask: widest band of columns (frames) per mask")
    masks: int = Field(1, ge=0, description="mask: bands of each kind per sample")
    prob: float = Field(0.3, ge=0, le=1, description="corrupt: the share of samples degraded")
    severity: float = Field(
        2.0, gt=0, description="corrupt: the strongest noise, in standard deviations of the modality in the batch"
    )
    zero_share: float = Field(0.25, ge=0, le=1, description="corrupt: of the degraded samples, the share zeroed")
    band_share: float = Field(
        0.0, ge=0, le=1, description="corrupt: of the degraded samples, the share with a band of rows zeroed"
    )
    occlude_share: float = Field(
        0.0, ge=0, le=1, description="corrupt: of the degraded samples, the share with a block zeroed"
    )

    @model_validator(mode="after")
    def _shares(self) -> AugmentSpec:
        if self.zero_share + self.band_share + self.occlude_share > 1:
            raise ValueError("zero_share + band_share + occlude_share must be at most 1 (the rest get noise)")
        return self


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


def random_bands(x: Tensor, dim: int, max_width: int, count: int) -> Tensor:
    """Set ``count`` random bands per sample along ``dim`` (each 0..``max_width`` wide) to 0 (SpecAugment)."""
    n, size = len(x), x.shape[dim]
    position = torch.arange(size, device=x.device)
    shape = [n] + [1] * (x.ndim - 1)
    shape[dim] = size
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (n, 1), device=x.device).clamp(max=size)
        start = (torch.rand(n, 1, device=x.device) * (size - width + 1)).floor()
        band = (position >= start) & (position < start + width)
        x = x.masked_fill(band.reshape(shape), 0.0)
    return x


def random_corruption(
    x: Tensor, prob: float, severity: float, zero_share: float, band_share: float = 0.0, occlude_share: float = 0.0
) -> Tensor:
    """Degrade a random ``prob`` of the samples as a failing sensor would, leaving them marked present: most get
    Gaussian noise of a standard deviation drawn uniformly in ``(0, severity]`` times the batch's standard deviation
    of this modality, ``zero_share`` of them are zeroed instead (the unannounced missing modality), ``band_share`` get
    a random band of up to half the rows (dimension -2) zeroed and ``occlude_share`` a random block of up to half the
    area (a 1-D sample: a run of up to half its features, for both). A gate trained on such samples (stage 2) sees
    what a degraded input does to its expert, which clean data never shows it."""
    n = len(x)
    shape = (n,) + (1,) * (x.ndim - 1)
    hit = torch.rand(shape, device=x.device) < prob
    kind = torch.rand(shape, device=x.device)  # which degradation: zeros, band, block, else noise
    zero = hit & (kind < zero_share)
    band = hit & (kind >= zero_share) & (kind < zero_share + band_share)
    block = hit & (kind >= zero_share + band_share) & (kind < zero_share + band_share + occlude_share)
    sigma = torch.rand(shape, device=x.device).clamp_min(1e-3) * severity * x.detach().std().clamp_min(1e-6)
    noise = hit & (kind >= zero_share + band_share + occlude_share)  # the degraded samples no other kind took
    noisy = torch.where(noise, x + sigma * torch.randn_like(x), x)
    if band_share > 0:
        noisy = noisy.masked_fill(band & _random_region(x, 0.5, full_width=True), 0.0)
    if occlude_share > 0:
        noisy = noisy.masked_fill(block & _random_region(x, 0.5, full_width=False), 0.0)
    return torch.where(zero, torch.zeros_like(x), noisy)


def _random_span(n: int, size: int, share: float, device: torch.device) -> Tensor:
    """Bool ``[n, size]``: per row a run of 1 to ``share * size`` True entries at a random position."""
    length = (torch.rand(n, 1, device=device) * share * size).ceil().clamp(1, size)
    start = (torch.rand(n, 1, device=device) * (size - length + 1)).floor()
    position = torch.arange(size, device=device)
    return (position >= start) & (position < start + length)


def _random_region(x: Tensor, area: float, full_width: bool) -> Tensor:
    """Bool mask broadcastable to ``x`` ``[B, ..., H, W]``: per sample a band of rows (``full_width``) or a block of
    up to ``area`` of the last two dimensions; for ``[B, D]`` samples a run of features."""
    n = len(x)
    if x.ndim == 2:
        return _random_span(n, x.shape[1], area, x.device)
    height, width = x.shape[-2:]
    rows = _random_span(n, height, area if full_width else math.sqrt(area), x.device)
    cols = (
        torch.ones(n, width, dtype=torch.bool, device=x.device)
        if full_width
        else _random_span(n, width, math.sqrt(area), x.device)
    )
    return (rows[:, :, None] & cols[:, None, :]).reshape(n, *([1] * (x.ndim - 3)), height, width)


def augment(x: Tensor, spec: AugmentSpec) -> Tensor:
    """Apply ``spec`` to a batch ``x`` of one modality."""
    if spec.kind == "affine":
        if x.ndim != 4:
            raise ValueError(f"affine augmentation needs [B, C, H, W] inputs, got {tuple(x.shape)}")
        return random_affine(x, spec.degrees, spec.translate, spec.scale)
    if spec.kind == "noise":
        return x + spec.std * torch.randn_like(x)
    if spec.kind == "mask":
        if x.ndim != 4:
            raise ValueError(f"mask augmentation needs [B, C, F, T] inputs, got {tuple(x.shape)}")
        return random_bands(random_bands(x, 2, spec.freq_width, spec.masks), 3, spec.time_width, spec.masks)
    if spec.kind == "corrupt":
        return random_corruption(x, spec.prob, spec.severity, spec.zero_share, spec.band_share, spec.occlude_share)
    return x


def augment_inputs(inputs: dict[str, Tensor], specs: dict[str, AugmentSpec]) -> dict[str, Tensor]:
    """Augment every modality that has a spec; the others pass through unchanged."""
    return {name: augment(x, specs[name]) if name in specs else x for name, x in inputs.items()}
