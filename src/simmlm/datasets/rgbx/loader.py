"""Aligned per-modality images with a label map per sample, the layout of RGB-X segmentation data.

On-disk layout (what simmlm relies on; MCubeS, NYUDv2 and FMB ship their images by modality, so one links or copies
each sample's files into its folder)::

    DATA_DIR/
      classes.txt                 optional: class k's name on line k+1 (else the classes are 0..the largest label)
      train/<sample>/<modality>.png|.npy ... label.png|.npy
      val/<sample>/...
      test/<sample>/...

- **Modalities**: a sample's files other than ``label``; the first training sample's name them unless
  ``data.modalities`` does. A sample without a modality's file lacks that modality (a mask False), never zeros
  passed off as data. PNG: greyscale is one channel, anything else is read as RGB (three); values scaled to
  [0, 1]. NPY: ``[H, W]`` (one channel) or ``[C, H, W]``, as numbers. Each modality is standardised per channel with
  the mean and standard deviation of its training pixels. Every image of a modality has one shape.
- **Labels**: ``label.png`` (greyscale or palette: the index is the class) or ``label.npy`` ``[H, W]`` integers,
  the same height and width as the images; ``ignore_index`` (255 by default: NYUDv2's and MCubeS's void) marks
  pixels that count nowhere.
- Held in memory: meant for datasets of up to a few thousand images of moderate size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from simmlm.data.arrays import read_npy
from simmlm.data.base import Splits, TensorMultimodalDataset

SPLITS = ("train", "val", "test")
SUFFIXES = (".png", ".npy")


def read_image(path: Path) -> np.ndarray:
    """One modality's image as float32 ``[C, H, W]`` (PNG scaled to [0, 1])."""
    if path.suffix == ".npy":
        array = read_npy(path).astype(np.float32)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"{path}: an image must be [H, W] or [C, H, W], got shape {list(array.shape)}")
        return array
    from PIL import Image

    with Image.open(path) as image:
        grey = image.mode in ("L", "I;16", "I", "F")
        array = np.asarray(image if grey else image.convert("RGB"), dtype=np.float32)
    scale = 255.0 if array.max(initial=0) <= 255 else 65535.0
    return (array[None] if grey else array.transpose(2, 0, 1)) / scale


def read_label(path: Path) -> np.ndarray:
    """A label map as int64 ``[H, W]``."""
    if path.suffix == ".npy":
        array = read_npy(path)
    else:
        from PIL import Image

        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"{path}: a label map must be greyscale or a palette image, got mode {image.mode}")
            array = np.asarray(image)
    if array.ndim != 2 or array.dtype.kind not in "iu":
        raise ValueError(f"{path}: a label map must be [H, W] integers, got {array.dtype} {list(array.shape)}")
    return array.astype(np.int64)


def _file(folder: Path, stem: str) -> Path | None:
    found = [folder / f"{stem}{suffix}" for suffix in SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        raise ValueError(f"{folder}: both {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None


def _samples(root: Path, split: str) -> list[Path]:
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{root} has no {split}/ folder (expected train/, val/ and test/ of sample folders)")
    samples = sorted(p for p in folder.iterdir() if p.is_dir())
    if not samples:
        raise ValueError(f"{folder} holds no sample folders")
    return samples


def load_rgbx(
    root: Path, modalities: Sequence[str] | None = None, classes: Sequence[str] | None = None, ignore: int | None = 255
) -> Splits:
    """Train / validation / test splits of an RGB-X folder (see the module docstring)."""
    samples = {split: _samples(root, split) for split in SPLITS}
    if modalities is None:
        first = samples["train"][0]
        modalities = sorted({p.stem for p in first.iterdir() if p.suffix in SUFFIXES and p.stem != "label"})
        if not modalities:
            raise ValueError(f"{first} holds no modality files (MODALITY.png or .npy beside label.png|.npy)")
    names = list(modalities)
    raw: dict[str, tuple[dict[str, list[np.ndarray | None]], list[np.ndarray]]] = {}
    for split, folders in samples.items():
        images: dict[str, list[np.ndarray | None]] = {m: [] for m in names}
        labels = []
        for folder in folders:
            label = _file(folder, "label")
            if label is None:
                raise FileNotFoundError(f"{folder} has no label.png or label.npy")
            labels.append(read_label(label))
            have = {m: _file(folder, m) for m in names}
            if not any(have.values()):
                raise ValueError(f"{folder} has none of the modalities {names}")
            for m, path in have.items():
                images[m].append(read_image(path) if path is not None else None)
        raw[split] = (images, labels)
    shapes = {m: _shape(m, [x for split in raw.values() for x in split[0][m]]) for m in names}
    height_width = {tuple(s[1:]) for s in shapes.values()} | {lab.shape for split in raw.values() for lab in split[1]}
    if len(height_width) != 1:
        raise ValueError(f"{root}: images and label maps must share one height x width, found {sorted(height_width)}")
    class_names = _classes(root, classes, [lab for split in raw.values() for lab in split[1]], ignore)
    datasets = {split: _dataset(images, labels, shapes, names, class_names) for split, (images, labels) in raw.items()}
    stats = _standardise(datasets)
    counts = ", ".join(f"{s} {len(datasets[s])}" for s in SPLITS)
    missing = ", ".join(f"{m} {int((~datasets['train'].mask[:, k]).sum())}" for k, m in enumerate(names))
    description = (
        f"RGB-X segmentation folder {root}: {counts} images of {' x '.join(map(str, sorted(height_width)[0]))} px; "
        f"modalities {', '.join(f'{m} ({shapes[m][0]} channels)' for m in names)}; {len(class_names)} classes "
        f"({', '.join(class_names)}); ignore_index {ignore}; training images lacking a modality: {missing}."
    )
    preprocessing = {"dataset": "rgbx", "classes": class_names, "mean": stats[0], "std": stats[1]}
    train, val, test = (datasets[s] for s in SPLITS)
    return Splits(train, val, test, len(class_names), description, preprocessing)


def _shape(modality: str, images: list[np.ndarray | None]) -> tuple[int, ...]:
    shapes = {x.shape for x in images if x is not None}
    if len(shapes) != 1:
        raise ValueError(f"modality {modality!r}: every image must have one shape, found {sorted(shapes)}")
    return next(iter(shapes))


def _classes(root: Path, classes: Sequence[str] | None, labels: list[np.ndarray], ignore: int | None) -> list[str]:
    if classes is None and (root / "classes.txt").is_file():
        classes = [line.strip() for line in (root / "classes.txt").read_text().splitlines() if line.strip()]
    largest = max(int(lab[lab != ignore].max(initial=0)) for lab in labels)
    if classes is None:
        return [str(k) for k in range(largest + 1)]
    if largest >= len(classes):
        raise ValueError(f"{root}: a label map holds class {largest}, but only {len(classes)} classes are named")
    return list(classes)


def _dataset(
    images: dict[str, list[np.ndarray | None]],
    labels: list[np.ndarray],
    shapes: dict[str, tuple[int, ...]],
    names: list[str],
    class_names: list[str],
) -> TensorMultimodalDataset:
    mask = torch.tensor([[images[m][i] is not None for m in names] for i in range(len(labels))])
    inputs = {
        m: torch.from_numpy(np.stack([x if x is not None else np.zeros(shapes[m], np.float32) for x in images[m]]))
        for m in names
    }
    dataset = TensorMultimodalDataset(inputs, mask, torch.from_numpy(np.stack(labels)))
    dataset.class_names = class_names  # type: ignore[attr-defined]
    return dataset


def _standardise(datasets: dict[str, TensorMultimodalDataset]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Standardise every split per channel with the training pixels of the images that have the modality."""
    train = datasets["train"]
    mean, std = {}, {}
    for k, m in enumerate(train.modalities):
        present = train.inputs[m][train.mask[:, k]]
        mu = present.mean((0, 2, 3)) if len(present) else torch.zeros(train.inputs[m].shape[1])
        sigma = present.std((0, 2, 3)) + 1e-6 if len(present) > 1 else torch.ones_like(mu)
        for data in datasets.values():
            x = (data.inputs[m] - mu[:, None, None]) / sigma[:, None, None]
            data.inputs[m] = torch.where(data.mask[:, k, None, None, None], x, torch.zeros(()))
        mean[m], std[m] = mu.tolist(), sigma.tolist()
    return mean, std


def read_input(name: str, path: Path, preprocessing: dict) -> torch.Tensor:
    """``simmlm predict``'s reader: one modality's image file, standardised as in training."""
    x = torch.from_numpy(read_image(Path(path)))
    mean, std = torch.tensor(preprocessing["mean"][name]), torch.tensor(preprocessing["std"][name])
    return (x - mean[:, None, None]) / std[:, None, None]
