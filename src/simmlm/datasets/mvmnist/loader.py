"""Multi-view MNIST: six feature views of very different strength, built from the raw MNIST files.

A benchmark with many modalities where a learned gate must weigh strong and weak but diverse views (no view is
ever missing in the data; every subset is evaluated). Reads ``avmnist/mnist/*.gz`` under the data directory (the
files avMNIST uses; ``simmlm download avmnist`` fetches them). Splits, all drawn with a fixed seed and
class-stratified: ``train_size`` training and ``val_size`` validation images from MNIST-train, ``test_size`` test
images from MNIST-test. The views (grey levels scaled to [0, 1]; each standardised with training statistics):

======================  ====  ==================================================================================
view                    dims  what it is
======================  ====  ==================================================================================
``pixels``                49  the image average-pooled 4x4 to 7x7
``pca``                   12  projection on the first 12 principal components of the training images
``profiles``              28  ink per row and per column, each pooled 2x (14 + 14)
``dct``                   10  low-frequency 2-D DCT-II coefficients (u + v < 4), the orthonormal transform
``morphology``             6  ink area, bounding-box height, width and aspect, stroke-edge length, holes
``moments``                7  Hu's moment invariants, log-scaled (invariant to shift, scale and rotation)
======================  ====  ==================================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from simmlm.data.base import Splits, TensorMultimodalDataset
from simmlm.datasets.avmnist.loader import MNIST_FILES, read_idx

VIEWS = ("pixels", "pca", "profiles", "dct", "morphology", "moments")
SPLIT_SEED = 0
PCA_COMPONENTS = 12


def _pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), 7, 4, 7, 4).mean(axis=(2, 4)).reshape(len(images), -1)


def _profiles(images: np.ndarray) -> np.ndarray:
    rows, cols = images.sum(axis=2), images.sum(axis=1)  # [N, 28] each
    return np.concatenate([rows.reshape(-1, 14, 2).sum(-1), cols.reshape(-1, 14, 2).sum(-1)], axis=1)


def _dct(images: np.ndarray) -> np.ndarray:
    from scipy.fft import dctn

    coeffs = dctn(images, type=2, axes=(1, 2), norm="ortho")
    keep = [(u, v) for u in range(4) for v in range(4) if u + v < 4]
    return np.stack([coeffs[:, u, v] for u, v in keep], axis=1)


def _morphology(images: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    out = np.zeros((len(images), 6), dtype=np.float64)
    for n, image in enumerate(images):
        ink = image > 0.5
        if not ink.any():
            continue
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        edges = np.count_nonzero(ink[:, 1:] != ink[:, :-1]) + np.count_nonzero(ink[1:] != ink[:-1])
        background, regions = ndimage.label(~ink)
        border = set(np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])))
        holes = len(set(range(1, regions + 1)) - border)
        out[n] = (ink.sum(), height, width, width / height, edges, holes)
    return out


def _moments(images: np.ndarray) -> np.ndarray:
    """Hu's seven invariants from normalised central moments, as ``sign(h) log10(|h|)``."""
    y, x = np.mgrid[:28, :28].astype(np.float64)
    mass = images.sum(axis=(1, 2)) + 1e-12
    cx = (images * x).sum(axis=(1, 2)) / mass
    cy = (images * y).sum(axis=(1, 2)) / mass
    dx, dy = x[None] - cx[:, None, None], y[None] - cy[:, None, None]

    def eta(p: int, q: int) -> np.ndarray:
        return (images * dx**p * dy**q).sum(axis=(1, 2)) / mass ** (1 + (p + q) / 2)

    n20, n02, n11 = eta(2, 0), eta(0, 2), eta(1, 1)
    n30, n03, n21, n12 = eta(3, 0), eta(0, 3), eta(2, 1), eta(1, 2)
    a, b = n30 + n12, n21 + n03
    hu = np.stack(
        [
            n20 + n02,
            (n20 - n02) ** 2 + 4 * n11**2,
            (n30 - 3 * n12) ** 2 + (3 * n21 - n03) ** 2,
            a**2 + b**2,
            (n30 - 3 * n12) * a * (a**2 - 3 * b**2) + (3 * n21 - n03) * b * (3 * a**2 - b**2),
            (n20 - n02) * (a**2 - b**2) + 4 * n11 * a * b,
            (3 * n21 - n03) * a * (a**2 - 3 * b**2) - (n30 - 3 * n12) * b * (3 * a**2 - b**2),
        ],
        axis=1,
    )
    return np.sign(hu) * np.log10(np.abs(hu) + 1e-30)


def view_features(images: np.ndarray, pca_mean: np.ndarray, pca_basis: np.ndarray) -> dict[str, np.ndarray]:
    """The six views of grey images ``[N, 28, 28]`` in [0, 1] (``pca_*`` fitted on the training images)."""
    flat = images.reshape(len(images), -1)
    return {
        "pixels": _pixels(images),
        "pca": (flat - pca_mean) @ pca_basis.T,
        "profiles": _profiles(images),
        "dct": _dct(images),
        "morphology": _morphology(images),
        "moments": _moments(images),
    }


def _stratified(labels: np.ndarray, sizes: tuple[int, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint class-stratified draws of ``sizes[k] // 10`` images per class each."""
    parts: list[list[np.ndarray]] = [[] for _ in sizes]
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for k, size in enumerate(sizes):
            parts[k].append(members[start : start + size // 10])
            start += size // 10
    return [np.sort(np.concatenate(p)) for p in parts]


def load_mvmnist(data_dir: str | Path, train_size: int = 1200, val_size: int = 300, test_size: int = 2000) -> Splits:
    """Multi-view MNIST splits (module docstring); sizes are rounded down to multiples of 10 (class-stratified)."""
    from simmlm.datasets.avmnist.loader import check_files, mnist_files

    root = Path(data_dir) / "avmnist"
    check_files(root, mnist_files(root))  # the MNIST files only: the recordings are avMNIST's
    rng = np.random.default_rng(SPLIT_SEED)
    images = {split: read_idx(root / "mnist" / files[0]) for split, files in MNIST_FILES.items()}
    labels = {split: read_idx(root / "mnist" / files[1]).astype(np.int64) for split, files in MNIST_FILES.items()}
    train, val = _stratified(labels["train"], (train_size, val_size), rng)
    (test,) = _stratified(labels["test"], (test_size,), rng)
    picked = {"train": train, "val": val, "test": test}
    source = {"train": "train", "val": "train", "test": "test"}
    grey = {s: images[source[s]][picked[s]].astype(np.float64) / 255.0 for s in ("train", "val", "test")}
    targets = {s: labels[source[s]][picked[s]] for s in ("train", "val", "test")}
    flat = grey["train"].reshape(len(grey["train"]), -1)
    pca_mean = flat.mean(0)
    pca_basis = np.linalg.svd(flat - pca_mean, full_matrices=False)[2][:PCA_COMPONENTS]
    views = {s: view_features(grey[s], pca_mean, pca_basis) for s in grey}
    stats = {v: (views["train"][v].mean(0), views["train"][v].std(0) + 1e-6) for v in VIEWS}
    preprocessing: dict[str, Any] = {"dataset": "mvmnist"}

    def part(split: str) -> TensorMultimodalDataset:
        inputs = {
            v: torch.from_numpy(((views[split][v] - stats[v][0]) / stats[v][1]).astype(np.float32)) for v in VIEWS
        }
        n = len(targets[split])
        return TensorMultimodalDataset(
            inputs, torch.ones(n, len(VIEWS), dtype=torch.bool), torch.from_numpy(targets[split])
        )

    dims = ", ".join(f"{v} {views['train'][v].shape[1]}" for v in VIEWS)
    # The protocol text of summary.json: it names this module by its old path (simmlm.data.mvmnist) because the
    # committed results/mvmnist* summaries hold that text and `simmlm compare` reads a changed protocol as a difference.
    description = (
        f"Multi-view MNIST: six views of each image ({dims} dims; simmlm.data.mvmnist), standardised with training "
        f"statistics; class-stratified, fixed seed: {len(targets['train'])} train and {len(targets['val'])} validation "
        f"images from MNIST-train, {len(targets['test'])} test images from MNIST-test; every view present."
    )
    return Splits(part("train"), part("val"), part("test"), 10, description, preprocessing)
