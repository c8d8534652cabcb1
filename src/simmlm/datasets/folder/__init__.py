"""Your own data: a folder with a CSV manifest and one array file per sample and modality, missing modalities
allowed in every split; loader and ``simmlm predict``'s reader in :mod:`simmlm.datasets.folder.loader`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from simmlm.data.specs import WithScenario
from simmlm.datasets.registry import (
    DATA_DIR_FIELD,
    DataSection,
    DatasetSpec,
    Example,
    classification_task,
    register_dataset,
)

if TYPE_CHECKING:
    from torch import Tensor

    from simmlm.data.base import Splits


class FolderData(DataSection, WithScenario):
    """Your own data: a folder with a CSV manifest (``simmlm.datasets.folder.loader``)."""

    dataset: Literal["folder"] = "folder"
    data_dir: Path | None = DATA_DIR_FIELD
    manifest: str = Field("manifest.csv", description="the manifest's file name inside data_dir")
    standardize: bool = Field(True, description="standardise each modality with training statistics")
    num_classes: int | None = Field(None, ge=2, description="number of classes (default: from the labels)")
    sequences: list[str] = Field(
        default_factory=list,
        description="modalities whose 2-D arrays are [T, D] feature sequences (frames x features), for the sequence "
        "experts; other 2-D arrays are one-channel images",
    )
    outside_paths: bool = Field(False, description="read manifest paths that lead outside data_dir (e.g. symlinks)")


def load(data: FolderData) -> Splits:
    from simmlm.datasets.folder.loader import load_folder
    from simmlm.engine.tasks import resolve_data_dir

    root = resolve_data_dir(data.data_dir)
    return load_folder(root, data.manifest, data.standardize, data.num_classes, data.sequences, data.outside_paths)


def read(name: str, path: Path, preprocessing: dict[str, Any]) -> Tensor:
    from simmlm.datasets.folder.loader import read_input

    return read_input(name, path, preprocessing)


def example(directory: Path) -> Example:
    """Three modalities, four classes, a quarter of the modalities missing
    (:func:`~simmlm.datasets.folder.synthetic.write_example_dataset`)."""
    import csv

    from simmlm.datasets.folder.synthetic import write_example_dataset

    write_example_dataset(directory, num_samples=120, seed=0)
    with (directory / "manifest.csv").open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["split"] == "test")
    inputs: dict[str, Path | str] = {
        k: directory / v for k, v in row.items() if k not in ("sample_id", "label", "split") and v
    }
    return Example(inputs=inputs)


SPEC = register_dataset(
    DatasetSpec(
        name="folder",
        config=FolderData,
        task=classification_task(load, read),
        summary="your own data: a CSV manifest and arrays",
        folder="your manifest.csv and arrays (`simmlm example-data` writes one)",
        example=example,
        named_by_folder=True,
    )
)
