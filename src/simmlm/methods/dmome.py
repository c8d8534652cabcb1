"""Dynamic Mixture of Modality Experts (DMoME), the architecture of SimMLM (Sec. 3.2, eqs. 1-2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from simmlm.methods.base import ModelOutput, validate_inputs, zero_fill
from simmlm.nn.functional import masked_softmax
from simmlm.nn.gating import GatingNetwork


class DMoME(nn.Module):
    """One expert per modality producing task logits ``o^m``, mixed by gate weights ``w``.

    ``o = sum_m w^m o^m`` with ``w = softmax(g)``, ``g^m = -inf`` for missing modalities (eq. 2); the gate
    ``g = G(x)`` sees the zero-filled inputs of all modalities.

    An expert's output depends only on its own modality, so :meth:`expert_logits` can be computed once per
    batch and reused by :meth:`mix` for any number of modality subsets (MoFe pairs, evaluation of every
    subset): only the cheap gate is recomputed per subset.

    Args:
        experts: modality name -> expert network (dataset modality order); each maps its input to ``[B, T, ...]``.
        gate: gating network over the same modalities, returning ``[B, M]`` or ``[B, M, K]`` gate logits.
    """

    def __init__(self, experts: dict[str, nn.Module], gate: GatingNetwork) -> None:
        super().__init__()
        if list(gate.encoders) != list(experts):
            raise ValueError(f"gate modalities {list(gate.encoders)} differ from experts {list(experts)}")
        self.experts = nn.ModuleDict(experts)
        self.gate = gate

    @property
    def modalities(self) -> list[str]:
        return list(self.experts)

    def expert_logits(self, inputs: dict[str, Tensor], mask: Tensor) -> Tensor:
        """Stacked expert outputs ``[B, M, T, ...]`` on the zero-filled inputs."""
        validate_inputs(inputs, mask, self.modalities)
        filled = zero_fill(inputs, mask, self.modalities)
        return torch.stack([expert(filled[name]) for name, expert in self.experts.items()], dim=1)

    def mix(self, expert_logits: Tensor, inputs: dict[str, Tensor], mask: Tensor) -> ModelOutput:
        """Gate the precomputed expert outputs for the subset given by ``mask`` (eqs. 1-2)."""
        validate_inputs(inputs, mask, self.modalities)
        weights = masked_softmax(self.gate(zero_fill(inputs, mask, self.modalities)), mask)
        present = mask.reshape(*mask.shape, *([1] * (expert_logits.ndim - 2)))
        outputs = torch.where(present, expert_logits, expert_logits.new_zeros(()))
        w = weights.reshape(*weights.shape, *([1] * (expert_logits.ndim - weights.ndim)))
        return ModelOutput(logits=(w * outputs).sum(1), gate_weights=weights)

    def forward(self, inputs: dict[str, Tensor], mask: Tensor) -> ModelOutput:
        return self.mix(self.expert_logits(inputs, mask), inputs, mask)
