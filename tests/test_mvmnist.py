"""Multi-view MNIST: each view computes what it says, and the splits are fixed, stratified and disjoint."""

from __future__ import annotations

import numpy as np
import torch

from simmlm.datasets.mvmnist.loader import VIEWS, _dct, _moments, _morphology, _pixels, _profiles, load_mvmnist
from test_end_to_end import DATA_DIR, needs_data


def _ring() -> np.ndarray:
    y, x = np.mgrid[:28, :28]
    r = np.hypot(y - 13.5, x - 13.5)
    return ((r > 5) & (r < 9)).astype(np.float64)


def test_views_of_known_images() -> None:
    ring = _ring()
    images = np.stack([ring, ring, np.zeros((28, 28))])
    seven = np.zeros((28, 28))
    seven[6:9, 6:20], seven[9:22, 16:19] = 1.0, 1.0  # asymmetric: no invariant is ~0 (where log10 is noise)
    np.testing.assert_allclose(_moments(seven[None]), _moments(np.roll(seven, (3, -2), axis=(0, 1))[None]), rtol=1e-9)
    area, height, width, aspect, edges, holes = _morphology(images[:1])[0]
    assert holes == 1 and height == width and aspect == 1 and area == ring.sum() and edges > 0
    assert _morphology(images[2:])[0].tolist() == [0.0] * 6  # a blank image has no ink
    assert _pixels(images).shape == (3, 49) and _pixels(images)[0].mean() == np.float64(ring.mean())
    np.testing.assert_allclose(_profiles(images)[0].sum(), 2 * ring.sum())  # rows + columns both hold all ink
    flat = np.full((1, 28, 28), 0.5)
    dct = _dct(flat)[0]
    assert dct.shape == (10,) and np.isclose(dct[0], 0.5 * 28) and np.allclose(dct[1:], 0)


@needs_data
def test_splits_are_fixed_stratified_and_disjoint() -> None:
    splits = load_mvmnist(DATA_DIR, train_size=200, val_size=100, test_size=100)
    again = load_mvmnist(DATA_DIR, train_size=200, val_size=100, test_size=100)
    assert splits.modalities == list(VIEWS)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (200, 100, 100)
    for name in VIEWS:
        assert torch.equal(splits.train.inputs[name], again.train.inputs[name])
        assert torch.isfinite(splits.test.inputs[name]).all()
        means = splits.train.inputs[name].mean(0)  # standardised with training statistics
        assert means.abs().max() < 1e-4
    assert torch.bincount(splits.train.targets, minlength=10).tolist() == [20] * 10
    train_rows = {tuple(r) for r in splits.train.inputs["pixels"].numpy().round(5).tolist()}
    val_rows = {tuple(r) for r in splits.val.inputs["pixels"].numpy().round(5).tolist()}
    assert not train_rows & val_rows


@needs_data
def test_needs_only_the_mnist_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copytree(DATA_DIR / "avmnist" / "mnist", tmp_path / "avmnist" / "mnist")  # no FSDD recordings
    assert len(load_mvmnist(tmp_path, train_size=100, val_size=50, test_size=50).train) == 100
