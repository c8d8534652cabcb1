"""Methods: plain ``nn.Module``s sharing ``forward(inputs, mask) -> ModelOutput``, and their registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from simmlm.methods.base import ExpertMixture, ModelOutput, validate_inputs, zero_fill
from simmlm.methods.dmome import DMoME
from simmlm.methods.dream import DREAM
from simmlm.methods.late_fusion import LateFusion
from simmlm.methods.mmp import MMP, build_token_encoder
from simmlm.nn.experts import build_expert
from simmlm.nn.gating import GatingNetwork, build_gate_encoder


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: how to build it and the training settings that define it."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    train_defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, MethodEntry] = {}


def register_method(name: str, builder: Callable[..., nn.Module], description: str, **train_defaults: Any) -> None:
    """Add a method to the registry (``train_defaults`` override the training config, e.g. ``mofe_lambda``)."""
    if name in _REGISTRY:
        raise ValueError(f"method {name!r} is already registered")
    _REGISTRY[name] = MethodEntry(name, builder, description, dict(train_defaults))


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodEntry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    return _REGISTRY[name]


def create_method(name: str, **cfg: Any) -> nn.Module:
    """Build a registered method, e.g. ``create_method("simmlm", input_shapes=..., num_classes=10)``."""
    return get_method(name).builder(**cfg)


def _expert_kinds(input_shapes: dict[str, tuple[int, ...]], expert: str | dict[str, str]) -> dict[str, str]:
    kinds = expert if isinstance(expert, dict) else dict.fromkeys(input_shapes, expert)
    missing = [name for name in input_shapes if name not in kinds]
    if missing:
        raise ValueError(f"no expert kind given for modalities {missing}")
    return kinds


def expert_options_for(name: str, modalities: Sequence[str], expert_options: dict[str, Any] | None) -> dict[str, Any]:
    """The options of modality ``name``'s expert: ``expert_options`` is either one set of options for every
    expert, or (when every key is a modality name) one set per modality, e.g. ``{image: {width: 2}, audio: {}}``."""
    options = expert_options or {}
    if options and set(options) <= set(modalities):
        own = options.get(name, {})
        if not isinstance(own, dict):
            raise ValueError(f"expert_options[{name!r}] must be a mapping of options, got {own!r}")
        return dict(own)
    return dict(options)


def _build_experts(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str],
    expert_options: dict[str, Any] | None,
) -> dict[str, nn.Module]:
    kinds = _expert_kinds(input_shapes, expert)
    return {
        name: build_expert(
            kinds[name], tuple(shape), num_classes, **expert_options_for(name, list(input_shapes), expert_options)
        )
        for name, shape in input_shapes.items()
    }


def build_dmome(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str] = "lenet",
    expert_options: dict[str, Any] | None = None,
    gate_width: int = 8,
    gate_hidden: int = 32,
    gate_channels: int | None = None,
) -> DMoME:
    """DMoME with one expert per modality (by name, or one name per modality) and a conv/linear gate."""
    experts = _build_experts(input_shapes, num_classes, expert, expert_options)
    encoders = {name: build_gate_encoder(tuple(shape), gate_width) for name, shape in input_shapes.items()}
    return DMoME(experts, GatingNetwork(encoders, num_channels=gate_channels, hidden=gate_hidden))


def build_late_fusion(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str] = "lenet",
    expert_options: dict[str, Any] | None = None,
    **_gate_options: Any,
) -> LateFusion:
    """Late fusion with the same experts as :func:`build_dmome` (gate options are accepted and unused)."""
    return LateFusion(_build_experts(input_shapes, num_classes, expert, expert_options))


def _token_encoders(
    input_shapes: dict[str, tuple[int, ...]],
    expert: str | dict[str, str],
    expert_options: dict[str, Any] | None,
    dim: int,
) -> dict[str, nn.Module]:
    """Token encoders built from the expert kinds (the experts' dropout applies to their classifiers only)."""
    kinds = _expert_kinds(input_shapes, expert)
    encoders = {}
    for name, shape in input_shapes.items():
        options = expert_options_for(name, list(input_shapes), expert_options)
        options.pop("dropout", None)
        encoders[name] = build_token_encoder(kinds[name], tuple(shape), dim, **options)
    return encoders


def build_mmp(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str] = "lenet",
    expert_options: dict[str, Any] | None = None,
    dim: int = 32,
    num_aggregated: int = 8,
    heads: int = 4,
    alignment_weight: float = 1.0,
    **_gate_options: Any,
) -> MMP:
    """MMP whose token encoders are the experts' feature extractors (gate options are accepted and unused)."""
    encoders = _token_encoders(input_shapes, expert, expert_options, dim)
    return MMP(encoders, num_classes, dim, num_aggregated, heads, alignment_weight)


def build_dream(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str] = "lenet",
    expert_options: dict[str, Any] | None = None,
    scorer: str = "late_fusion",
    dim: int = 32,
    heads: int = 4,
    depth: int = 2,
    distill_weight: float = 0.1,
    mc_permutations: int | None = None,
    **gate_options: Any,
) -> DREAM:
    """DREAM with token encoders like MMP's and an (untrained) ``scorer`` method of the same shapes.

    The engine trains the scorer first and loads its weights (:func:`simmlm.engine.train.train`).
    """
    if scorer == "dream":
        raise ValueError("DREAM's scorer cannot be DREAM itself")
    encoders = _token_encoders(input_shapes, expert, expert_options, dim)
    scorer_model = create_method(
        scorer,
        input_shapes=input_shapes,
        num_classes=num_classes,
        expert=expert,
        expert_options=expert_options,
        **gate_options,
    )
    return DREAM(encoders, scorer_model, num_classes, dim, heads, depth, distill_weight, mc_permutations, scorer)


register_method(
    "simmlm",
    build_dmome,
    "DMoME trained in two stages with the More-vs-Fewer ranking loss (lambda 0.1)",
    mofe_lambda=0.1,
)


register_method("dmome", build_dmome, "DMoME without MoFe (the paper's lambda = 0 ablation)", mofe_lambda=0.0)
register_method(
    "late_fusion",
    build_late_fusion,
    "mean of the available experts' logits, trained with random modality dropout (lambda 0)",
    mofe_lambda=0.0,
)
register_method(
    "dream",
    build_dream,
    "Shapley contributions of a frozen pre-trained model drive enhancement and soft-masked fusion (lambda 0)",
    mofe_lambda=0.0,
)
register_method(
    "mmp",
    build_mmp,
    "masked modality projection: tokens of missing modalities projected from available ones (lambda 0)",
    mofe_lambda=0.0,
)

__all__ = [
    "DMoME",
    "DREAM",
    "build_dream",
    "ExpertMixture",
    "LateFusion",
    "MMP",
    "build_mmp",
    "build_late_fusion",
    "MethodEntry",
    "ModelOutput",
    "build_dmome",
    "create_method",
    "get_method",
    "list_methods",
    "register_method",
    "validate_inputs",
    "zero_fill",
]
