"""Late fusion: per-modality experts averaged over the available modalities (the plain baseline)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from simmlm.methods.base import ExpertMixture
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


def build_late_fusion(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str] = "lenet",
    expert_options: dict[str, Any] | None = None,
) -> LateFusion:
    """Late fusion with the same experts as DMoME's (:func:`~simmlm.methods.dmome.build_dmome`)."""
    return LateFusion(build_experts(input_shapes, num_classes, expert, expert_options))


register_method(
    "late_fusion",
    build_late_fusion,
    "mean of the available experts' logits, trained with random modality dropout (lambda 0)",
    mofe_lambda=0.0,
)
