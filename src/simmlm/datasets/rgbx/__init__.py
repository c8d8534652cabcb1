"""Aligned images of several modalities with a class per pixel (RGB-X semantic segmentation: MCubeS, NYUDv2, FMB);
loader in :mod:`simmlm.datasets.rgbx.loader`, example scenes in :mod:`simmlm.datasets.rgbx.synthetic`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from simmlm.datasets.registry import DATA_DIR_FIELD, DataSection, DatasetSpec, Example, register_dataset

if TYPE_CHECKING:
    from simmlm.data.base import Splits
    from simmlm.engine.tasks import Task


class RgbxData(DataSection):
    """A folder of aligned per-modality images (PNG or NPY, any number of modalities and channels) and a label map
    per sample (``simmlm.datasets.rgbx.loader``)."""

    dataset: Literal["rgbx"] = "rgbx"
    data_dir: Path | None = DATA_DIR_FIELD
    modalities: list[str] | None = Field(None, description="None: the files of the first training sample")
    classes: list[str] | None = Field(None, description="None: classes.txt in data_dir, else 0..the largest label")
    ignore_index: int | None = Field(255, description="label of pixels that count nowhere (None: every pixel counts)")


def load(data: RgbxData) -> Splits:
    from simmlm.datasets.rgbx.loader import load_rgbx
    from simmlm.engine.tasks import resolve_data_dir

    return load_rgbx(resolve_data_dir(data.data_dir), data.modalities, data.classes, data.ignore_index)


def task(data: RgbxData) -> Task:
    from simmlm.datasets.rgbx.loader import read_input
    from simmlm.engine.semantic import SemanticSegmentationTask

    return SemanticSegmentationTask(data, load, read_input, data.ignore_index)


def example(directory: Path) -> Example:
    """Scenes where depth tells apart two kinds of object that look alike in RGB
    (:func:`~simmlm.datasets.rgbx.synthetic.write_example_scenes`)."""
    from simmlm.datasets.rgbx.synthetic import write_example_scenes

    write_example_scenes(directory, {"train": 48, "val": 16, "test": 16}, seed=0)
    sample = directory / "test" / "0001"
    inputs: dict[str, Path | str] = {p.stem: p for p in sorted(sample.iterdir()) if p.stem != "label"}
    return Example(inputs=inputs, config={"model.gate_channels": 3}, output="labels.png")


SPEC = register_dataset(
    DatasetSpec(
        name="rgbx",
        config=RgbxData,
        task=task,
        summary="aligned images of several modalities with a class per pixel (RGB-X segmentation)",
        folder="train/, val/, test/: one folder per sample with MODALITY.png|npy files and label.png|npy",
        kind="segmentation",
        example=example,
    )
)
