"""Building blocks: experts, gating networks, masked softmax."""

from simmlm.nn.experts import LeNet5, MLPExpert, build_expert, resolve_expert_kind
from simmlm.nn.functional import masked_softmax
from simmlm.nn.gating import ConvGateEncoder, FlatGateEncoder, GatingNetwork, build_gate_encoder

__all__ = [
    "ConvGateEncoder",
    "FlatGateEncoder",
    "GatingNetwork",
    "LeNet5",
    "MLPExpert",
    "build_expert",
    "resolve_expert_kind",
    "build_gate_encoder",
    "masked_softmax",
]
