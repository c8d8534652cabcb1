"""BraTS-style 3D MRI segmentation from NIfTI case folders (whole tumour, tumour core, enhancing tumour): the file
layout and the ``data:`` section here (no torch); loader, labels and crops in :mod:`simmlm.datasets.brats.loader`, the
preprocessing cache in :mod:`simmlm.datasets.brats.volume_cache`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from simmlm.datasets.registry import DATA_DIR_FIELD, DataSection, DatasetSpec, Example, register_dataset

if TYPE_CHECKING:
    from simmlm.engine.tasks import Task

BRATS2018_FILES = {name: f"{{case}}_{name}.nii.gz" for name in ("flair", "t1", "t1ce", "t2")}  # 2018-2021 names


class NiftiLayout(BaseModel):
    """File names of one case (``{case}`` = the case folder's name) and the label convention.

    Attributes:
        modalities: modality name -> file name pattern, in the modality order of the dataset.
        label: label map file name pattern.
        brain_mask: brain mask file pattern, or ``None`` to use the voxels where any sequence is non-zero
            (skull-stripped BraTS data has exact zeros outside the brain).
        label_convention: ``"brats2015"`` or ``"brats2018"`` (see :mod:`simmlm.datasets.brats.loader`).
        allow_missing: a case folder without some modality's file is loaded with that modality marked missing
            (mask ``False``) instead of raising. The label file is always required.
    """

    model_config = ConfigDict(extra="forbid")
    modalities: dict[str, str] = Field(
        default_factory=lambda: dict(BRATS2018_FILES),
        description="modality -> file name pattern ({case} = the case folder's name), in modality order",
    )
    label: str = "{case}_seg.nii.gz"
    brain_mask: str | None = Field(None, description="brain mask file pattern (None: voxels where any sequence != 0)")
    label_convention: Literal["brats2015", "brats2018"] = "brats2018"
    allow_missing: bool = Field(False, description="a missing sequence file marks the modality missing, not an error")

    @field_validator("modalities")
    @classmethod
    def _some_modality(cls, modalities: dict[str, str]) -> dict[str, str]:
        if len(modalities) < 1:
            raise ValueError("a NIfTI layout needs at least one modality file")
        return modalities


class BratsConfig(NiftiLayout):
    """BraTS-style NIfTI cases (``simmlm.datasets.brats.loader``): the file layout (:class:`NiftiLayout`'s
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
    """BraTS-style NIfTI cases (``simmlm.datasets.brats.loader``), options under ``brats``."""

    dataset: Literal["brats"] = "brats"
    data_dir: Path | None = DATA_DIR_FIELD
    brats: BratsConfig = BratsConfig()


def task(data: BratsData) -> Task:
    from simmlm.engine.tasks import SegmentationTask

    return SegmentationTask(data)


def example(directory: Path) -> Example:
    """Four small cases in the BraTS 2018 layout (train 2, validation 1, test 1): four sequences brighter inside a
    tumour of labels 1, 2 and 4, zero outside a box of brain; a small 3-D U-Net."""
    import nibabel as nib
    import numpy as np

    layout, shape = NiftiLayout(), (20, 18, 16)
    for split, seeds in (("train", (0, 1)), ("validation", (2,)), ("test", (3,))):
        for seed in seeds:
            rng, case = np.random.default_rng(seed), directory / split / f"case{seed}"
            case.mkdir(parents=True)
            labels = np.zeros(shape, dtype=np.float32)
            labels[6:14, 5:13, 4:12] = rng.choice((1, 2, 4), size=(8, 8, 8))
            brain = np.zeros(shape, dtype=np.float32)
            brain[2:18, 2:16, 2:14] = 1
            for m, pattern in enumerate(layout.modalities.values()):
                volume = (rng.normal(size=shape) + (m + 1) * (labels > 0)) * brain
                nib.save(
                    nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(case / pattern.format(case=case.name))
                )
            nib.save(nib.Nifti1Image(labels, np.eye(4)), str(case / layout.label.format(case=case.name)))
    test = directory / "test" / "case3"
    return Example(
        data={"brats": {"crop_size": [16, 16, 16], "crops_per_epoch": 2}},
        inputs={name: test / pattern.format(case="case3") for name, pattern in layout.modalities.items()},
        config={"model.expert_options": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
        output="seg.nii.gz",
    )


SPEC = register_dataset(
    DatasetSpec(
        name="brats",
        config=BratsData,
        task=task,
        summary="3D brain-tumour segmentation from NIfTI cases",
        folder="train/, validation/ and test/ folders of NIfTI case folders",
        kind="segmentation",
        example=example,
    )
)
