"""Modality subsets as bit masks.

A subset of ``M`` modalities is an integer in ``[1, 2**M)``: bit ``m`` is set when modality ``m`` (in the
dataset's modality order) is present. Masks on tensors are boolean ``[B, M]``; :func:`subset_mask` and
:func:`mask_to_bits` convert between the two views.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch
from torch import Tensor


def all_subsets(num_modalities: int) -> list[int]:
    """Every non-empty subset of ``num_modalities`` modalities, ordered by size then by bit pattern."""
    if num_modalities < 1:
        raise ValueError(f"num_modalities must be >= 1, got {num_modalities}")
    bits = range(1, 2**num_modalities)
    return sorted(bits, key=lambda b: (b.bit_count(), b))


def subset_name(bits: int, modalities: Sequence[str]) -> str:
    """Human-readable name, e.g. ``"image+audio"`` (modalities in dataset order)."""
    if not 0 < bits < 2 ** len(modalities):
        raise ValueError(f"subset {bits} is not a non-empty subset of {list(modalities)}")
    return "+".join(name for m, name in enumerate(modalities) if bits >> m & 1)


def subset_from_names(names: Sequence[str], modalities: Sequence[str]) -> int:
    """Bit mask of a list of modality names; raises on unknown names."""
    unknown = [n for n in names if n not in modalities]
    if not names:
        raise ValueError("a subset needs at least one modality name")
    if unknown:
        raise ValueError(f"unknown modality {unknown}; known modalities are {list(modalities)}")
    return sum(1 << modalities.index(n) for n in set(names))


def subset_mask(bits: int, num_modalities: int, device: torch.device | None = None) -> Tensor:
    """Boolean vector ``[M]`` of a subset."""
    return torch.tensor([bool(bits >> m & 1) for m in range(num_modalities)], device=device)


def mask_to_bits(mask: Tensor) -> Tensor:
    """Integer subset code per row of a boolean ``[B, M]`` mask."""
    weights = 2 ** torch.arange(mask.shape[-1], device=mask.device)
    return (mask.long() * weights).sum(-1)


def bits_to_mask(bits: Tensor, num_modalities: int) -> Tensor:
    """Boolean ``[B, M]`` mask from integer subset codes ``[B]``."""
    weights = 2 ** torch.arange(num_modalities, device=bits.device)
    return (bits.unsqueeze(-1) & weights) != 0


@cache
def nested_pairs(num_modalities: int) -> tuple[tuple[int, int], ...]:
    """All pairs ``(S-, S+)`` of non-empty subsets with ``S-`` a strict subset of ``S+``."""
    subsets = all_subsets(num_modalities)
    return tuple((minus, plus) for plus in subsets for minus in subsets if minus != plus and minus & plus == minus)


def sample_nested_pairs(
    available: Tensor, generator: torch.Generator | None = None, validate_args: bool = True
) -> tuple[Tensor, Tensor]:
    """Draw one pair ``S- ⊊ S+ ⊆ available`` per sample, uniformly over the valid pairs.

    Drawing uniformly over pairs makes every non-empty subset of the available modalities appear during
    training: singletons (and every strict subset) as ``S-``, every subset of size >= 2 as ``S+``.
    A sample with exactly one available modality has no valid pair; it gets ``S- = S+ = available``
    (its MoFe hinge is then exactly zero).

    One uniform number per sample picks its pair from a table of the valid pairs of every availability pattern
    (:func:`_pairs_by_availability`), so a draw costs O(B) whatever the number of modalities.

    Args:
        available: boolean ``[B, M]`` availability mask (every row non-empty).
        generator: optional random generator (on ``available``'s device) for reproducible draws.
        validate_args: check ``available`` (a device sync on GPU); ``False`` when the caller has.

    Returns:
        ``(minus_mask, plus_mask)``, two boolean ``[B, M]`` masks.
    """
    if validate_args:
        check_mask(available)
    num_modalities = available.shape[1]
    counts, table = _pairs_by_availability(num_modalities, available.device)
    avail_bits = mask_to_bits(available)
    n = counts[avail_bits]  # [B]: how many pairs each sample's modalities hold
    u = torch.rand(len(available), device=available.device, generator=generator)
    choice = table[avail_bits, torch.minimum((u * n).long(), (n - 1).clamp(min=0))]  # [B, 2]
    has_pair = n > 0
    minus_bits = torch.where(has_pair, choice[:, 0], avail_bits)
    plus_bits = torch.where(has_pair, choice[:, 1], avail_bits)
    return bits_to_mask(minus_bits, num_modalities), bits_to_mask(plus_bits, num_modalities)


@cache
def _pairs_by_availability(num_modalities: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """For every availability code ``a < 2**M``: the number of nested pairs with ``S+ ⊆ a`` (``[2**M]``) and those
    pairs as ``(S-, S+)`` codes, first in :func:`nested_pairs` order, then padding (``[2**M, P_max, 2]``); built
    once per device, so a training step copies nothing to it."""
    pairs = torch.tensor(nested_pairs(num_modalities), dtype=torch.long).reshape(-1, 2)
    codes = torch.arange(2**num_modalities)
    valid = (pairs[:, 1].unsqueeze(0) & ~codes.unsqueeze(1)) == 0  # [C, P]
    counts = valid.sum(1)
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)[:, : max(int(counts.max()), 1)]
    table = pairs[order] if len(pairs) else torch.zeros(len(codes), 1, 2, dtype=torch.long)
    return counts.to(device), table.to(device)


def check_mask(mask: Tensor) -> None:
    """Raise ``ValueError`` unless ``mask`` is a boolean ``[B, M]`` tensor with no all-missing row."""
    if mask.dtype != torch.bool or mask.ndim != 2:
        raise ValueError(f"mask must be a boolean tensor of shape [B, M], got {mask.dtype} {tuple(mask.shape)}")
    empty = (~mask.any(1)).nonzero().flatten()
    if len(empty):
        raise ValueError(
            f"{len(empty)} sample(s) have no available modality (rows {empty[:5].tolist()}"
            f"{'...' if len(empty) > 5 else ''}); at least one modality must be present"
        )
