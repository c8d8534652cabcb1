"""Shapley contributions of each modality to each sample's prediction (DREAM Sec. 3.3, eqs. 1-4).

For a sample with modality set ``M`` and a modality ``i``, both scores are Shapley values (eq. 2)::

    phi_i = sum_{S ⊆ M \\ {i}} |S|! (|M| - |S| - 1)! / |M|! * m(S, i)

with the marginal contribution

- PSS, Prediction Shift Score (eq. 1): ``m(S, i) = 1[ŷ(S ∪ {i}) != ŷ(S)]`` (needs no label);
- PAS, Prediction Accuracy Score (eqs. 3-4): ``m(S, i) = V(S ∪ {i}) - V(S)``, ``V(S) = |S|`` if ``ŷ(S) = y``
  else ``0``.

Two choices DREAM leaves open, made here:

- **The empty set.** By default a model makes no prediction from no modality, so ``ŷ(∅)`` is a sentinel "no
  prediction" that differs from every class: ``m^PSS(∅, i) = 1`` (the first modality always shifts the
  prediction), so every available modality gets ``PSS >= 1/|A|``. With ``predict_empty=True``, ``ŷ(∅)`` is what
  the model predicts from nothing (``predict`` receives an all-missing mask once: e.g. the prediction on an all-zero
  input), so a modality whose presence never changes the prediction gets ``PSS = 0``, as DREAM's §3.4 needs to flag
  uninformative modalities without being told which are missing. Either way ``V(∅) = 0``, and PAS is efficient:
  ``sum_i PAS_i = V(M)``.
- **Missing modalities.** With an availability mask ``A`` the game is played on what the sample has: ``ŷ(S)``
  is the prediction from ``S ∩ A`` (an empty intersection counts as ``∅``) and ``V(S) = |S ∩ A|`` if
  ``ŷ(S ∩ A) = y`` else ``0``. Adding a missing modality changes neither, so it gets PSS 0 and PAS 0 (a null
  player), and the available modalities get exactly the Shapley values of the game on ``A`` alone.

Exact mode predicts every needed non-empty subset once (``2^M - 1`` calls of ``predict`` on the whole batch)
and is the default up to ``M = 6``. Monte-Carlo mode averages the marginal contributions along random
permutations of the modalities (unbiased; its PAS still sums to ``V(M)`` exactly) and predicts each subset it
meets at most once.

:func:`modality_shapley` computes the same Shapley values (eq. 2) for any real-valued game given per subset
(``m(S, i) = v(S ∪ {i}) - v(S)``), e.g. a per-sample loss or probability of the true class, with
:func:`subset_value_table` turning values measured on the listed subsets into such a game under missing modalities.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from simmlm.subsets import bits_to_mask, check_mask, mask_to_bits

MAX_EXACT_MODALITIES = 6
MAX_EXACT_VALUE_MODALITIES = 10  # exact mode of modality_shapley: 2^M values per sample, no model call per subset
_NO_PREDICTION = -1  # ŷ(∅); class ids are checked to be >= 0, so it differs from every class


@dataclass
class ShapleyScores:
    """Per-sample, per-modality Shapley scores (DREAM eq. 2).

    Attributes:
        pss: ``[N, M]`` Prediction Shift Score (eq. 2 with ``m^PSS`` of eq. 1).
        pas: ``[N, M]`` Prediction Accuracy Score (eq. 2 with ``m^PAS`` of eqs. 3-4); zeros without targets.
    """

    pss: Tensor
    pas: Tensor


class _Coalitions(NamedTuple):
    """Flat list of weighted terms ``weight * m(S, i)``: ``modality`` is ``i``, ``without`` is the code of ``S``."""

    modality: Tensor  # [T] long
    without: Tensor  # [T] long, bit ``modality`` never set
    weight: Tensor  # [T] float64


def shapley_contributions(
    predict: Callable[[Tensor], Tensor],
    num_samples: int,
    num_modalities: int,
    targets: Tensor | None = None,
    available: Tensor | None = None,
    mc_permutations: int | None = None,
    generator: torch.Generator | None = None,
    validate_args: bool = True,
    predict_empty: bool = False,
    pas_counts: Tensor | None = None,
) -> ShapleyScores:
    """PSS and PAS of every modality for every sample (DREAM eqs. 1-4, see the module docstring).

    Args:
        predict: maps a boolean ``[N, M]`` subset mask to predicted class ids ``[N]`` (integers >= 0), each
            sample predicted from its own row of modalities. It never receives an all-missing row.
        num_samples: ``N``.
        num_modalities: ``M``.
        targets: ``[N]`` labels, needed for PAS (zeros without them).
        available: boolean ``[N, M]`` availability (no all-missing row); subsets are intersected with it.
        mc_permutations: ``None`` for exact values (``M <= 6``); a number of random permutations for a
            Monte-Carlo estimate.
        generator: random generator for the Monte-Carlo permutations.
        validate_args: check that ``available`` has no all-missing row (a device sync on GPU); ``False`` when
            the caller has.
        predict_empty: ``ŷ(∅)`` from ``predict`` on an all-missing mask instead of the "no prediction" sentinel
            (see the module docstring); use without ``available``.
        pas_counts: boolean ``[N, M]``: ``V(S)`` counts ``|S ∩ pas_counts|`` instead of ``|S|`` (or ``|S ∩ A|``),
            so a modality outside it (e.g. absent, but not marked so for the game) is a null player of PAS.

    Returns:
        :class:`ShapleyScores` with ``[N, M]`` tensors (default float dtype) on ``available``'s device, else
        ``targets``', else the CPU; the masks given to ``predict`` live there too.

    Raises:
        ValueError: on inconsistent shapes, ``M > 6`` without ``mc_permutations``, or a malformed prediction.
    """
    if num_modalities < 1 or num_samples < 1:
        raise ValueError(f"num_samples and num_modalities must be >= 1, got {num_samples} and {num_modalities}")
    if targets is not None and tuple(targets.shape) != (num_samples,):
        raise ValueError(f"targets must have shape [{num_samples}], got {tuple(targets.shape)}")
    if available is not None:
        if tuple(available.shape) != (num_samples, num_modalities):
            raise ValueError(f"available must be [{num_samples}, {num_modalities}], got {tuple(available.shape)}")
        if validate_args:
            check_mask(available)
    cost = f"{2**num_modalities - 1} predictions per batch"
    coalitions = _coalitions(num_modalities, mc_permutations, generator, MAX_EXACT_MODALITIES, cost)
    if pas_counts is not None and (
        tuple(pas_counts.shape) != (num_samples, num_modalities) or pas_counts.dtype != torch.bool
    ):
        raise ValueError(f"pas_counts must be bool [{num_samples}, {num_modalities}], got {tuple(pas_counts.shape)}")
    if predict_empty and available is not None:
        raise ValueError("predict_empty plays the game without an availability mask: pass available=None")
    sampled = mc_permutations is not None
    return _shapley_from_coalitions(
        predict, coalitions, num_samples, num_modalities, targets, available, predict_empty, sampled, pas_counts
    )


def _coalitions(
    num_modalities: int, mc_permutations: int | None, generator: torch.Generator | None, limit: int, cost: str
) -> _Coalitions:
    """Exact terms (``mc_permutations`` None; at most ``limit`` modalities, whose ``cost`` the error names) or
    Monte-Carlo terms along ``mc_permutations`` random permutations."""
    if mc_permutations is None:
        if num_modalities > limit:
            raise ValueError(
                f"exact Shapley values over {num_modalities} modalities need {cost}; exact mode is limited to "
                f"{limit} modalities. Pass mc_permutations (e.g. 1000) for a Monte-Carlo estimate."
            )
        return _exact_coalitions(num_modalities)
    if mc_permutations < 1:
        raise ValueError(f"mc_permutations must be >= 1, got {mc_permutations}")
    device = generator.device if generator is not None else None
    perms = torch.rand(mc_permutations, num_modalities, generator=generator, device=device).argsort(1)
    return _permutation_coalitions(perms)


def _exact_coalitions(num_modalities: int) -> _Coalitions:
    """Every ``S ⊆ M \\ {i}`` with weight ``|S|! (M - |S| - 1)! / M!`` (eq. 2)."""
    codes = torch.arange(2**num_modalities)
    fact = math.factorial
    by_size = torch.tensor(
        [fact(s) * fact(num_modalities - s - 1) / fact(num_modalities) for s in range(num_modalities)],
        dtype=torch.float64,
    )
    without = torch.stack([codes[((codes >> i) & 1) == 0] for i in range(num_modalities)])  # [M, 2^(M-1)]
    modality = torch.arange(num_modalities).unsqueeze(1).expand_as(without)
    weight = by_size[bits_to_mask(without, num_modalities).sum(-1)]
    return _Coalitions(modality.flatten(), without.flatten(), weight.flatten())


def _permutation_coalitions(perms: Tensor) -> _Coalitions:
    """Monte-Carlo terms: along each permutation ``[P, M]``, modality ``i`` meets the prefix before it.

    Every permutation has weight ``1 / P``; repeated ``(i, S)`` terms are merged (weights summed).
    """
    num_perms, num_modalities = perms.shape
    bit = 1 << perms.long().cpu()
    prefix = bit.cumsum(1) - bit  # code of the modalities before position k (disjoint bits: sum == or)
    keys = perms.long().cpu().flatten() * 2**num_modalities + prefix.flatten()
    unique_keys, counts = torch.unique(keys, return_counts=True)
    return _Coalitions(unique_keys // 2**num_modalities, unique_keys % 2**num_modalities, counts.double() / num_perms)


def _shapley_from_coalitions(
    predict: Callable[[Tensor], Tensor],
    coalitions: _Coalitions,
    num_samples: int,
    num_modalities: int,
    targets: Tensor | None,
    available: Tensor | None,
    predict_empty: bool = False,
    sampled: bool = False,
    pas_counts: Tensor | None = None,
) -> ShapleyScores:
    """Sum ``weight * m(S, i)`` per sample and modality for PSS (eq. 1) and PAS (eqs. 3-4).

    ``sampled`` (Monte-Carlo coalitions) with the "no prediction" sentinel for ``ŷ(∅)``: the terms whose
    ``S ∩ A`` is empty are 1 for every available modality (it comes first among the sample's modalities, with
    probability ``1/|A|``), so they are added exactly instead of sampled. The estimate stays unbiased, and a
    modality gets ``PSS >= 1/|A| > 0`` as in exact mode: a few permutations can no longer give an available
    modality ``PSS = 0`` (what triggers DREAM's enhancement) merely because it was never drawn first."""
    device = torch.device("cpu")
    if available is not None:
        device = available.device
    elif targets is not None:
        device = targets.device
    modality, without, weight = (t.to(device) for t in coalitions)
    with_ = without | (1 << modality)
    needed, inverse = torch.unique(torch.cat([without, with_]), return_inverse=True)
    idx_without, idx_with = inverse[: len(modality)], inverse[len(modality) :]
    table, effective = _prediction_table(predict, needed, num_samples, num_modalities, available, predict_empty)

    shift = (table[:, idx_with] != table[:, idx_without]).double()  # [N, T]
    pss = torch.zeros(num_samples, num_modalities, dtype=torch.float64, device=device)
    if sampled and not predict_empty:
        shift = shift.masked_fill(effective[:, idx_without] == 0, 0.0)  # the empty coalition's terms, added exactly:
        have = torch.ones_like(pss) if available is None else available.to(device, torch.float64)
        pss += have / have.sum(1, keepdim=True)
    pss.index_add_(1, modality, shift * weight)
    pas = torch.zeros_like(pss)
    if targets is not None:
        counted = bits_to_mask(effective, num_modalities)
        if pas_counts is not None:
            counted = counted & pas_counts.to(device).unsqueeze(1)
        size = counted.sum(-1)  # |S ∩ A|, or |S ∩ pas_counts|
        value = (table == targets.to(device).unsqueeze(1)).double() * size  # V(S), eq. 3; V(∅) = 0
        pas.index_add_(1, modality, (value[:, idx_with] - value[:, idx_without]) * weight)
    dtype = torch.get_default_dtype()
    return ShapleyScores(pss=pss.to(dtype), pas=pas.to(dtype))


def _prediction_table(
    predict: Callable[[Tensor], Tensor],
    needed: Tensor,
    num_samples: int,
    num_modalities: int,
    available: Tensor | None,
    predict_empty: bool = False,
) -> tuple[Tensor, Tensor]:
    """``ŷ_n(S ∩ A_n)`` for every sample ``n`` and subset code ``S`` in ``needed`` ``[J]``.

    ``predict`` runs once per distinct non-empty ``S ∩ A_n``, whose predictions are then shared by every
    ``S`` with the same intersection (so a missing modality never changes a prediction).

    Returns:
        ``(table, effective)``: predictions ``[N, J]`` (``_NO_PREDICTION`` where ``S ∩ A_n = ∅``, unless
        ``predict_empty``) and the codes of ``S ∩ A_n`` ``[N, J]``.
    """
    if available is None:
        effective = needed.unsqueeze(0).expand(num_samples, -1)
    else:
        effective = needed.unsqueeze(0) & mask_to_bits(available).unsqueeze(1)
    calls, where = torch.unique(effective, return_inverse=True)
    raw = torch.full((num_samples, len(calls)), _NO_PREDICTION, dtype=torch.long, device=needed.device)
    for column, code in enumerate(calls.tolist()):
        if code == 0 and not predict_empty:
            continue
        mask = bits_to_mask(torch.full((num_samples,), code, device=needed.device), num_modalities)
        if available is not None:
            mask = mask & available
            empty = ~mask.any(1)
            mask[empty] = available[empty]  # placeholder; these rows of this call are never read
        raw[:, column] = _checked_prediction(predict(mask), num_samples).to(raw.device)
    return raw.gather(1, where), effective


def _checked_prediction(prediction: Tensor, num_samples: int) -> Tensor:
    """Raise ``ValueError`` unless ``prediction`` holds ``num_samples`` non-negative integer class ids."""
    if not isinstance(prediction, Tensor) or tuple(prediction.shape) != (num_samples,):
        shape = tuple(prediction.shape) if isinstance(prediction, Tensor) else type(prediction).__name__
        raise ValueError(f"predict must return class ids of shape [{num_samples}], got {shape}")
    if prediction.dtype.is_floating_point or prediction.dtype.is_complex or prediction.dtype == torch.bool:
        raise ValueError(f"predict must return integer class ids (e.g. logits.argmax(-1)), got {prediction.dtype}")
    if (prediction < 0).any():
        raise ValueError("predict returned a negative class id; class ids must be >= 0")
    return prediction.long()


def subset_value_table(
    values: Tensor, subsets: Sequence[int], available: Tensor, num_modalities: int, empty_value: float
) -> Tensor:
    """The game ``v_n(S) = value_n(S ∩ A_n)`` of every sample on every subset code ``S`` from ``0`` to ``2^M - 1``.

    A missing modality never changes ``v_n`` (a null player), so the available ones share ``v_n`` as in the game
    on ``A_n`` alone.

    Args:
        values: ``[S, N]`` value of each listed subset for each sample; rows of subsets a sample does not fully
            have may be NaN (they are never read).
        subsets: the listed subsets' bit codes (bit ``m``: modality ``m``), in row order; they must include every
            non-empty subset of each sample's available set.
        available: ``[N]`` long bit codes of each sample's available modalities (non-zero).
        num_modalities: ``M``.
        empty_value: ``v_n(∅)``, also given to every ``S`` with ``S ∩ A_n = ∅``.

    Returns:
        ``[N, 2^M]`` float64 table on ``values``' device, column ``S`` holding ``v_n(S ∩ A_n)``.

    Raises:
        ValueError: on inconsistent shapes, invalid codes, or a needed subset missing from ``subsets``.
    """
    num_codes = 2**num_modalities
    codes = torch.as_tensor(list(subsets), dtype=torch.long)
    if values.ndim != 2 or values.shape[0] != len(codes):
        raise ValueError(f"values must be [{len(codes)}, N] (one row per listed subset), got {tuple(values.shape)}")
    if tuple(available.shape) != (values.shape[1],):
        raise ValueError(f"available must be [{values.shape[1]}] bit codes, got {tuple(available.shape)}")
    if len(codes) and (codes.min() < 1 or codes.max() >= num_codes or len(codes.unique()) != len(codes)):
        raise ValueError(f"subsets must be distinct codes in [1, {num_codes}), got {codes.tolist()}")
    available = available.long().cpu()
    if (available < 1).any() or (available >= num_codes).any():
        raise ValueError(f"available must hold non-empty subset codes in [1, {num_codes})")
    row_of = torch.full((num_codes,), -1, dtype=torch.long)
    row_of[codes] = torch.arange(len(codes))
    effective = torch.arange(num_codes).unsqueeze(0) & available.unsqueeze(1)  # [N, 2^M] codes of S ∩ A_n
    rows = row_of[effective]
    if ((rows < 0) & (effective > 0)).any():
        raise ValueError("subsets must include every non-empty subset of each sample's available modalities")
    device = values.device
    samples = torch.arange(len(available), device=device).unsqueeze(1)
    table = values.detach().double()[rows.clamp_min(0).to(device), samples]
    return table.masked_fill((effective == 0).to(device), empty_value)


def modality_shapley(
    value: Callable[[Tensor], Tensor],
    num_samples: int,
    num_modalities: int,
    mc_permutations: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Shapley value of every modality in every sample's game ``v_n`` (eq. 2 with ``m(S, i) = v(S ∪ {i}) - v(S)``).

    ``phi_i = sum_{S ⊆ M \\ {i}} |S|! (M - |S| - 1)! / M! * (v(S ∪ {i}) - v(S))``, efficient:
    ``sum_i phi_i = v(M) - v(∅)``.

    Args:
        value: maps a 1-D long tensor of subset codes ``[J]`` (0 is ``∅``) to values ``[N, J]``; called once, with
            every code needed (e.g. ``lambda codes: table[:, codes]`` on a :func:`subset_value_table`).
        num_samples: ``N``.
        num_modalities: ``M``.
        mc_permutations: ``None`` for exact values (``M <= MAX_EXACT_VALUE_MODALITIES``); a number of random
            permutations for a Monte-Carlo estimate (unbiased, and still exactly efficient: the contributions
            along each permutation sum to ``v(M) - v(∅)``).
        generator: random generator for the Monte-Carlo permutations.

    Returns:
        ``[N, M]`` float64 on the device of ``value``'s output.

    Raises:
        ValueError: on bad sizes, ``M > MAX_EXACT_VALUE_MODALITIES`` without ``mc_permutations``, or a value
            of the wrong shape.
    """
    if num_modalities < 1 or num_samples < 1:
        raise ValueError(f"num_samples and num_modalities must be >= 1, got {num_samples} and {num_modalities}")
    cost = f"{2**num_modalities} values per sample"
    modality, without, weight = _coalitions(
        num_modalities, mc_permutations, generator, MAX_EXACT_VALUE_MODALITIES, cost
    )
    needed, inverse = torch.unique(torch.cat([without, without | (1 << modality)]), return_inverse=True)
    table = value(needed)
    if not isinstance(table, Tensor) or tuple(table.shape) != (num_samples, len(needed)):
        shape = tuple(table.shape) if isinstance(table, Tensor) else type(table).__name__
        raise ValueError(f"value must return [{num_samples}, {len(needed)}] values, got {shape}")
    table = table.double()
    idx_without, idx_with = (i.to(table.device) for i in inverse.split(len(modality)))
    phi = torch.zeros(num_samples, num_modalities, dtype=torch.float64, device=table.device)
    phi.index_add_(1, modality.to(table.device), (table[:, idx_with] - table[:, idx_without]) * weight.to(table.device))
    return phi
