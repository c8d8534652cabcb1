"""The dataset registry: one :class:`DatasetSpec` per dataset, registered by the dataset's own module.

A spec says everything the rest of simmlm needs to know about a dataset: its ``data:`` config section, its task
(how its splits load, how it trains and is evaluated), what its data folder holds, its kind, and optionally how
to download its raw files and how to write a small example of it. The config's ``data`` union, the command-line
help texts and the dataset lists of the docs are built from here, so adding a dataset is one module that calls
:func:`register_dataset` plus one import line in :mod:`simmlm.datasets`.

This module and the dataset modules import no torch at module level (``simmlm --help`` lists the datasets
without loading it): a spec's callables import their loaders on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from torch import Tensor

    from simmlm.data.base import Splits
    from simmlm.engine.tasks import Task

Kind = Literal["classification", "segmentation"]

#: The run configs shipped with the package (``avmnist``, ``folder``, ...; also ``configs/`` in the repository): a
#: dataset's own is named after it.
PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"

#: ``data.data_dir`` of every dataset section.
DATA_DIR_FIELD = Field(None, description="default: $SIMMLM_DATA_DIR, then ../shared/data")


class StrictModel(BaseModel):
    """A config section whose unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class DataSection(StrictModel):
    """What every ``data:`` section has: the dataset's name (its registry key) and its folder."""

    dataset: str
    data_dir: Path | None = DATA_DIR_FIELD


@dataclass(frozen=True)
class Example:
    """A small dataset that a spec's example writer wrote, and how to use it.

    Attributes:
        data: the ``data`` keys that read it, besides ``dataset`` and ``data_dir``.
        inputs: one sample's files (or texts) for ``simmlm predict``, by modality; ``None`` when the dataset has no
            single-file reader.
        config: other config keys a run on it needs (``model.expert_options`` of a volume expert, ...).
        output: the file name ``simmlm predict --output`` writes for this dataset (a label map), if it writes one.
    """

    data: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Path | str] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    output: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as simmlm knows it.

    Attributes:
        name: the registry key, ``data.dataset`` in a config and the ``DATASET`` argument of the commands.
        config: its ``data:`` section, a :class:`DataSection` whose ``dataset`` field is ``Literal[name]``.
        task: the task (:class:`simmlm.engine.tasks.Task`) for a section of this dataset.
        summary: one line on what it is (help texts, the docs' list).
        folder: what its data folder (``--data-dir``) holds.
        kind: ``classification`` or ``segmentation`` (``simmlm robustness`` takes classification datasets).
        download: fetches its raw files into a folder (``simmlm download NAME``), if they have a public home:
            called as ``download(data_dir, **options)``, returns what ``simmlm download`` prints.
        example: writes a small learnable dataset of this kind into a new folder and says how to use it
            (:class:`Example`); the contract test of every dataset trains, predicts and reports on it.
        named_by_folder: the default output folder is named after the data folder (own data: two folders never
            share one output folder), not after the dataset.
    """

    name: str
    config: type[DataSection]
    task: Callable[[Any], Task]
    summary: str
    folder: str
    kind: Kind = "classification"
    download: Callable[..., Any] | None = None
    example: Callable[[Path], Example] | None = None
    named_by_folder: bool = False


def classification_task(
    load: Callable[[Any], Splits], read: Callable[[str, Any, dict[str, Any]], Tensor] | None = None
) -> Callable[[Any], Task]:
    """The ``task`` of a classification dataset: its splits from ``load(section)``, one file of one modality for
    ``simmlm predict`` from ``read`` (none: predict reads no single files for it)."""

    def task(data: Any) -> Task:
        from simmlm.engine.tasks import ClassificationTask

        return ClassificationTask(data, load, read)

    return task


_REGISTRY: dict[str, DatasetSpec] = {}
_SEALED = False  # set once the config's data union is built from the registry (:func:`sealed_specs`)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry (once per name; its section's ``dataset`` must be its name)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is registered already")
    if not issubclass(spec.config, DataSection):
        raise TypeError(f"dataset {spec.name!r}: its config must be a DataSection, got {spec.config.__name__}")
    tag = spec.config.model_fields["dataset"].default
    if tag != spec.name:
        raise ValueError(f"dataset {spec.name!r}: its config's dataset field defaults to {tag!r}, not to its name")
    if _SEALED:
        raise RuntimeError(
            f"dataset {spec.name!r} registers after simmlm.engine.config was imported, so run configs would not know "
            "it: import the module that registers it first (importing simmlm.datasets is light)"
        )
    _REGISTRY[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; a ``ValueError`` naming the registered ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def list_datasets(kind: Kind | None = None, downloadable: bool = False) -> list[str]:
    """Registered dataset names in registration order, of one ``kind`` or with a downloader when asked."""
    return [
        name
        for name, spec in _REGISTRY.items()
        if (kind is None or spec.kind == kind) and (not downloadable or spec.download is not None)
    ]


def dataset_specs() -> list[DatasetSpec]:
    """Every registered spec, in registration order."""
    return list(_REGISTRY.values())


def sealed_specs() -> list[DatasetSpec]:
    """Every registered spec, for building the config's ``data`` union (``simmlm.engine.config`` does, once): a
    dataset registering later would be unknown to run configs, so :func:`register_dataset` refuses it from now on."""
    global _SEALED
    _SEALED = True
    return dataset_specs()


def datasets_help(kind: Kind | None = None, downloadable: bool = False) -> str:
    """``"avmnist (…), folder (…)"``: names with their summaries, for help texts."""
    return "; ".join(f"{n} ({_REGISTRY[n].summary})" for n in list_datasets(kind, downloadable))


def folders_help() -> str:
    """What ``--data-dir`` holds for each dataset, for its help text."""
    return "; ".join(f"{spec.name}: {spec.folder}" for spec in _REGISTRY.values())


def packaged_configs() -> list[str]:
    """Names of the configs shipped with simmlm (usable as ``--config NAME``)."""
    return sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))
