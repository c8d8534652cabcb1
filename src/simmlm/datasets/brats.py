"""BraTS-style 3D MRI segmentation from NIfTI case folders (whole tumour, tumour core, enhancing tumour); loader,
labels and crops in :mod:`simmlm.data.brats`, the preprocessing cache in :mod:`simmlm.data.volume_cache`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from simmlm.data.specs import NiftiLayout
from simmlm.datasets.registry import DATA_DIR_FIELD, DataSection, DatasetSpec, register_dataset

if TYPE_CHECKING:
    from simmlm.engine.tasks import Task


class BratsConfig(NiftiLayout):
    """BraTS-style NIfTI cases (``simmlm.data.brats``): the file layout (:class:`~simmlm.data.specs.NiftiLayout`'s
    fields: ``modalities``, ``label``, ``brain_mask``, ``label_convention``, ``allow_missing``), where the splits
    are, resolution, crops and the sliding window."""

    subdir: str | None = Field(None, description="folder under data_dir holding the split folders (None: data_dir)")
    splits: dict[str, str] = Field(
        default_factory=lambda: {"train": "train", "val": "validation", "test": "test"},
        description="split -> sub-folder of case folders",
    )
    downsample: int = Field(1, ge=1, description="average-pool volumes by this factor (CPU work)")
    crop_size: tuple[int, int, int] = (128, 128, 128)
    crops_per_epoch: int = Field(250, ge=1, description="random training crops per epoch")
    pos_fraction: float = Field(0.5, ge=0, le=1, description="share of crops centred on tumour (else on brain)")
    flip: bool = True
    overlap: float = Field(0.5, ge=0, lt=1, description="sliding-window overlap at inference")
    cache: bool = Field(
        True, description="preprocess each case once into the cache folder and read it from there one case at a time"
    )
    workers: int = Field(0, ge=0, description="processes building the cache and loading training crops (0: this one)")

    @field_validator("splits")
    @classmethod
    def _three_splits(cls, splits: dict[str, str]) -> dict[str, str]:
        if set(splits) != {"train", "val", "test"}:
            raise ValueError(f"splits must map exactly train, val and test to folders, got {sorted(splits)}")
        return splits


class BratsData(DataSection):
    """BraTS-style NIfTI cases (``simmlm.data.brats``), options under ``brats``."""

    dataset: Literal["brats"] = "brats"
    data_dir: Path | None = DATA_DIR_FIELD
    brats: BratsConfig = BratsConfig()


def task(data: BratsData) -> Task:
    from simmlm.engine.tasks import SegmentationTask

    return SegmentationTask(data)


SPEC = register_dataset(
    DatasetSpec(
        name="brats",
        config=BratsData,
        task=task,
        summary="3D brain-tumour segmentation from NIfTI cases",
        folder="train/, validation/ and test/ folders of NIfTI case folders",
        kind="segmentation",
    )
)
