"""Dynamic Mixture of Modality Experts (DMoME), the architecture of SimMLM (Sec. 3.2, eqs. 1-2)."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from simmlm.methods.base import ExpertMixture
from simmlm.methods.registry import register_method
from simmlm.nn.experts import build_experts
from simmlm.nn.functional import masked_softmax
from simmlm.nn.gating import FlatGateEncoder, GatingNetwork, ReliabilityHead, build_gate_encoder, reliability_signals

#: What DMoME's gate reads: the zero-filled inputs (avMNIST, BraTS) or the experts' features (image-text).
GateOn = Literal["inputs", "features"]
#: Where the reliability signals ride in the gate's inputs (no modality is named so).
RELIABILITY_KEY = "__reliability__"


class DMoME(ExpertMixture):
    """One expert per modality producing task logits ``o^m``, mixed by gate weights ``w``.

    ``o = sum_m w^m o^m`` with ``w = softmax(g)``, ``g^m = -inf`` for missing modalities (eq. 2); the gate
    ``g = G(x)`` sees the zero-filled inputs of all modalities. Experts and the gate's encoders run once per batch;
    only the gate's head runs per subset, for all subsets at once (:meth:`subset_fusion_weights`).

    With ``reliability`` the gate also reads each expert's reliability signals (:func:`reliability_signals`:
    entropy, confidence, energy, agreement with the other experts, from the outputs alone) through a per-modality
    linear term that starts at zero (:class:`ReliabilityHead`): beyond the paper, so that an expert whose output
    looks degraded (a corrupted input still marked present) can lose weight; classification experts only.

    Args:
        experts: modality name -> expert network (dataset modality order); each maps its input to ``[B, T, ...]``.
        gate: gating network over the same modalities, returning ``[B, M]`` or ``[B, M, K]`` gate logits.
    """

    def __init__(
        self, experts: dict[str, nn.Module], gate: GatingNetwork, gate_on: GateOn = "inputs", reliability: bool = False
    ) -> None:
        super().__init__(experts)
        if list(gate.encoders) != list(experts):
            raise ValueError(f"gate modalities {list(gate.encoders)} differ from experts {list(experts)}")
        if gate_on == "features":
            feature_sizes(experts)
        if reliability and gate.num_channels is not None:
            raise ValueError("reliability reads class outputs; it has no gate per output channel (gate_channels)")
        self.gate, self.gate_reads_features = gate, gate_on == "features"
        self.reliability = ReliabilityHead(len(experts)) if reliability else None

    def encode(self, inputs: dict[str, Tensor], mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logits, gate_inputs = super().encode(inputs, mask)
        return logits, self._with_signals(gate_inputs, logits, mask)

    def gate_inputs(
        self, inputs: dict[str, Tensor], mask: Tensor, expert_logits: Tensor | None = None
    ) -> dict[str, Tensor]:
        if self.reliability is None or expert_logits is None:  # without the experts' outputs: one pass of them
            return self.encode(inputs, mask)[1] if self.reliability is not None else super().gate_inputs(inputs, mask)
        return self._with_signals(super().gate_inputs(inputs, mask), expert_logits, mask)

    def _with_signals(self, gate_inputs: dict[str, Tensor], logits: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """What the gate reads, with the experts' reliability signals when the option is on."""
        if self.reliability is None:
            return gate_inputs
        if logits.ndim != 3:
            raise ValueError(f"reliability reads class logits [B, M, T]; these experts give {list(logits.shape)}")
        return {**gate_inputs, RELIABILITY_KEY: reliability_signals(logits, mask)}

    def reset_fusion_to_uniform(self) -> None:
        self.gate.reset_to_uniform()

    def subset_fusion_weights(self, filled: dict[str, Tensor], subset_masks: Tensor) -> Tensor:
        # every encoder once, the gate's head once for all subsets (GatingNetwork.subset_logits)
        logits = self.gate.subset_logits(filled, subset_masks)
        if self.reliability is not None:
            logits = logits + self.reliability(filled[RELIABILITY_KEY])  # [S, B, M] + [B, M]
        flat = masked_softmax(logits.flatten(0, 1), subset_masks.flatten(0, 1), validate_args=False)
        return flat.reshape(logits.shape)


def feature_sizes(experts: dict[str, nn.Module]) -> dict[str, int]:
    """Each expert's feature width, for a gate over features; a ``ValueError`` names the experts without features."""
    lacking = [
        name for name, e in experts.items() if not all(hasattr(e, a) for a in ("encode", "head", "feature_size"))
    ]
    if lacking:
        raise ValueError(
            f"gate_on: features needs experts with features (encode / head, e.g. 'mlp'); {lacking} have none"
        )
    return {name: int(getattr(e, "feature_size")) for name, e in experts.items()}  # noqa: B009


def build_dmome(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str] = "lenet",
    expert_options: dict[str, Any] | None = None,
    gate_width: int = 8,
    gate_hidden: int = 32,
    gate_channels: int | None = None,
    gate_on: GateOn = "inputs",
    reliability: bool = False,
) -> DMoME:
    """DMoME with one expert per modality (by name, or one name per modality) and a gate over the zero-filled inputs
    (a conv / linear encoder per modality) or, with ``gate_on="features"``, over the experts' last hidden features
    (a linear encoder per modality; SimMLM's gate for image-text experts, so a costly expert runs once);
    ``reliability``: the gate also reads the experts' reliability signals (:class:`DMoME`)."""
    if gate_channels is not None and gate_channels != num_classes:
        raise ValueError(
            f"gate_channels ({gate_channels}) must equal the experts' output channels ({num_classes}: one gate per "
            "modality and output channel, e.g. 3 tumour regions), or be None (one gate per modality)"
        )
    experts = build_experts(input_shapes, num_classes, expert, expert_options)
    if gate_on == "features":
        sizes = feature_sizes(experts)
        encoders: dict[str, nn.Module] = {name: FlatGateEncoder(size, 2 * gate_width) for name, size in sizes.items()}
    else:
        encoders = {name: build_gate_encoder(tuple(shape), gate_width) for name, shape in input_shapes.items()}
    gate = GatingNetwork(encoders, num_channels=gate_channels, hidden=gate_hidden)
    return DMoME(experts, gate, gate_on, reliability)


register_method(
    "simmlm",
    build_dmome,
    "DMoME trained in two stages with the More-vs-Fewer ranking loss (lambda 0.1)",
    train_defaults={"mofe_lambda": 0.1},
)
register_method(
    "dmome",
    build_dmome,
    "DMoME without MoFe (the paper's lambda = 0 ablation)",
    train_defaults={"mofe_lambda": 0.0},
)
