"""Run a method on every modality subset of a dataset, computing each expert once when it can."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from simmlm.methods.base import ModelOutput
from simmlm.subsets import all_subsets, bits_to_mask, mask_to_bits


@dataclass
class SubsetPredictions:
    """Outputs of one model on one dataset under several modality subsets.

    Attributes:
        subsets: subset bit masks, one per leading index below.
        logits: ``[S, N, T, ...]`` logits per subset.
        gate_weights: ``[S, N, M(, K)]`` or ``None``.
        targets: ``[N, ...]``.
        available: ``[N]`` bit mask of the modalities each sample really has.
    """

    subsets: list[int]
    logits: Tensor
    gate_weights: Tensor | None
    targets: Tensor
    available: Tensor


def outputs_for_subsets(
    model: nn.Module,
    inputs: dict[str, Tensor],
    available: Tensor,
    subset_masks: Sequence[Tensor],
    targets: Tensor | None = None,
    sample_index: Tensor | None = None,
) -> list[ModelOutput]:
    """Outputs of ``model`` for each ``[B, M]`` subset mask (each ANDed with ``available`` by the caller).

    Methods with a ``forward_subsets(inputs, available, subset_masks)`` method (expert mixtures, MMP) encode
    each available modality once and redo only the cheap part per subset; others run once per subset.
    ``targets`` and ``sample_index`` (training only: labels, and the batch's rows in the training set) reach
    methods that need them (DREAM's distillation and its cache of scorer predictions).
    """
    forward_subsets = getattr(model, "forward_subsets", None)
    if callable(forward_subsets):
        return list(forward_subsets(inputs, available, subset_masks, targets=targets, sample_index=sample_index))
    return [model(inputs, mask) for mask in subset_masks]


@torch.no_grad()
def predict_subsets(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    subsets: Sequence[int] | None = None,
    batch_size: int = 256,
) -> SubsetPredictions:
    """Predict every sample under every subset (default: all non-empty subsets of the modalities).

    A sample is evaluated under ``subset & available``; a subset that leaves a sample with no modality
    raises, as the method interface does. Use this on fully observed evaluation data for per-subset tables.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    num_samples = len(dataset)  # type: ignore[arg-type]
    logits, gates, targets, available_bits = [], [], [], []
    try:
        for start in range(0, num_samples, batch_size):
            inputs, mask, target = dataset[list(range(start, min(start + batch_size, num_samples)))]
            inputs = {k: v.to(device) for k, v in inputs.items()}
            mask = mask.to(device)
            if subsets is None:
                subsets = all_subsets(mask.shape[1])
            subset_masks = [
                bits_to_mask(torch.full_like(mask[:, 0], s, dtype=torch.long), mask.shape[1]) & mask for s in subsets
            ]
            outputs = outputs_for_subsets(model, inputs, mask, subset_masks)
            logits.append(torch.stack([o.logits for o in outputs]))
            if outputs[0].gate_weights is not None:
                gates.append(torch.stack([o.gate_weights for o in outputs]))  # type: ignore[misc]
            targets.append(target)
            available_bits.append(mask_to_bits(mask))
    finally:
        model.train(was_training)
    assert subsets is not None
    return SubsetPredictions(
        subsets=list(subsets),
        logits=torch.cat(logits, dim=1).cpu(),
        gate_weights=torch.cat(gates, dim=1).cpu() if gates else None,
        targets=torch.cat(targets).cpu(),
        available=torch.cat(available_bits).cpu(),
    )
