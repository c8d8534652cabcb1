"""A small learnable RGB-X segmentation dataset in the folder layout of :mod:`simmlm.datasets.rgbx.loader`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simmlm.fileio import check_new_folder

#: Class k's name; line k of the example's classes.txt.
CLASSES = ("background", "near", "far")
SIZE = 32


def write_example_scenes(directory: str | Path, counts: dict[str, int], seed: int = 0) -> Path:
    """Write scenes of square objects on a textured background: ``rgb.png`` shows every object in the same colour
    (it finds objects, not their kind), ``depth.npy`` shows near objects clearly and far ones barely above the
    background (it tells near from far, and misses far edges), so each modality carries what the other lacks.
    Classes background, near and far (``classes.txt``); a tenth of the samples lack the depth and a twentieth the
    RGB; label 255 (ignored) on a one-pixel border of every object, as void contours in NYUDv2."""
    from PIL import Image

    root = Path(directory)
    check_new_folder(root)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split, count in counts.items():
        for i in range(count):
            label = np.zeros((SIZE, SIZE), dtype=np.uint8)
            depth = 0.2 + 0.1 * np.linspace(0, 1, SIZE)[None, :].repeat(SIZE, 0)
            rgb = 0.3 + 0.15 * rng.random((SIZE, SIZE, 3))
            for _ in range(int(rng.integers(1, 4))):
                side = int(rng.integers(6, 12))
                y, x = (int(v) for v in rng.integers(0, SIZE - side, 2))
                kind = int(rng.integers(1, 3))
                label[y : y + side, x : x + side] = kind
                label[y, x : x + side] = label[y + side - 1, x : x + side] = 255
                label[y : y + side, x] = label[y : y + side, x + side - 1] = 255
                rgb[y : y + side, x : x + side] = (0.9, 0.5, 0.1)
                depth[y : y + side, x : x + side] = 0.9 if kind == 1 else 0.35
            folder = root / split / f"{i:04d}"
            folder.mkdir(parents=True)
            draw = rng.random()
            if draw >= 0.05:
                noisy = np.clip(rgb + 0.05 * rng.normal(size=rgb.shape), 0, 1)
                Image.fromarray((noisy * 255).astype(np.uint8)).save(folder / "rgb.png")
            if draw < 0.05 or draw >= 0.15:
                np.save(folder / "depth.npy", (depth + 0.05 * rng.normal(size=depth.shape)).astype(np.float32))
            Image.fromarray(label).save(folder / "label.png")
    return root
