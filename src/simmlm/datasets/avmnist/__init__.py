"""avMNIST: MNIST digits paired with spoken digits of the FSDD (SMIL's protocol). This module (no torch): the
``data:`` section and the spec; the loader in :mod:`simmlm.datasets.avmnist.loader`, single files for
``simmlm predict`` in :mod:`simmlm.datasets.avmnist.input`, the raw files' public homes and checksums in
:mod:`simmlm.datasets.avmnist.download`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from simmlm.data.specs import FrameMissing, WithScenario
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


class AvmnistData(DataSection, FrameMissing, WithScenario):
    """avMNIST (:mod:`~simmlm.datasets.avmnist.loader`): split, audio front end and scaling; sequences with missing
    frames."""

    dataset: Literal["avmnist"] = "avmnist"
    data_dir: Path | None = DATA_DIR_FIELD
    val_fraction: float = Field(0.15, gt=0, lt=1)
    val_split: Literal["stratified", "recording_index"] = "stratified"
    audio_frontend: Literal["literature", "antialiased"] = Field(
        "literature",
        description="MFCC front end (literature = what the published numbers use; docs/datasets/avmnist.md)",
    )
    mfcc_rate: float | None = Field(None, gt=0, description="rate told to the MFCC (None: the front end's)")
    mfcc_pad: Literal["reflect", "constant"] | None = Field(None, description="STFT frame padding (None: front end's)")
    audio_scaling: Literal["standardize", "minmax"] = "standardize"
    layout: Literal["maps", "sequences"] = Field(
        "maps", description="maps: [1, 28, 28] / [1, 20, 20]; sequences: image rows and audio frames as [T, D]"
    )

    @model_validator(mode="after")
    def _frames_need_sequences(self) -> AvmnistData:
        if self.frame_missing > 0 and self.layout != "sequences":
            raise ValueError("frame_missing needs layout: sequences (frames are the image's rows, the audio's frames)")
        return self


def load(data: AvmnistData) -> Splits:
    from simmlm.datasets.avmnist.loader import load_avmnist, resolve_frontend
    from simmlm.engine.tasks import resolve_data_dir

    frontend = resolve_frontend(data.audio_frontend, data.mfcc_rate, data.mfcc_pad)
    return load_avmnist(
        resolve_data_dir(data.data_dir),
        data.val_fraction,
        data.audio_scaling,
        data.val_split,
        frontend=frontend,
        layout=data.layout,
        frame_missing=data.frame_ratios(),
        missing_seed=data.missing_seed,
    )


def read(name: str, path: Path, preprocessing: dict[str, Any]) -> Tensor:
    from simmlm.datasets.avmnist.input import read_input

    return read_input(name, path, preprocessing)


def fetch(data_dir: Path, **options: Any) -> Any:
    """The spec's ``download`` hook (named otherwise: ``download`` is this package's module of sources)."""
    from simmlm.datasets.avmnist.download import download_avmnist

    return download_avmnist(data_dir, **options)


def write_mnist(folder: Path, per_class: dict[str, int], seed: int = 0) -> None:
    """MNIST's four IDX files (``train``, ``t10k``) in ``folder``, ``per_class[split]`` images of each digit: a bright
    block whose place on a 5 x 2 grid is the digit, on noise. A stand-in for MNIST in the examples."""
    import gzip

    import numpy as np

    from simmlm.datasets.avmnist.loader import MNIST_FILES

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images_file, labels_file) in MNIST_FILES.items():
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class[split])
        images = rng.integers(0, 60, size=(len(labels), 28, 28))
        for i, digit in enumerate(labels.tolist()):
            row, col = 3 + 5 * (digit // 2) + int(rng.integers(-1, 2)), 5 + 12 * (digit % 2) + int(rng.integers(-1, 2))
            images[i, row : row + 4, col : col + 6] = 255
        for name, array in ((images_file, images.astype(np.uint8)), (labels_file, labels)):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
            with gzip.open(folder / name, "wb") as handle:
                handle.write(header + array.tobytes())


def example(directory: Path) -> Example:
    """Synthetic avMNIST in the real layout: :func:`write_mnist` and, for every FSDD recording the protocol reads, a
    quarter-second tone whose pitch is the digit, with noise; one test pair as ``.npy`` image and ``.wav``."""
    import numpy as np
    import soundfile

    from simmlm.datasets.avmnist.loader import RECORDINGS_PER_DIGIT, SPEAKERS

    root = directory / "avmnist"
    write_mnist(root / "mnist", {"train": 110, "test": 50})
    recordings = root / "fsdd" / "recordings"
    recordings.mkdir(parents=True)
    rng, rate = np.random.default_rng(0), 8000
    time = np.arange(rate // 4) / rate
    for digit in range(10):
        for speaker in SPEAKERS:
            for index in range(RECORDINGS_PER_DIGIT):
                pitch = (250 + 90 * digit) * (1 + 0.03 * rng.standard_normal())
                wave = 0.3 * np.sin(2 * np.pi * pitch * time) + 0.05 * rng.standard_normal(time.size)
                soundfile.write(recordings / f"{digit}_{speaker}_{index}.wav", wave.astype(np.float32), rate)
    image = directory / "sample-image.npy"
    np.save(image, np.zeros((28, 28), dtype=np.uint8))
    return Example(inputs={"image": image, "audio": recordings / f"3_{SPEAKERS[0]}_0.wav"})


SPEC = register_dataset(
    DatasetSpec(
        name="avmnist",
        config=AvmnistData,
        task=classification_task(load, read),
        summary="MNIST digits with spoken digits, SMIL's protocol",
        folder="avmnist/ with the MNIST and FSDD files (`simmlm download avmnist` fetches them)",
        download=fetch,
        example=example,
    )
)
