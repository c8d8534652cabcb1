"""Late fusion: per-modality experts averaged over the available modalities (the plain baseline)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from simmlm.methods.base import ExpertMixture, ModelOutput, validate_inputs, validate_subsets, zero_fill
from simmlm.methods.registry import register_method
from simmlm.nn.experts import build_experts


class LateFusion(ExpertMixture):
    """``o = (1/|A|) sum_{m in A} o^m``: the mean of the available experts' logits.

    Trained with random modality dropout: the engine's stage 2 draws a random subset pair per sample, so every
    subset of the available modalities is trained on (with ``mofe_lambda > 0`` the MoFe hinge is added as a
    plug-in). The uniform fusion weights are returned as ``gate_weights``.
    """

    def subset_fusion_weights(self, filled: dict[str, Tensor], subset_masks: Tensor) -> Tensor:
        weights = subset_masks.float()
        return weights / weights.sum(-1, keepdim=True)


class UnmarkedLateFusion(LateFusion):
    """Late fusion that reads no annotation of what is missing: ``o = (1/M) sum_m o^m(x~_m)`` over every expert,
    with ``x~`` the input zero-filled outside the subset. A modality a sample lacks, or a subset leaves out, is an
    input of zeros that its expert reads like any other (the engine trains it with every modality marked present,
    :func:`~simmlm.data.base.without_annotation`), so zero-filling and leaving out are the same thing to it. The
    scorer of DREAM without annotation (``dream_paper``). One expert pass per subset."""

    reads_annotation = False

    def forward_subsets(
        self,
        inputs: dict[str, Tensor],
        available: Tensor,
        subset_masks: Sequence[Tensor],
        targets: Tensor | None = None,
        sample_index: Tensor | None = None,
        validate_args: bool = True,
    ) -> list[ModelOutput]:
        if validate_args:
            validate_subsets(inputs, available, subset_masks, self.modalities)
        everything = torch.ones_like(available)
        outputs = []
        for subset in subset_masks:
            filled = zero_fill(inputs, subset & available, self.modalities)
            outputs.append(super().forward_subsets(filled, everything, [everything], validate_args=False)[0])
        return outputs

    def forward(self, inputs: dict[str, Tensor], mask: Tensor) -> ModelOutput:
        validate_inputs(inputs, mask, self.modalities)
        return self.forward_subsets(inputs, mask, [mask], validate_args=False)[0]


def build_late_fusion(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str] = "lenet",
    expert_options: dict[str, Any] | None = None,
    annotation: Literal["mask", "none"] = "mask",
) -> LateFusion:
    """Late fusion with the same experts as DMoME's (:func:`~simmlm.methods.dmome.build_dmome`); with
    ``annotation="none"`` the :class:`UnmarkedLateFusion` that never reads which modalities are missing."""
    if annotation not in ("mask", "none"):
        raise ValueError(f"annotation must be 'mask' or 'none', got {annotation!r}")
    experts = build_experts(input_shapes, num_classes, expert, expert_options)
    return LateFusion(experts) if annotation == "mask" else UnmarkedLateFusion(experts)


register_method(
    "late_fusion",
    build_late_fusion,
    "mean of the available experts' logits, trained with random modality dropout (lambda 0)",
    train_defaults={"mofe_lambda": 0.0},
)
