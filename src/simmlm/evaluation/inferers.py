"""Inference under modality subsets at the dataset level: every sample under every subset, and whole volumes by
sliding window. (The per-batch protocol, ``forward_subsets``, belongs to the methods: ``simmlm.methods.base``;
this module runs it over datasets, as MONAI keeps ``inferers`` apart from ``networks``.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from simmlm.methods.base import ModelOutput, outputs_for_subsets
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

    Rows of a subset that a sample does not fully have (``subset ⊄ available``) are NaN: "no prediction";
    :attr:`covered` tells which rows are real.
    """

    subsets: list[int]
    logits: Tensor
    gate_weights: Tensor | None
    targets: Tensor
    available: Tensor

    @property
    def covered(self) -> Tensor:
        """``[S, N]`` boolean: sample ``n`` has every modality of subset ``s`` (its row ``s, n`` is a prediction)."""
        codes = torch.tensor(self.subsets, dtype=self.available.dtype).unsqueeze(1)
        return (codes & ~self.available.unsqueeze(0)) == 0


@torch.no_grad()
def predict_subsets(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    subsets: Sequence[int] | None = None,
    batch_size: int = 256,
) -> SubsetPredictions:
    """Predict every sample under every subset (default: all non-empty subsets of the modalities).

    A sample is predicted under a subset only if it has every modality of the subset; its other rows are NaN
    (see :class:`SubsetPredictions`), so a subset's metrics cover exactly the samples that have it.
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
            wanted = [bits_to_mask(torch.full_like(mask[:, 0], s, dtype=torch.long), mask.shape[1]) for s in subsets]
            covered = [~(w & ~mask).any(1) for w in wanted]
            # Uncovered rows run on the sample's own modalities (a valid placeholder) and are blanked below.
            subset_masks = [torch.where(c.unsqueeze(1), w, mask) for w, c in zip(wanted, covered, strict=True)]
            outputs = outputs_for_subsets(model, inputs, mask, subset_masks)
            logits.append(torch.stack([_blank(o.logits, c) for o, c in zip(outputs, covered, strict=True)]))
            if outputs[0].gate_weights is not None:
                gates.append(torch.stack([_blank(o.gate_weights, c) for o, c in zip(outputs, covered, strict=True)]))  # type: ignore[arg-type]
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


def _blank(values: Tensor, covered: Tensor) -> Tensor:
    """``values`` ``[N, ...]`` with NaN in the rows that are not ``covered``."""
    keep = covered.reshape(-1, *([1] * (values.ndim - 1)))
    return torch.where(keep, values, torch.full((), float("nan"), dtype=values.dtype, device=values.device))


@torch.no_grad()
def sliding_window_subsets(
    model: nn.Module,
    inputs: dict[str, Tensor],
    available: Tensor,
    subset_masks: Sequence[Tensor],
    roi_size: Sequence[int],
    overlap: float = 0.5,
    sw_batch_size: int = 2,
) -> list[ModelOutput]:
    """Outputs of an expert mixture (or MMP) on whole volumes, for several subsets, with one sliding-window pass.

    The experts run on windows of ``roi_size`` (MONAI ``sliding_window_inference``, Gaussian blending), once
    for every available modality; the gate, which pools globally, sees the whole zero-filled volume and mixes
    the stitched expert outputs per subset. With point-wise experts this equals whole-volume inference. A dense
    model that is not a mixture (MMP, ``dense``) runs every subset on each window and its outputs are stitched.

    Args:
        model: an :class:`~simmlm.methods.base.ExpertMixture` (experts map ``[B, C, *S]`` to ``[B, T, *S]``).
        inputs: modality -> ``[1, C, D, H, W]`` (one volume).
        available: ``[1, M]`` availability; ``subset_masks``: ``[1, M]`` masks within it.
    """
    from monai.inferers import sliding_window_inference

    from simmlm.methods.base import ExpertMixture, ModelOutput

    if not isinstance(model, ExpertMixture) and not getattr(model, "dense", False):
        raise ValueError(
            "sliding-window inference needs an expert mixture (simmlm, dmome, late_fusion) or mmp, got "
            f"{type(model).__name__}"
        )
    if len(available) != 1:
        raise ValueError(f"sliding-window inference takes one volume at a time, got a batch of {len(available)}")
    names: list[str] = list(model.modalities)  # type: ignore[arg-type]
    channels = [inputs[name].shape[1] for name in names]
    stacked = torch.cat([inputs[name] for name in names], dim=1)
    if not isinstance(model, ExpertMixture):  # a dense model (MMP): every subset's logits per window, stitched

        def every_subset(window: Tensor) -> Tensor:
            parts = dict(zip(names, window.split(channels, dim=1), strict=True))
            b = len(window)
            masks = [m.expand(b, -1) for m in subset_masks]
            outputs = model.forward_subsets(parts, available.expand(b, -1), masks, validate_args=False)  # type: ignore[operator]
            return torch.cat([o.logits for o in outputs], dim=1)

        stitched = sliding_window_inference(
            stacked, list(roi_size), sw_batch_size, every_subset, overlap=overlap, mode="gaussian"
        )
        per_subset = torch.as_tensor(stitched).reshape(1, len(subset_masks), -1, *stacked.shape[2:])
        return [ModelOutput(logits=per_subset[:, s], gate_weights=None) for s in range(len(subset_masks))]

    def experts(window: Tensor) -> Tensor:
        parts = dict(zip(names, window.split(channels, dim=1), strict=True))
        logits = model.expert_logits(parts, available.expand(len(window), -1))  # [b, M, T, *roi]
        return logits.flatten(1, 2)

    stitched = sliding_window_inference(
        stacked, list(roi_size), sw_batch_size, experts, overlap=overlap, mode="gaussian"
    )
    expert_logits = torch.as_tensor(stitched).reshape(1, len(names), -1, *stacked.shape[2:])
    return model.mix_subsets(expert_logits, inputs, available, subset_masks)
