"""A small synthetic, learnable dataset in the folder layout (:mod:`simmlm.datasets.folder.loader`), for walkthroughs
and tests.

Modality ``image`` is a one-channel ``16x16`` picture (saved as ``[16, 16]``), the others (``sensor1``, ...) are
12-dimensional vectors. Each class has a random prototype per modality; a sample is its class prototype plus
Gaussian noise, noisier for later modalities, so every modality alone is informative but imperfect and
together they are better. Each modality is missing from a sample with probability ``missing`` (never all of them),
in every split.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from simmlm.fileio import check_new_folder, new_folder

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
        raise ValueError(
            f"need >= 2 classes and >= 5 samples per class, got {num_samples} samples and {num_classes} classes"
        )
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"missing must be in [0, 1), got {missing}")
    check_new_folder(directory)
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
    with new_folder(directory) as tmp:
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
    return directory
