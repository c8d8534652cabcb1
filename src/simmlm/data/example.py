"""A small synthetic, learnable dataset in the folder layout (:mod:`simmlm.data.folder`), for walkthroughs and tests.

Modality ``image`` is a one-channel ``16x16`` picture (saved as ``[16, 16]``), the others (``sensor1``, ...) are
12-dimensional vectors. Each class has a random prototype per modality; a sample is its class prototype plus
Gaussian noise, noisier for later modalities, so every modality alone is informative but imperfect and
together they are better. Each modality is missing from a sample with probability ``missing`` (never all of them),
in every split.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

IMAGE_SIDE = 16
VECTOR_SIZE = 12


def example_modalities(num_modalities: int) -> list[str]:
    """Modality names of the example data: ``image``, ``sensor1``, ``sensor2``, ..."""
    return ["image"] + [f"sensor{m}" for m in range(1, num_modalities)]


def write_example_dataset(
    directory: str | Path,
    num_modalities: int = 3,
    num_samples: int = 600,
    num_classes: int = 4,
    missing: float = 0.25,
    seed: int = 0,
) -> Path:
    """Write ``manifest.csv`` and ``<modality>/<sample_id>.npy`` files into a new folder ``directory``.

    The folder is filled under a temporary name and renamed at the end: an error leaves nothing half written.
    Splits: 60 % train, 20 % val, 20 % test. Raises ``ValueError`` if ``directory`` exists and is not empty.
    """
    directory = Path(directory)
    if num_modalities < 2:
        raise ValueError(f"the example needs at least 2 modalities, got {num_modalities}")
    if num_classes < 2 or num_samples < 5 * num_classes:
        raise ValueError(f"need >= 2 classes and >= 5 samples per class, got {num_samples} samples, {num_classes}")
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"missing must be in [0, 1), got {missing}")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(f"{directory} already exists and is not empty; choose a new folder")
    rng = np.random.default_rng(seed)
    names = example_modalities(num_modalities)
    shapes = {name: (IMAGE_SIDE, IMAGE_SIDE) if name == "image" else (VECTOR_SIZE,) for name in names}
    # Images: coarse 4x4 block patterns upsampled to 16x16; vectors: random directions.
    block = IMAGE_SIDE // 4
    prototypes = {
        name: np.kron(rng.choice([-1.0, 1.0], size=(num_classes, 4, 4)), np.ones((1, block, block)))
        if name == "image"
        else rng.normal(size=(num_classes, VECTOR_SIZE))
        for name in names
    }
    noise = {name: 4.5 if name == "image" else 1.0 + 0.3 * m for m, name in enumerate(names)}
    labels = np.arange(num_samples) % num_classes
    rng.shuffle(labels)
    split = np.where(np.arange(num_samples) < 0.6 * num_samples, "train", "val")
    split[np.arange(num_samples) >= 0.8 * num_samples] = "test"
    present = rng.random((num_samples, num_modalities)) >= missing
    for row in np.flatnonzero(~present.any(1)):
        present[row, rng.integers(num_modalities)] = True
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        for name in names:
            (tmp / name).mkdir()
        rows = []
        for i in range(num_samples):
            sample_id = f"s{i:05d}"
            cells = []
            for m, name in enumerate(names):
                if not present[i, m]:
                    cells.append("")
                    continue
                value = prototypes[name][labels[i]] + noise[name] * rng.normal(size=shapes[name])
                np.save(tmp / name / f"{sample_id}.npy", value.astype(np.float32))
                cells.append(f"{name}/{sample_id}.npy")
            rows.append([sample_id, int(labels[i]), split[i], *cells])
        with (tmp / "manifest.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sample_id", "label", "split", *names])
            writer.writerows(rows)
        if directory.exists():
            directory.rmdir()
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


#: Feature sizes and sequence lengths of the example pickle: unaligned, like MulT's ``*_noalign.pkl`` files.
SEQUENCE_SHAPES = {"text": (20, 16), "audio": (30, 8), "vision": (25, 6)}
EXAMPLE_PICKLE = "mosi_example.pkl"


def write_example_sequences(directory: str | Path, num_samples: int = 600, seed: int = 0) -> Path:
    """Write ``directory/mosi_example.pkl``: a small learnable dataset in the MulT pickle layout
    (:mod:`simmlm.data.seqfeatures`), so the sequence path runs before one has the real CMU-MOSI files.

    Splits ``train`` / ``valid`` / ``test`` (60 / 20 / 20 %), each with ``text`` / ``audio`` / ``vision`` arrays
    ``[N, T, D]`` (:data:`SEQUENCE_SHAPES`) and ``regression_labels`` ``[N]``, sentiment scores in [-3, 3]. Every
    frame of a modality carries ``score / 3`` along a direction of its own plus noise (text the clearest, vision the
    noisiest), and each sequence has a random length, zero-padded at the end as in the real files. Raises
    ``ValueError`` if ``directory`` exists and is not empty.
    """
    import pickle

    from simmlm.fileio import atomic_path

    directory = Path(directory)
    if num_samples < 20:
        raise ValueError(f"the example needs at least 20 samples, got {num_samples}")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(f"{directory} already exists and is not empty; choose a new folder")
    rng = np.random.default_rng(seed)
    scores = np.round(rng.uniform(-3, 3, num_samples) * 3) / 3  # some exactly 0, as in MOSI
    arrays = {}
    for m, (name, (frames, features)) in enumerate(SEQUENCE_SHAPES.items()):
        direction = rng.normal(size=features)
        values = scores[:, None, None] / 3 * direction + (0.8 + 0.4 * m) * rng.normal(
            size=(num_samples, frames, features)
        )
        lengths = rng.integers(frames // 2, frames + 1, num_samples)
        values[np.arange(frames)[None, :] >= lengths[:, None]] = 0.0  # padding
        arrays[name] = values.astype(np.float32)
    cut = [int(0.6 * num_samples), int(0.8 * num_samples)]
    parts = zip(("train", "valid", "test"), np.split(np.arange(num_samples), cut), strict=True)
    data = {
        split: {**{k: v[rows] for k, v in arrays.items()}, "regression_labels": scores[rows].astype(np.float32)}
        for split, rows in parts
    }
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / EXAMPLE_PICKLE) as tmp, tmp.open("wb") as handle:
        pickle.dump(data, handle)
    return directory / EXAMPLE_PICKLE
