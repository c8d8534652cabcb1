"""Utterance-level feature sequences (CMU-MOSI / MOSEI) in the MulT / MMSA pickle layout, or its ``.npz``
conversion; loader in :mod:`simmlm.datasets.seqfeatures.loader`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from simmlm.data.specs import FrameMissing, WithScenario
from simmlm.datasets.registry import (
    DATA_DIR_FIELD,
    DataSection,
    DatasetSpec,
    Example,
    register_dataset,
)

if TYPE_CHECKING:
    from torch import Tensor

    from simmlm.data.base import Splits
    from simmlm.engine.tasks import Task


class SeqfeaturesData(DataSection, FrameMissing, WithScenario):
    """Utterance-level feature sequences (CMU-MOSI / MOSEI) in the MulT / MMSA pickle layout
    (``simmlm.datasets.seqfeatures.loader``), with simulated inter- and intra-modal missingness."""

    dataset: Literal["seqfeatures"] = "seqfeatures"
    data_dir: Path | None = DATA_DIR_FIELD
    file: str = Field("mosi_data.pkl", description="the pickle, relative to data_dir (or an absolute path)")
    modalities: list[str] = Field(default_factory=lambda: ["text", "audio", "vision"])
    label_key: str | None = Field(None, description="key of the sentiment score (None: detected)")
    task: Literal["binary", "classes7", "regression", "emotions4"] = Field(
        "binary",
        description="Acc-2 (score > 0), Acc-7 classes, the score itself (L1 loss, MulT's metrics), or IEMOCAP's four "
        "emotions (MulT's labels [N, 4, 2])",
    )
    select_on: Literal["accuracy", "f1"] = Field(
        "accuracy", description="classification: what selects epochs on validation data (f1: weighted F1, DREAM's)"
    )
    missing_rate: float = Field(0.0, ge=0, lt=1, description="inter-modal: per sample and modality drop rate")
    missing_modalities: list[str] | None = Field(None, description="inter-modal: modalities dropped everywhere")
    nan_to_num: bool = Field(True, description="replace non-finite feature values (COVAREP -inf) by 0")
    heterogeneous_missing: float = Field(
        0.0,
        ge=0,
        le=1,
        description="DREAM's A.4 protocol: this share eta of every split's samples affected, 2eta/5 losing "
        "modalities, 2eta/5 frames, eta/5 both (the other missingness settings off)",
    )
    heterogeneous_frames: float = Field(0.5, ge=0, le=1, description="A.4: share of a modality's frames lost")


def load(data: SeqfeaturesData) -> Splits:
    from simmlm.datasets.seqfeatures.loader import load_seqfeatures
    from simmlm.engine.tasks import resolve_data_dir

    path = Path(data.file) if Path(data.file).is_absolute() else resolve_data_dir(data.data_dir) / data.file
    return load_seqfeatures(
        path,
        data.modalities,
        data.label_key,
        data.task,
        data.missing_rate,
        data.missing_modalities,
        data.frame_ratios(),
        data.missing_seed,
        data.nan_to_num,
        data.heterogeneous_missing,
        data.heterogeneous_frames,
    )


def read(name: str, path: Path, preprocessing: dict[str, Any]) -> Tensor:
    """One ``[T, D]`` feature sequence of a modality from a ``.npy`` file (zero frames count as absent)."""
    import torch

    from simmlm.data.arrays import read_npy

    array = read_npy(Path(path))
    if array.ndim != 2:
        raise ValueError(f"{path}: {name} must be a [T, D] feature sequence, got shape {list(array.shape)}")
    return torch.from_numpy(array)


def example(directory: Path) -> Example:
    """A MulT-style pickle of three feature sequences
    (:func:`~simmlm.datasets.seqfeatures.synthetic.write_example_sequences`), and one sample's sequences as ``.npy``
    files."""
    import numpy as np

    from simmlm.datasets.seqfeatures.synthetic import SEQUENCE_SHAPES, write_example_sequences

    path = write_example_sequences(directory, num_samples=150, seed=0)
    rng = np.random.default_rng(0)
    inputs: dict[str, Path | str] = {}
    for name, shape in SEQUENCE_SHAPES.items():
        inputs[name] = directory / f"sample-{name}.npy"
        np.save(inputs[name], rng.normal(size=shape).astype(np.float32))
    return Example(data={"file": path.name}, inputs=inputs)


def task(data: SeqfeaturesData) -> Task:
    """Classification (Acc-2, Acc-7 or four emotions; weighted F1 reported beside accuracy, and per emotion for
    IEMOCAP), or with ``task: regression`` the score itself."""
    from simmlm.engine.tasks import ClassificationTask, RegressionTask

    if data.task == "regression":
        return RegressionTask(data, load, read)
    from simmlm.datasets.seqfeatures.labels import EMOTIONS

    emotions = list(EMOTIONS) if data.task == "emotions4" else None
    return ClassificationTask(data, load, read, f1=True, class_names=emotions, select_on=data.select_on)


SPEC = register_dataset(
    DatasetSpec(
        name="seqfeatures",
        config=SeqfeaturesData,
        task=task,
        summary="feature sequences such as CMU-MOSI / MOSEI, MulT / MMSA pickles",
        folder="the folder of the feature pickle or its .npz (data.file)",
        example=example,
    )
)
