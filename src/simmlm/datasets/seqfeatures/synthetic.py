"""Small synthetic, learnable datasets in the MulT pickle layout (:mod:`simmlm.datasets.seqfeatures.loader`):
sentiment scores (MOSI's layout) and four emotions (IEMOCAP's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simmlm.fileio import check_new_folder

#: Feature sizes and sequence lengths of the example pickle: unaligned, like MulT's ``*_noalign.pkl`` files.
SEQUENCE_SHAPES = {"text": (20, 16), "audio": (30, 8), "vision": (25, 6)}
EXAMPLE_PICKLE = "mosi_example.pkl"
EMOTIONS_PICKLE = "iemocap_example.pkl"


def write_example_sequences(directory: str | Path, num_samples: int = 600, seed: int = 0) -> Path:
    """Write ``directory/mosi_example.pkl``: a small learnable dataset in the MulT pickle layout
    (:mod:`simmlm.datasets.seqfeatures.loader`), so the sequence path runs before one has the real CMU-MOSI files.

    Splits ``train`` / ``valid`` / ``test`` (60 / 20 / 20 %), each with ``text`` / ``audio`` / ``vision`` arrays
    ``[N, T, D]`` (:data:`SEQUENCE_SHAPES`) and ``regression_labels`` ``[N]``, sentiment scores in [-3, 3]. Every
    frame of a modality carries ``score / 3`` along a direction of its own plus noise (text the clearest, vision the
    noisiest), and each sequence has a random length, zero-padded at the end as in the real files. Raises
    ``ValueError`` if ``directory`` exists and is not empty.
    """
    directory = Path(directory)
    if num_samples < 20:
        raise ValueError(f"the example needs at least 20 samples, got {num_samples}")
    check_new_folder(directory)
    rng = np.random.default_rng(seed)
    scores = np.round(rng.uniform(-3, 3, num_samples) * 3) / 3  # some exactly 0, as in MOSI
    arrays = _sequences(scores[:, None] / 3, rng)
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / EXAMPLE_PICKLE, arrays, "regression_labels", scores.astype(np.float32))
    return directory / EXAMPLE_PICKLE


def write_example_emotions(directory: str | Path, num_samples: int = 600, seed: int = 0) -> Path:
    """Write ``directory/iemocap_example.pkl`` (the folder may exist): four emotions in MulT's IEMOCAP layout,
    ``labels`` ``[N, 4, 2]`` (per emotion a one-hot pair, index 1 present; neutral, happy, sad, angry), the same
    sequences as :func:`write_example_sequences` with each emotion along its own direction per modality."""
    directory = Path(directory)
    rng = np.random.default_rng(seed + 1)
    emotion = rng.integers(0, 4, num_samples)
    arrays = _sequences(np.eye(4)[emotion], rng)
    labels = np.zeros((num_samples, 4, 2), dtype=np.float32)
    labels[:, :, 0] = 1
    labels[np.arange(num_samples), emotion] = (0, 1)
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / EMOTIONS_PICKLE, arrays, "labels", labels)
    return directory / EMOTIONS_PICKLE


def _sequences(codes: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per modality ``[N, T, D]``: every frame ``codes @ directions`` (``codes`` ``[N, K]``, random directions of the
    modality ``[K, D]``) plus noise (text the clearest, vision the noisiest), each sequence of a random length,
    zero-padded at the end as in the real files."""
    n = len(codes)
    arrays = {}
    for m, (name, (frames, features)) in enumerate(SEQUENCE_SHAPES.items()):
        directions = rng.normal(size=(codes.shape[1], features))
        values = (codes @ directions)[:, None, :] + (0.8 + 0.4 * m) * rng.normal(size=(n, frames, features))
        lengths = rng.integers(frames // 2, frames + 1, n)
        values[np.arange(frames)[None, :] >= lengths[:, None]] = 0.0  # padding
        arrays[name] = values.astype(np.float32)
    return arrays


def _write(path: Path, arrays: dict[str, np.ndarray], label_key: str, labels: np.ndarray) -> None:
    """The MulT pickle of the arrays and labels, split 60 / 20 / 20 % into train / valid / test."""
    import pickle

    from simmlm.fileio import atomic_path

    n = len(labels)
    parts = zip(("train", "valid", "test"), np.split(np.arange(n), [int(0.6 * n), int(0.8 * n)]), strict=True)
    data = {split: {**{k: v[rows] for k, v in arrays.items()}, label_key: labels[rows]} for split, rows in parts}
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        pickle.dump(data, handle)
