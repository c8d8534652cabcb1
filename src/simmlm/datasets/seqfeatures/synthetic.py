"""A small synthetic, learnable dataset in the MulT pickle layout (:mod:`simmlm.datasets.seqfeatures.loader`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simmlm.fileio import check_new_folder

#: Feature sizes and sequence lengths of the example pickle: unaligned, like MulT's ``*_noalign.pkl`` files.
SEQUENCE_SHAPES = {"text": (20, 16), "audio": (30, 8), "vision": (25, 6)}
EXAMPLE_PICKLE = "mosi_example.pkl"


def write_example_sequences(directory: str | Path, num_samples: int = 600, seed: int = 0) -> Path:
    """Write ``directory/mosi_example.pkl``: a small learnable dataset in the MulT pickle layout
    (:mod:`simmlm.datasets.seqfeatures.loader`), so the sequence path runs before one has the real CMU-MOSI files.

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
    check_new_folder(directory)
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
