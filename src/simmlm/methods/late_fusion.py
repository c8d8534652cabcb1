"""Late fusion: per-modality experts averaged over the available modalities (the plain baseline)."""

from __future__ import annotations

from torch import Tensor

from simmlm.methods.base import ExpertMixture


class LateFusion(ExpertMixture):
    """``o = (1/|A|) sum_{m in A} o^m``: the mean of the available experts' logits.

    Trained with random modality dropout: the engine's stage 2 draws a random subset pair per sample, so every
    subset of the available modalities is trained on (with ``mofe_lambda > 0`` the MoFe hinge is added as a
    plug-in). The uniform fusion weights are returned as ``gate_weights``.
    """

    def fusion_weights(self, inputs: dict[str, Tensor], mask: Tensor) -> Tensor:
        weights = mask.float()
        return weights / weights.sum(1, keepdim=True)
