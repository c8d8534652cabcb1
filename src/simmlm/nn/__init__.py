"""Building blocks: experts, gating networks, masked softmax.

The names below load on first use, so that :mod:`simmlm.nn.specs` can be imported without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simmlm.nn.experts import LeNet5, MLPExpert, build_expert, resolve_expert_kind
    from simmlm.nn.functional import masked_softmax
    from simmlm.nn.gating import ConvGateEncoder, FlatGateEncoder, GatingNetwork, build_gate_encoder

_HOMES = {
    "ConvGateEncoder": "gating",
    "FlatGateEncoder": "gating",
    "GatingNetwork": "gating",
    "build_gate_encoder": "gating",
    "LeNet5": "experts",
    "MLPExpert": "experts",
    "build_expert": "experts",
    "resolve_expert_kind": "experts",
    "masked_softmax": "functional",
}
__all__ = [
    "ConvGateEncoder",
    "FlatGateEncoder",
    "GatingNetwork",
    "LeNet5",
    "MLPExpert",
    "build_expert",
    "build_gate_encoder",
    "masked_softmax",
    "resolve_expert_kind",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f"simmlm.nn.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'simmlm.nn' has no attribute {name!r}")
