"""The method registry (timm-style): each method's file registers its builder, training defaults and hooks.

A builder takes the common arguments (``input_shapes``, ``num_classes``, ``expert``, ``expert_options`` and, for
methods with a gate, ``gate_width``, ``gate_hidden``, ``gate_channels`` and, where taken, ``gate_on``) plus its own
keyword options. Those options (``model.method_options`` in a run config) are validated against a model derived from
the builder's signature, so an unknown option or a wrong type fails when the config is loaded, naming the method.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from torch import nn

#: ``train_method(name, options=None)``: train the same run with the registered method ``name`` (its default options,
#: updated by ``options``); returns (model, selections).
TrainMethod = Callable[[str, dict[str, Any] | None], tuple[nn.Module, dict[str, Any]]]
COMMON_ARGS = ("input_shapes", "num_classes", "expert", "expert_options")
GATE_ARGS = ("gate_width", "gate_hidden", "gate_channels", "gate_on")
#: The training settings a method fills where a run config leaves them open (``None`` in ``TrainConfig``).
METHOD_TRAIN_KEYS = frozenset({"mofe_lambda"})


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: how to build it, the training settings that define it, and the engine's hooks.

    Attributes:
        gate: the builder takes the gate options (``gate_width``, ``gate_hidden``, ``gate_channels``).
        options: the method's own options (``model.method_options``), derived from the builder's signature.
        pretrain: ``pretrain(model, train_method, train_set) -> selections``, run before the model trains (DREAM
            trains its scorer with ``train_method`` and caches its predictions on ``train_set``).
        needs_sample_index: training batches carry each sample's row in the training set (``sample_index``).
        after_training: ``after_training(model)``, run once training is over (e.g. drop training-only caches).
        cost: what training costs relative to simmlm, when that matters for choosing (``simmlm methods`` shows it).
        option_defaults: the builder's options this entry presets (a named variant of another method, e.g. DREAM
            as its paper sets it up); options given in the config still win.
        stage1_in_pretrain: ``pretrain`` starts the model from stage-1 weights (DREAM: its token encoders from its
            scorer's experts), so a method without per-modality experts trains for stage 2's epochs only, like
            the expert mixtures, instead of both stages' total.
        protocol: how the method trains, as a clause of a benchmark's protocol text; ``None`` for the expert
            mixtures, whose two stages the text describes once for all of them. A preset's clause (an entry with
            ``option_defaults``) is a note that its base method's clause takes in its ``{presets}`` slot when the
            benchmark runs the preset (:func:`protocol_clauses`).
        smoke_options: small ``model.method_options`` that keep a test run of the method quick.
    """

    name: str
    builder: Callable[..., nn.Module]
    description: str
    train_defaults: dict[str, Any] = field(default_factory=dict)
    gate: bool = False
    options: type[BaseModel] | None = None
    pretrain: Callable[[nn.Module, TrainMethod, Any], dict[str, Any]] | None = None
    needs_sample_index: bool = False
    after_training: Callable[[nn.Module], None] | None = None
    cost: str = ""
    option_defaults: dict[str, Any] = field(default_factory=dict)
    stage1_in_pretrain: bool = False
    protocol: str | None = None
    smoke_options: dict[str, Any] = field(default_factory=dict)

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the method when ``options`` are not this method's (unknown or mistyped)."""
        model = self.options or create_model(f"{self.name}_options", __config__=ConfigDict(extra="forbid"))
        try:
            model.model_validate(options)
        except ValidationError as err:
            problems = "; ".join(_problem(e, list(model.model_fields)) for e in err.errors())
            known = ", ".join(model.model_fields) or "none"
            raise ValueError(f"method_options of {self.name!r}: {problems} (its options: {known})") from None


def _problem(error: Any, known: list[str]) -> str:
    """One validation error of a method's options as text; an unknown option gets the nearest known ones."""
    where = ".".join(map(str, error["loc"]))
    if error["type"] != "extra_forbidden":
        return f"{where}: {error['msg']}"
    close = difflib.get_close_matches(str(error["loc"][-1]), known, n=2)
    return f"unknown option {where}" + (f" (did you mean {' or '.join(close)}?)" if close else "")


_REGISTRY: dict[str, MethodEntry] = {}


def _options_model(name: str, builder: Callable[..., nn.Module]) -> type[BaseModel]:
    """A strict pydantic model of the builder's own keyword options (types and defaults from its signature)."""
    hints = typing.get_type_hints(builder)
    fields: dict[str, Any] = {
        arg: (hints.get(arg, Any), param.default)
        for arg, param in inspect.signature(builder).parameters.items()
        if arg not in COMMON_ARGS + GATE_ARGS and param.kind is not inspect.Parameter.VAR_KEYWORD
    }
    return create_model(f"{name}_options", __config__=ConfigDict(extra="forbid"), **fields)


def register_method(
    name: str,
    builder: Callable[..., nn.Module],
    description: str,
    *,
    pretrain: Callable[[nn.Module, TrainMethod, Any], dict[str, Any]] | None = None,
    needs_sample_index: bool = False,
    after_training: Callable[[nn.Module], None] | None = None,
    cost: str = "",
    option_defaults: dict[str, Any] | None = None,
    stage1_in_pretrain: bool = False,
    train_defaults: Mapping[str, Any] | None = None,
    protocol: str | None = None,
    smoke_options: Mapping[str, Any] | None = None,
) -> None:
    """Add a method to the registry (``train_defaults``: the training settings the method fills where a config
    leaves them open, :data:`METHOD_TRAIN_KEYS`, e.g. ``{"mofe_lambda": 0.1}``; the hooks are described in
    :class:`MethodEntry`)."""
    if name in _REGISTRY:
        raise ValueError(f"method {name!r} is already registered")
    unknown = sorted(set(train_defaults or {}) - METHOD_TRAIN_KEYS)
    if unknown:
        raise ValueError(
            f"method {name!r}: train_defaults {unknown} are not for a method to set; it may set "
            f"{sorted(METHOD_TRAIN_KEYS)}"
        )
    gate = all(arg in inspect.signature(builder).parameters for arg in GATE_ARGS[:3])
    entry = MethodEntry(
        name,
        builder,
        description,
        dict(train_defaults or {}),
        gate,
        _options_model(name, builder),
        pretrain,
        needs_sample_index,
        after_training,
        cost,
        dict(option_defaults or {}),
        stage1_in_pretrain,
        protocol,
        dict(smoke_options or {}),
    )
    entry.check_options(entry.smoke_options)  # a misspelt smoke option fails here, not in a test run
    _REGISTRY[name] = entry


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def expert_mixtures() -> list[str]:
    """The registered methods that train as expert mixtures in two stages (no ``protocol`` clause of their own), in
    registration order."""
    return [e.name for e in _REGISTRY.values() if e.protocol is None]


def protocol_clauses(methods: Sequence[str]) -> list[str]:
    """The protocol clauses of every registered method that is not an expert mixture, each with the notes of its
    presets that ``methods`` runs; methods that build on another's run (a ``pretrain`` hook) come last."""
    bases = [e for e in _REGISTRY.values() if e.protocol is not None and not e.option_defaults]
    clauses = []
    for entry in sorted(bases, key=lambda e: e.pretrain is not None):
        presets = [
            e for e in _REGISTRY.values() if e.option_defaults and e.builder is entry.builder and e.name in methods
        ]
        clauses.append(entry.protocol.format(presets="".join(f"; {e.protocol}" for e in presets)))  # type: ignore[union-attr]
    return clauses


def get_method(name: str) -> MethodEntry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    return _REGISTRY[name]


def create_method(name: str, **cfg: Any) -> nn.Module:
    """Build a registered method, e.g. ``create_method("simmlm", input_shapes=..., num_classes=10)``; gate options
    are dropped for methods without a gate (and ``gate_on`` for gated methods whose builder does not take it)."""
    entry = get_method(name)
    takes = inspect.signature(entry.builder).parameters
    cfg = {k: v for k, v in cfg.items() if k not in GATE_ARGS or (entry.gate and k in takes)}
    return entry.builder(**{**entry.option_defaults, **cfg})
