"""Robustness scenarios: new datasets derived from a :class:`TensorMultimodalDataset` by dropping or corrupting one
modality.

Three scenarios, all deterministic from a seed and all returning a NEW dataset (the input's tensors are never
modified):

* **Training-time missingness** (SMIL's setting), :func:`drop_modality`: a share of the training samples that have
  a modality lose it. The loss is announced: the mask says missing and the input is zeros, as for any missing
  modality. A sample whose only modality it is keeps it, so no row becomes all-missing.
* **Test-time corruption of a present modality**, :func:`corrupt` on a test set: the modality stays marked present
  while its content is degraded (``noise``, ``occlude``, ``band``). ``zeros`` is the *unannounced* missing
  modality: the content is gone (zeros) but the mask still says present, so only a model that looks at the content
  can tell. Pass ``scale=corruption_scale(train, modality)`` to measure the noise in units of the training data.
* **Training-time corruption, marked present**, :func:`corrupt` on a training set: noisy or damaged training data
  that the model is not told about (the mask is unchanged).

Counts are ``round(fraction * candidates)`` and block sizes ``round(severity * size)``, rounded half up (as
:mod:`simmlm.data.frames` does). ``occlude`` and ``band`` act on the last two dimensions of a sample, i.e. the
``[H, W]`` of an image ``[C, H, W]`` or ``[H, W]``, the ``[T, D]`` of a feature sequence, and the
coefficients x frames of an avMNIST MFCC map ``[1, 20, 20]`` (there a ``band`` of rows is a frequency band; in
avMNIST's ``sequences`` layout the audio is ``[frames, coefficients]`` and a band of rows is a span of frames).
A 1-D feature vector ``[D]`` loses a contiguous run of features under both.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from simmlm.data.base import Splits, TensorMultimodalDataset
from simmlm.data.specs import DataScenario

CORRUPTIONS = ("noise", "occlude", "band", "zeros")


def apply_scenario(splits: Splits, spec: DataScenario | None) -> Splits:
    """``splits`` with the scenario applied to the splits it names (noise in units of the clean training data's
    std); the description says what was done."""
    if spec is None:
        return splits
    if spec.modality not in splits.modalities:
        raise ValueError(f"data.scenario.modality: {spec.modality!r} is not one of {', '.join(splits.modalities)}")
    scale = corruption_scale(splits.train, spec.modality) if spec.kind == "noise" else None
    changed: dict[str, Any] = {}
    for split in spec.splits:
        dataset = getattr(splits, split)
        if spec.kind == "missing":
            changed[split] = drop_modality(dataset, spec.modality, spec.fraction, spec.seed)
        else:
            changed[split] = corrupt(dataset, spec.modality, spec.kind, spec.severity, spec.fraction, spec.seed, scale)
    what = "lack" if spec.kind == "missing" else f"carry {spec.kind} (severity {spec.severity:g}, marked present) on"
    note = f" Scenario: {spec.fraction:.0%} of the {'/'.join(spec.splits)} samples having {spec.modality} {what} it"
    note += f" (seed {spec.seed})."
    return dataclasses.replace(splits, **changed, description=splits.description + note)


def drop_modality(
    dataset: TensorMultimodalDataset, modality: str, fraction: float, seed: int = 0
) -> TensorMultimodalDataset:
    """Training-time missingness: a share of the samples that have ``modality`` lose it.

    Exactly ``round(fraction * eligible)`` (half up) samples, a seeded random choice among the eligible ones (those
    that have ``modality`` and at least one other modality), get mask False and zero input for ``modality``. A
    sample whose only available modality is ``modality`` keeps it, so no row becomes all-missing.

    Args:
        dataset: the dataset to derive from (not modified).
        modality: name of the modality to drop.
        fraction: share of the eligible samples that lose the modality, in ``[0, 1]``.
        seed: seed of the choice of samples.

    Returns:
        A new dataset with the updated mask and zero-filled inputs.

    Raises:
        ValueError: for an unknown modality or a fraction outside ``[0, 1]``.
    """
    column = _modality_index(dataset, modality)
    _check_fraction(fraction)
    mask = dataset.mask
    eligible = mask[:, column] & (mask.sum(1) > 1)
    chosen = _choose(eligible, fraction, torch.Generator().manual_seed(seed))
    new_mask = mask.clone()
    new_mask[chosen.to(mask.device), column] = False
    # The constructor zero-fills the inputs of the now-missing samples.
    return TensorMultimodalDataset(dict(dataset.inputs), new_mask, dataset.targets, dataset.ids)


def corrupt(
    dataset: TensorMultimodalDataset,
    modality: str,
    kind: str,
    severity: float,
    fraction: float = 1.0,
    seed: int = 0,
    scale: float | None = None,
) -> TensorMultimodalDataset:
    """Corrupt the content of a present modality while the mask still says present.

    Exactly ``round(fraction * present)`` (half up) of the samples that have ``modality`` are corrupted, a seeded
    random choice; absent samples stay zeros, the other modalities are untouched and the mask keeps its values.

    Kinds:
        ``noise``: ``x + severity * scale * N(0, 1)``, ``scale`` being the argument or, if None,
        :func:`corruption_scale` of this dataset.
        ``occlude``: a random axis-aligned block over the last two dimensions, of sides ``round(sqrt(severity) * H)``
        and ``round(sqrt(severity) * W)`` (so about ``severity`` of the area), is set to 0; its position is drawn
        per sample. A 1-D feature vector loses a random contiguous run of ``round(severity * D)`` features.
        ``band``: a random contiguous band of ``round(severity * H)`` rows (dimension -2), all columns, is set to 0;
        for a 1-D vector the same as ``occlude``.
        ``zeros``: the content is replaced by zeros (``severity`` is ignored): the unannounced missing modality.

    Args:
        dataset: the dataset to derive from (not modified).
        modality: name of the modality to corrupt.
        kind: one of :data:`CORRUPTIONS`.
        severity: strength of the corruption: ``>= 0``, and ``<= 1`` for ``occlude`` and ``band``.
        fraction: share of the samples that have the modality to corrupt, in ``[0, 1]``.
        seed: seed of the choice of samples and of the noise / block positions.
        scale: the noise's unit (``noise`` only); None uses :func:`corruption_scale` of ``dataset``.

    Returns:
        A new dataset with the same mask and targets.

    Raises:
        ValueError: for an unknown modality or kind, a severity, fraction or scale out of range, ``noise`` on a
            non-floating modality, or ``occlude`` / ``band`` on a modality whose samples are scalars.
    """
    column = _modality_index(dataset, modality)
    _check_corruption(kind, severity, fraction, scale)
    values = dataset.inputs[modality]
    if kind == "noise" and not values.is_floating_point():
        raise ValueError(f"noise needs a floating-point modality, {modality!r} is {values.dtype}")
    if kind in ("occlude", "band") and values.ndim < 2:
        raise ValueError(f"{kind} needs samples of at least one dimension, {modality!r} has scalar samples")
    generator = torch.Generator().manual_seed(seed)
    chosen = _choose(dataset.mask[:, column], fraction, generator).to(values.device)
    new_values = values.clone()
    rows = values[chosen]
    if kind == "zeros":
        new_values[chosen] = torch.zeros_like(rows)
    elif kind == "noise":
        unit = corruption_scale(dataset, modality) if scale is None else scale
        noise = torch.randn(rows.shape, generator=generator).to(device=rows.device, dtype=rows.dtype)
        new_values[chosen] = rows + severity * unit * noise
    else:
        region = _region(tuple(rows.shape), kind, severity, generator).to(rows.device)
        new_values[chosen] = rows.masked_fill(region, 0)
    inputs = {name: new_values if name == modality else tensor for name, tensor in dataset.inputs.items()}
    return TensorMultimodalDataset(inputs, dataset.mask.clone(), dataset.targets, dataset.ids)


def corruption_scale(dataset: TensorMultimodalDataset, modality: str) -> float:
    """The unit of ``noise``: the standard deviation of ``modality`` over all entries of the samples that have it.

    Compute it on the training data and pass it to :func:`corrupt` as ``scale`` to corrupt a test set in training
    units. Absent samples (zero-filled) are left out.

    Args:
        dataset: the dataset to measure.
        modality: name of the modality.

    Returns:
        The population standard deviation (``correction=0``) as a float.

    Raises:
        ValueError: for an unknown modality or one that no sample has.
    """
    column = _modality_index(dataset, modality)
    present = dataset.inputs[modality][dataset.mask[:, column]]
    if present.numel() == 0:
        raise ValueError(f"no sample has modality {modality!r}: its scale is undefined")
    return float(present.double().std(correction=0))


def _modality_index(dataset: TensorMultimodalDataset, modality: str) -> int:
    """The column of ``modality`` in the mask; ValueError naming the choices if it is unknown."""
    if modality not in dataset.inputs:
        raise ValueError(f"unknown modality {modality!r}, expected one of {dataset.modalities}")
    return dataset.modalities.index(modality)


def _check_fraction(fraction: float) -> None:
    """ValueError unless ``fraction`` is in ``[0, 1]`` (NaN included)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")


def _check_corruption(kind: str, severity: float, fraction: float, scale: float | None) -> None:
    """ValueError unless ``kind``, ``severity``, ``fraction`` and ``scale`` are valid arguments of :func:`corrupt`."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption kind {kind!r}, expected one of {list(CORRUPTIONS)}")
    if kind != "zeros" and not severity >= 0.0:
        raise ValueError(f"severity must be >= 0, got {severity}")
    if kind in ("occlude", "band") and severity > 1.0:
        raise ValueError(f"severity of {kind} is a share of the sample, must be in [0, 1], got {severity}")
    _check_fraction(fraction)
    if scale is not None and not (math.isfinite(scale) and scale >= 0.0):
        raise ValueError(f"scale must be a finite number >= 0, got {scale}")


def _round_half_up(value: float) -> int:
    """``value`` rounded to the nearest integer, halves up (``round`` would round halves to even)."""
    return math.floor(value + 0.5)


def _choose(candidates: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Indices of a seeded random choice of exactly ``round(fraction * count)`` of the True rows of ``candidates``."""
    pool = candidates.nonzero().flatten().cpu()
    count = _round_half_up(fraction * len(pool))
    return pool[torch.randperm(len(pool), generator=generator)[:count]]


def _span(count: int, size: int, length: int, generator: torch.Generator) -> Tensor:
    """Bool ``[count, size]``: per row a contiguous run of ``length`` True entries at a random position."""
    start = torch.randint(0, size - length + 1, (count, 1), generator=generator)
    position = torch.arange(size)
    return (position >= start) & (position < start + length)


def _region(shape: tuple[int, ...], kind: str, severity: float, generator: torch.Generator) -> Tensor:
    """Bool mask broadcastable to ``shape`` (``[count, ...]``): the entries that ``occlude`` / ``band`` zero."""
    count = shape[0]
    if len(shape) == 2:  # 1-D feature vectors: a contiguous run of features for both kinds
        return _span(count, shape[1], _round_half_up(severity * shape[1]), generator)
    height, width = shape[-2:]
    if kind == "band":
        rows = _span(count, height, _round_half_up(severity * height), generator)
        cols = torch.ones(count, width, dtype=torch.bool)
    else:
        side = math.sqrt(severity)
        rows = _span(count, height, _round_half_up(side * height), generator)
        cols = _span(count, width, _round_half_up(side * width), generator)
    block = rows[:, :, None] & cols[:, None, :]
    return block.reshape(count, *([1] * (len(shape) - 3)), height, width)
