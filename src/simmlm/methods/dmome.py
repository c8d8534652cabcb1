"""Dynamic Mixture of Modality Experts (DMoME), the architecture of SimMLM (Sec. 3.2, eqs. 1-2)."""

from __future__ import annotations

from torch import Tensor, nn

from simmlm.methods.base import ExpertMixture, zero_fill
from simmlm.nn.functional import masked_softmax
from simmlm.nn.gating import GatingNetwork


class DMoME(ExpertMixture):
    """One expert per modality producing task logits ``o^m``, mixed by gate weights ``w``.

    ``o = sum_m w^m o^m`` with ``w = softmax(g)``, ``g^m = -inf`` for missing modalities (eq. 2); the gate
    ``g = G(x)`` sees the zero-filled inputs of all modalities. Experts run once per batch
    (:meth:`expert_logits`); only the cheap gate is recomputed per subset (:meth:`mix`).

    Args:
        experts: modality name -> expert network (dataset modality order); each maps its input to ``[B, T, ...]``.
        gate: gating network over the same modalities, returning ``[B, M]`` or ``[B, M, K]`` gate logits.
    """

    def __init__(self, experts: dict[str, nn.Module], gate: GatingNetwork) -> None:
        super().__init__(experts)
        if list(gate.encoders) != list(experts):
            raise ValueError(f"gate modalities {list(gate.encoders)} differ from experts {list(experts)}")
        self.gate = gate

    def fusion_weights(self, inputs: dict[str, Tensor], mask: Tensor) -> Tensor:
        return masked_softmax(self.gate(zero_fill(inputs, mask, self.modalities)), mask)
