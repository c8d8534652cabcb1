"""The common method interface: ``forward(inputs, mask) -> ModelOutput``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn

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


def validate_subsets(
    inputs: dict[str, Tensor], available: Tensor, subset_masks: Sequence[Tensor], modalities: Sequence[str]
) -> None:
    """:func:`validate_inputs` for ``available`` and every subset mask of ``forward_subsets``, in one place.

    A subset is used within ``available`` (intersected with it), so each sample must keep at least one modality
    there: a subset disjoint from a sample's modalities has no prediction, and is an error for every method."""
    validate_inputs(inputs, available, modalities)
    if not subset_masks:
        return
    stacked = torch.stack(list(subset_masks)) if len({m.shape for m in subset_masks}) == 1 else None
    if stacked is None or stacked.shape[1:] != available.shape or stacked.dtype != torch.bool:
        raise ValueError(
            f"every subset mask must be a boolean tensor of the availability mask's shape {tuple(available.shape)}"
        )
    empty = (~(stacked & available).any(2)).nonzero()  # all subsets at once: one device sync, not one per subset
    if len(empty):
        s, b = empty[0].tolist()
        raise ValueError(
            f"subset mask {s} has no modality that sample {b} has ({len(empty)} (subset, sample) pair(s) in all); "
            "a subset is used within the sample's available modalities, so it must share at least one with them"
        )


def zero_fill(inputs: dict[str, Tensor], mask: Tensor, modalities: Sequence[str]) -> dict[str, Tensor]:
    """Replace every missing modality's content by zeros (``torch.where``, so even NaN content is dropped)."""
    filled = {}
    for m, name in enumerate(modalities):
        x = inputs[name]
        keep = mask[:, m].reshape(-1, *([1] * (x.ndim - 1)))
        filled[name] = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return filled


class ExpertMixture(nn.Module):
    """Base of methods whose output is a weighted sum of per-modality experts' task outputs.

    ``o = sum_m w^m o^m`` with ``w^m = 0`` for missing modalities. Subclasses define the weights of many subsets
    at once (:meth:`subset_fusion_weights`); this class computes each expert once (:meth:`expert_logits`) and
    mixes the precomputed outputs for any subsets (:meth:`mix_subsets`, :meth:`mix`), so MoFe pairs and the
    evaluation of all subsets cost one expert pass. An expert's output depends only on its own modality, so the
    reuse is exact.

    Args:
        experts: modality name -> expert network (dataset modality order); each maps its input to ``[B, T, ...]``.
    """

    def __init__(self, experts: dict[str, nn.Module]) -> None:
        super().__init__()
        self.experts = nn.ModuleDict(experts)

    @property
    def modalities(self) -> list[str]:
        return list(self.experts)

    #: The fusion weights are computed from the experts' features (``expert.encode``) instead of the inputs: a
    #: gate over intermediate features, as SimMLM's image-text model has; the experts then run once for both.
    gate_reads_features = False

    def encode(self, inputs: dict[str, Tensor], mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """One pass of every expert over the zero-filled inputs (validated by the caller): the stacked outputs
        ``[B, M, T, ...]``, and what the fusion weights are computed from: the zero-filled inputs, or with
        :attr:`gate_reads_features` the experts' features (``expert.encode``, before ``expert.head``), zero for
        the modalities ``mask`` lacks."""
        filled = zero_fill(inputs, mask, self.modalities)
        present = {name: mask[:, m] for m, name in enumerate(self.modalities)}
        if not self.gate_reads_features:
            outputs = [
                on_present_rows(expert, expert, filled[name], present[name]) for name, expert in self.experts.items()
            ]
            return torch.stack(outputs, dim=1), filled
        features = {
            name: on_present_rows(expert, cast(Any, expert).encode, filled[name], present[name])
            for name, expert in self.experts.items()
        }
        logits = torch.stack([cast(Any, expert).head(features[name]) for name, expert in self.experts.items()], 1)
        return logits, zero_fill(features, mask, self.modalities)

    def gate_inputs(
        self, inputs: dict[str, Tensor], mask: Tensor, expert_logits: Tensor | None = None
    ) -> dict[str, Tensor]:
        """What the fusion weights of samples with the modalities of ``mask`` are computed from (:meth:`encode`);
        ``expert_logits``: the experts' outputs on them, if at hand (a gate that reads them needs no second pass)."""
        return self.encode(inputs, mask)[1] if self.gate_reads_features else zero_fill(inputs, mask, self.modalities)

    def expert_logits(self, inputs: dict[str, Tensor], mask: Tensor, validate_args: bool = True) -> Tensor:
        """Stacked expert outputs ``[B, M, T, ...]`` on the zero-filled inputs (``validate_args=False``: the caller
        has validated ``inputs`` and ``mask``; skips the checks and their device syncs)."""
        if validate_args:
            validate_inputs(inputs, mask, self.modalities)
        return self.encode(inputs, mask)[0]

    def subset_fusion_weights(self, filled: dict[str, Tensor], subset_masks: Tensor) -> Tensor:
        """Weights ``[S, B, M]`` or ``[S, B, M, K]`` of ``S`` subsets (``subset_masks``: ``[S, B, M]``) of one batch
        whose inputs are zero-filled where no subset has the modality: 0 for a modality outside the subset, summing
        to 1 over the subset's modalities."""
        raise NotImplementedError

    def fusion_weights(self, inputs: dict[str, Tensor], mask: Tensor) -> Tensor:
        """Weights ``[B, M]`` or ``[B, M, K]`` of one subset: 0 for missing modalities, summing to 1 over the
        available ones."""
        return self.subset_fusion_weights(self.gate_inputs(inputs, mask), mask.unsqueeze(0))[0]

    def reset_fusion_to_uniform(self) -> None:
        """Start the fusion weights at the plain mean of the available experts (a no-op where they are fixed)."""

    def mix(
        self,
        expert_logits: Tensor,
        inputs: dict[str, Tensor],
        mask: Tensor,
        validate_args: bool = True,
        gate_inputs: dict[str, Tensor] | None = None,
    ) -> ModelOutput:
        """Weigh precomputed expert outputs for the subset given by ``mask`` (a validated mask: see
        :meth:`expert_logits`); ``gate_inputs``: those :meth:`encode` returned with them, if at hand."""
        if validate_args:
            validate_inputs(inputs, mask, self.modalities)
        gate_inputs = self.gate_inputs(inputs, mask, expert_logits) if gate_inputs is None else gate_inputs
        return _weigh(expert_logits, self.subset_fusion_weights(gate_inputs, mask.unsqueeze(0))[0], mask)

    def mix_subsets(
        self,
        expert_logits: Tensor,
        inputs: dict[str, Tensor],
        available: Tensor,
        subset_masks: Sequence[Tensor],
        gate_inputs: dict[str, Tensor] | None = None,
    ) -> list[ModelOutput]:
        """:meth:`mix` for several subsets of ``available`` (validated masks), their weights in one call; each subset
        is intersected with ``available``, so a modality a sample lacks is never mixed in."""
        masks = torch.stack(list(subset_masks)) & available
        gate_inputs = self.gate_inputs(inputs, available, expert_logits) if gate_inputs is None else gate_inputs
        weights = self.subset_fusion_weights(gate_inputs, masks)
        if expert_logits.ndim == 3 and weights.ndim == 3:  # [B, M, T] class logits: every subset in one product
            # a weight is exactly 0 outside its subset, and the outputs of modalities a sample lacks are zeroed
            # (never read), so one product over the available experts serves every subset
            present = torch.where(available.unsqueeze(-1), expert_logits, expert_logits.new_zeros(()))
            logits = torch.einsum("sbm,bmt->sbt", weights, present)
            return [ModelOutput(logits=o, gate_weights=w) for o, w in zip(logits, weights, strict=True)]
        return [_weigh(expert_logits, w, mask) for w, mask in zip(weights, masks, strict=True)]  # e.g. volumes

    def forward_subsets(
        self,
        inputs: dict[str, Tensor],
        available: Tensor,
        subset_masks: Sequence[Tensor],
        targets: Tensor | None = None,
        sample_index: Tensor | None = None,
        validate_args: bool = True,
    ) -> list[ModelOutput]:
        """Outputs for several subsets of ``available`` with one expert pass.

        ``targets`` and ``sample_index`` (training context of the protocol) are unused here.
        """
        if validate_args:
            validate_subsets(inputs, available, subset_masks, self.modalities)
        experts, gate_inputs = self.encode(inputs, available)
        return self.mix_subsets(experts, inputs, available, subset_masks, gate_inputs)

    def forward(self, inputs: dict[str, Tensor], mask: Tensor) -> ModelOutput:
        validate_inputs(inputs, mask, self.modalities)
        experts, gate_inputs = self.encode(inputs, mask)
        return self.mix(experts, inputs, mask, validate_args=False, gate_inputs=gate_inputs)


def on_present_rows(expert: nn.Module, fn: Any, x: Tensor, present: Tensor) -> Tensor:
    """``fn(x)``, where ``fn`` is ``expert`` or a part of it; for an expert with batch normalisation in training mode,
    computed on the rows that have the modality only (the others are zero), so that the batch statistics and the
    running averages never see the zero-filled rows of absent samples. (Rows are independent otherwise: every
    other expert runs on the whole batch, without the host sync that selecting rows costs.)"""
    batch_norm = expert.training and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in expert.modules())
    if not batch_norm or bool(present.all()):  # the host sync of .all() only for batch-norm experts
        return cast(Tensor, fn(x))
    rows = present.nonzero().flatten()
    out = cast(Tensor, fn(x[rows]))  # no present row: an empty batch, which leaves the statistics as they are
    return out.new_zeros((len(x), *out.shape[1:])).index_copy(0, rows, out)


def _weigh(expert_logits: Tensor, weights: Tensor, mask: Tensor) -> ModelOutput:
    """``sum_m w^m o^m`` over the modalities of ``mask`` (other experts' outputs, even NaN, are never read)."""
    present = mask.reshape(*mask.shape, *([1] * (expert_logits.ndim - 2)))
    outputs = torch.where(present, expert_logits, expert_logits.new_zeros(()))
    w = weights.reshape(*weights.shape, *([1] * (expert_logits.ndim - weights.ndim)))
    return ModelOutput(logits=(w * outputs).sum(1), gate_weights=weights)


def outputs_for_subsets(
    model: nn.Module,
    inputs: dict[str, Tensor],
    available: Tensor,
    subset_masks: Sequence[Tensor],
    targets: Tensor | None = None,
    sample_index: Tensor | None = None,
    validate_args: bool = True,
) -> list[ModelOutput]:
    """Outputs of ``model`` for each ``[B, M]`` subset mask (each ANDed with ``available`` by the caller).

    Methods with a ``forward_subsets(inputs, available, subset_masks)`` method (expert mixtures, MMP) encode
    each available modality once and redo only the cheap part per subset; others run once per subset.
    ``targets`` and ``sample_index`` (training only: labels, and the batch's rows in the training set) reach
    methods that need them (DREAM's distillation and its cache of scorer predictions). ``validate_args=False``
    (the engine, whose datasets validated every mask once) skips the per-call checks and their device syncs.
    """
    forward_subsets = getattr(model, "forward_subsets", None)
    if callable(forward_subsets):
        return list(
            forward_subsets(
                inputs, available, subset_masks, targets=targets, sample_index=sample_index, validate_args=validate_args
            )
        )
    return [model(inputs, mask) for mask in subset_masks]
