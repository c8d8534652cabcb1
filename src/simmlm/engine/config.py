"""Run configuration (pydantic): unknown keys and wrong types are errors, not silently ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from simmlm.data.augment import AugmentSpec
from simmlm.data.brats import BRATS2018_FILES


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BratsConfig(StrictModel):
    """BraTS-style NIfTI cases (``simmlm.data.brats``): file names, labels, resolution, crops, sliding window."""

    subdir: str | None = Field(None, description="folder under data_dir holding the split folders (None: data_dir)")
    splits: dict[str, str] = Field(
        default_factory=lambda: {"train": "train", "val": "validation", "test": "test"},
        description="split -> sub-folder of case folders",
    )
    modalities: dict[str, str] = Field(
        default_factory=lambda: dict(BRATS2018_FILES),
        description="modality -> file name pattern ({case} = the case folder's name), in modality order",
    )
    label: str = "{case}_seg.nii.gz"
    brain_mask: str | None = Field(None, description="brain mask file pattern (None: voxels where any sequence != 0)")
    label_convention: Literal["brats2015", "brats2018"] = "brats2018"
    allow_missing: bool = Field(False, description="a missing sequence file marks the modality missing, not an error")
    downsample: int = Field(1, ge=1, description="average-pool volumes by this factor (CPU work)")
    crop_size: tuple[int, int, int] = (128, 128, 128)
    crops_per_epoch: int = Field(250, ge=1, description="random training crops per epoch")
    pos_fraction: float = Field(0.5, ge=0, le=1, description="share of crops centred on tumour (else on brain)")
    flip: bool = True
    overlap: float = Field(0.5, ge=0, lt=1, description="sliding-window overlap at inference")

    @field_validator("splits")
    @classmethod
    def _three_splits(cls, splits: dict[str, str]) -> dict[str, str]:
        if set(splits) != {"train", "val", "test"}:
            raise ValueError(f"splits must map exactly train, val and test to folders, got {sorted(splits)}")
        return splits


class DataConfig(StrictModel):
    """Which dataset and how it is split and scaled."""

    dataset: Literal["avmnist", "brats", "folder"] = "avmnist"
    data_dir: Path | None = Field(None, description="default: $SIMMLM_DATA_DIR, then ../shared/data")
    val_fraction: float = Field(0.15, gt=0, lt=1)
    audio_scaling: Literal["standardize", "minmax"] = "standardize"
    audio_frontend: Literal["literature", "antialiased"] = Field(
        "literature", description="avMNIST MFCC front end (README: literature = what the published numbers use)"
    )
    mfcc_rate: float | None = Field(None, gt=0, description="avMNIST: rate told to the MFCC (None: the front end's)")
    mfcc_pad: Literal["reflect", "constant"] | None = Field(None, description="avMNIST: STFT frame padding")
    val_split: Literal["stratified", "recording_index"] = "stratified"
    brats: BratsConfig = BratsConfig()
    # folder datasets (simmlm.data.folder): your own data; the options above are avMNIST's
    manifest: str = Field("manifest.csv", description="folder: the manifest's file name inside data_dir")
    standardize: bool = Field(True, description="folder: standardise each modality with training statistics")
    num_classes: int | None = Field(None, ge=2, description="folder: number of classes (default: from the labels)")


class ModelConfig(StrictModel):
    """Architecture options passed to the method's builder."""

    expert: str | dict[str, str] = Field(
        "auto",
        description="expert kind (auto: lenet for square [C, S, S] inputs, S >= 12, else mlp), or one per modality",
    )
    expert_options: dict[str, Any] = Field(default_factory=dict)
    gate_width: int = Field(8, ge=1)
    gate_hidden: int = Field(32, ge=1)
    gate_channels: int | None = Field(None, ge=1, description="K gates per modality (None: one per modality)")
    method_options: dict[str, Any] = Field(
        default_factory=dict, description="extra options of the method's builder, e.g. mmp: {dim: 32, heads: 4}"
    )


class StageConfig(StrictModel):
    """One training stage (Adam)."""

    epochs: int = Field(ge=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class TrainConfig(StrictModel):
    """Two-stage training: stage 1 trains each expert alone, stage 2 experts + gate with eq. 4."""

    seed: int = 0
    batch_size: int = Field(64, ge=1)
    stage1: StageConfig = StageConfig(epochs=40)
    stage2: StageConfig = StageConfig(epochs=30)
    mofe_lambda: float | None = Field(None, ge=0, description="None: the method's default (simmlm 0.1, dmome 0)")
    mofe_views: Literal["shared", "independent"] = Field(
        "shared", description="x+ and x- from one augmented view, or two independently augmented views"
    )
    augment: dict[str, AugmentSpec] = Field(default_factory=dict)
    accelerator: str = "auto"
    devices: int | Literal["auto"] = Field(1, description="devices per node (Lightning's `devices`)")
    strategy: str = Field("auto", description='Lightning strategy, e.g. "ddp", "ddp_spawn" (README: multiple GPUs)')
    num_nodes: int = Field(1, ge=1)


class RunConfig(StrictModel):
    """Everything that defines one training run."""

    method: str = "simmlm"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config (or the defaults) and apply dotted-key ``overrides``, e.g. ``{"train.seed": 1}``."""
    raw: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        raw = yaml.safe_load(text) or {}
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
    return RunConfig.model_validate(raw)
