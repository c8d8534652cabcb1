"""Run configuration (pydantic): unknown keys and wrong types are errors, not silently ignored."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from simmlm.data.augment import AugmentSpec
from simmlm.datasets import DataSection, list_datasets
from simmlm.datasets.avmnist import AvmnistData
from simmlm.datasets.registry import PACKAGED_CONFIGS, StrictModel, packaged_configs, sealed_specs
from simmlm.fileio import not_a_file, read_yaml
from simmlm.nn.experts import EXPERT_KINDS


def _dataset_of(value: Any) -> str:
    """The tag of a data section: its ``dataset`` (avMNIST when left out)."""
    return str(value.get("dataset", "avmnist") if isinstance(value, dict) else getattr(value, "dataset", "avmnist"))


#: Which dataset and its own options: the ``dataset`` key picks the section of a registered dataset
#: (:mod:`simmlm.datasets`; an option of another one is an error).
if TYPE_CHECKING:
    DataConfig = DataSection
else:
    DataConfig = Annotated[
        Union[tuple(Annotated[spec.config, Tag(spec.name)] for spec in sealed_specs())],  # noqa: UP007
        Discriminator(_dataset_of),
    ]
NonNegative = Annotated[float, Field(ge=0)]


class ModelConfig(StrictModel):
    """Architecture options passed to the method's builder."""

    expert: str | dict[str, str] = Field(
        "auto",
        description="expert kind (auto: lenet for square [C, S, S] inputs, S >= 12, gru for [T, D] sequences, else "
        "mlp), or one per modality",
    )
    expert_options: dict[str, Any] = Field(default_factory=dict)
    # the gate of simmlm / dmome (and of dream's scorer); methods without a gate do not use these
    gate_width: int = Field(8, ge=1)
    gate_hidden: int = Field(32, ge=1)
    gate_channels: int | None = Field(None, ge=1, description="K gates per modality (None: one per modality)")
    gate_on: Literal["inputs", "features"] = Field(
        "inputs",
        description="simmlm/dmome: the gate reads the inputs "
        "or the experts' last hidden features (experts with features: mlp)",
    )
    method_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the method's own options, e.g. mmp: {dim: 32, heads: 4}; checked against the method's builder",
    )

    @field_validator("expert")
    @classmethod
    def _known_kinds(cls, expert: str | dict[str, str]) -> str | dict[str, str]:
        unknown = sorted(({expert} if isinstance(expert, str) else set(expert.values())) - set(EXPERT_KINDS))
        if unknown:
            choices = ", ".join(EXPERT_KINDS)
            raise ValueError(f"unknown expert kind {', '.join(map(repr, unknown))}; choose one of {choices}")
        return expert


class StageConfig(StrictModel):
    """One training stage (Adam)."""

    epochs: int = Field(ge=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    expert_lr_scale: float = Field(1.0, gt=0, description="stage 2: the experts learn at lr × this, the rest at lr")
    augment: dict[str, AugmentSpec] | None = Field(
        None,
        description="this stage's augmentation per modality, instead of train.augment (None: train.augment), e.g. "
        "stage 2 with kind: corrupt so the gate sees degraded inputs marked present",
    )


STAGES = ("stage1", "stage2")


def stage_augment(train: TrainConfig, stage: str) -> dict[str, AugmentSpec]:
    """The augmentation of one stage: its own (``train.<stage>.augment``), else ``train.augment``."""
    own = getattr(train, stage).augment
    return train.augment if own is None else own


class TrainConfig(StrictModel):
    """Two-stage training: stage 1 trains each expert alone, stage 2 experts + gate with eq. 4."""

    seed: int = Field(0, ge=0, lt=2**32, description="seed of the run (0 to 2**32 - 1)")
    batch_size: int = Field(64, ge=1)
    stage1: StageConfig = StageConfig(epochs=40)
    stage2: StageConfig = StageConfig(epochs=30)
    mofe_lambda: float | None = Field(None, ge=0, description="None: the method's default (simmlm 0.1, dmome 0)")
    mofe_views: Literal["shared", "independent"] = Field("shared", description="x+ and x-: one view, or two views")
    augment: dict[str, AugmentSpec] = Field(default_factory=dict)
    gate_init: Literal["default", "uniform"] = Field(
        "default", description="stage 2 starts the gate at PyTorch's init, or at uniform weights (zeroed output layer)"
    )
    pairs_per_sample: int = Field(
        1, ge=1, description="stage 2 draws this many nested pairs per sample and averages eq. 4 over them"
    )
    min_steps: int = Field(
        0,
        ge=0,
        description="every stage makes at least this many optimiser steps: small datasets get more epochs than "
        "stage1/stage2 say (0: the epochs as given)",
    )
    gate_shrinkage: NonNegative | Annotated[list[NonNegative], Field(min_length=1)] = Field(
        0.0,
        description="stage 2's weight of KL(gate || uniform) (docs/results/multiview.md); a list: chosen on validation",
    )
    precision: Literal["32", "bf16-mixed", "16-mixed"] = Field(
        "32",
        description="training arithmetic (Lightning's): 32-bit, or mixed with bfloat16 (CPU, recent GPUs) or float16 "
        "(CUDA only, with loss scaling); validation and test always run in 32-bit",
    )
    channels_last: bool = Field(
        False,
        description="convolution weights in channels-last layout (2-D and 3-D): faster 3-D U-Net steps with oneDNN on "
        "the CPU (docs/concepts/performance.md); other roundings, so off by default",
    )
    accelerator: str = "auto"
    devices: int | Literal["auto"] = Field(1, description="devices per node (Lightning's `devices`)")
    strategy: str = Field(
        "auto", description='Lightning strategy, e.g. "ddp", "ddp_spawn" (docs/tutorials/resume-and-gpus.md)'
    )
    num_nodes: int = Field(1, ge=1)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        """``precision: 32`` in YAML (or ``--set train.precision=32``) is a number: the same as ``"32"``."""
        return "32" if value == 32 and not isinstance(value, bool) else value


class RunConfig(StrictModel):
    """Everything that defines one training run."""

    method: str = "simmlm"
    data: DataConfig = AvmnistData()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _method_and_its_options(self) -> RunConfig:
        """The method exists and ``model.method_options`` are its own (checked at load time, not at build time)."""
        from simmlm.methods import get_method

        get_method(self.method).check_options(self.model.method_options)
        return self


class ConfigError(ValueError):
    """A run config that does not validate, explained key by key (unknown keys with a "did you mean")."""


def _config_keys(model: type[BaseModel], loc: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a config model as pydantic locates it (a dataset section's tag included)."""
    keys: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        keys.append((*loc, name))
        members = typing.get_args(info.annotation) or (info.annotation,)
        for member in members:
            tag = next((m.tag for m in typing.get_args(member)[1:] if isinstance(m, Tag)), None)
            inner = typing.get_args(member)[0] if tag is not None else member
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                keys += _config_keys(inner, (*loc, name, tag) if tag is not None else (*loc, name))
    return keys


def explain_config_error(err: ValidationError) -> str:
    """One line per problem, keys dotted as in YAML; an unknown key gets the nearest known ones."""
    known = _config_keys(RunConfig)
    tags = list_datasets()

    def dotted(loc: Sequence[Any]) -> str:
        return ".".join(str(part) for part in loc if part not in tags)

    lines = []
    for error in err.errors():
        loc = tuple(str(part) for part in error["loc"])
        where = dotted(loc) or "config"
        if error["type"] == "extra_forbidden":
            siblings = [k[-1] for k in known if k[:-1] == loc[:-1]]
            close = [dotted((*loc[:-1], name)) for name in difflib.get_close_matches(loc[-1], siblings, n=3)]
            if not close:  # the same name elsewhere, e.g. train.epochs -> train.stage1.epochs
                leaves = difflib.get_close_matches(loc[-1], sorted({k[-1] for k in known}), n=2, cutoff=0.8)
                close = [dotted(k) for k in known if k[-1] in leaves][:4]
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            options = ", ".join(siblings)
            lines.append(f"unknown key {where}{hint}; the keys here are: {options}")
        elif error["type"] == "union_tag_invalid":
            lines.append(f"{where}.dataset: unknown dataset {error['ctx']['tag']!r}; choose one of {', '.join(tags)}")
        elif error["type"] == "value_error":  # our own validators: the message says it all
            lines.append(f"{where}: {error['ctx']['error']}" if loc else str(error["ctx"]["error"]))
        else:
            got = "" if isinstance(error.get("input"), dict) else f" (got {error['input']!r})"
            lines.append(f"{where}: {error['msg']}{got}")
    return "invalid run config: " + "; ".join(lines)


def find_config(config: str | Path) -> Path:
    """A config file: ``config`` itself when it is a file, else the packaged config of that name (``folder``)."""
    path = Path(config)
    if path.is_file():
        return path
    packaged = PACKAGED_CONFIGS / f"{path.stem}.yaml"
    if path.name == str(config) and packaged.is_file():
        return packaged
    if path.exists():  # a folder, a pipe: say so rather than "not found"
        raise ValueError(f"config {not_a_file(path)}")
    raise FileNotFoundError(
        f"config {str(config)!r} not found: give a YAML file, or one of simmlm's own: {', '.join(packaged_configs())}"
    )


def default_config(dataset: str) -> Path | None:
    """The packaged config of ``dataset`` (``benchmark``/``data`` use it when no ``--config`` is given), if any."""
    packaged = PACKAGED_CONFIGS / f"{dataset}.yaml"
    return packaged if packaged.is_file() else None


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config (a file, or a packaged config's name; ``None``: the library defaults) and apply
    dotted-key ``overrides``, e.g. ``{"train.seed": 1}``.

    Raises :class:`ConfigError` (a ``ValueError``) naming every bad key or value.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = find_config(path)
        raw = read_yaml(path) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a run config must be a YAML mapping")
    for key, value in (overrides or {}).items():
        node = raw
        *parents, leaf = key.split(".")
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parents[: depth + 1])
                raise ValueError(f"cannot set {key!r}: {where!r} is {child!r}, not a mapping")
            node = child
        node[leaf] = value
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(explain_config_error(err)) from None


def resolve_config(cfg: RunConfig) -> RunConfig:
    """Fill what the method defines (e.g. its MoFe lambda) where the config left it open."""
    from simmlm.methods import get_method

    entry = get_method(cfg.method)
    train = cfg.train.model_copy(
        update={k: v for k, v in entry.train_defaults.items() if getattr(cfg.train, k) is None}
    )
    if train.mofe_lambda is None:
        train = train.model_copy(update={"mofe_lambda": 0.0})
    return cfg.model_copy(update={"train": train})


# Settings that may change between an interrupted run and its resume (where it runs, not what it computes).
PLACEMENT_KEYS = ("accelerator", "devices", "strategy", "num_nodes")


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys in which two dumped run configs differ, ignoring where the run executes and reads its data."""
    import json

    saved, current = (_with_defaults(json.loads(json.dumps(c))) for c in (saved, current))
    for cfg in (saved, current):
        for key in PLACEMENT_KEYS:
            cfg.get("train", {}).pop(key, None)
        cfg.get("data", {}).pop("data_dir", None)
    return sorted(_diff(saved, current))


def _with_defaults(dumped: dict[str, Any]) -> dict[str, Any]:
    """A dumped config with the settings a newer simmlm added filled in at their defaults (as the run had them)."""
    try:
        return RunConfig.model_validate(dumped).model_dump(mode="json")
    except ValidationError:
        return dumped


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]
