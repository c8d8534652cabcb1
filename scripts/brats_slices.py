"""Axial slices of the shared BraTS 2015 cases as an RGB-X segmentation folder (``data.dataset: rgbx``): FLAIR and
T1c, each slice a sample with four classes, background, oedema (whole tumour minus core), core without enhancement
(necrosis and non-enhancing tumour) and enhancing tumour; pixels outside the brain are ignored (255). Every slice of
a case stays in the case's split (the shared folders' train / validation / test), so no case is seen in two splits.

    python scripts/brats_slices.py ../shared/data/brats2015_flair_t1c /tmp/brats-slices
    simmlm benchmark rgbx --data-dir /tmp/brats-slices --methods simmlm,dmome,late_fusion,mmp \
        --set model.gate_channels=4 --out results/brats-slices

Slices are kept where the brain covers at least ``--min-brain`` of the image, every ``--step``-th of them, and halved
in-plane (240 -> 120 px: images averaged over 2 x 2 blocks, labels taken at every second pixel).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SPLITS = {"train": "train", "validation": "val", "test": "test"}
CLASSES = ("background", "oedema", "core", "enhancing")
#: OTMultiClass label -> class: 1 necrosis and 3 non-enhancing are the core without enhancement, 2 oedema, 4 enhancing
TO_CLASS = np.array([0, 2, 1, 2, 3], dtype=np.uint8)
IGNORE = 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the brats2015_flair_t1c folder")
    parser.add_argument("target", type=Path, help="a new folder")
    parser.add_argument("--step", type=int, default=2, help="keep every STEP-th slice with enough brain")
    parser.add_argument("--min-brain", type=float, default=0.1, help="least share of the slice that is brain")
    args = parser.parse_args()
    import nibabel as nib
    from PIL import Image

    if args.target.exists() and any(args.target.iterdir()):
        raise SystemExit(f"{args.target} exists and is not empty")
    args.target.mkdir(parents=True, exist_ok=True)
    (args.target / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for folder, split in SPLITS.items():
        for case in sorted((args.source / folder).iterdir()):
            flair, t1c, labels, brain = (
                np.asarray(nib.load(str(case / name)).get_fdata(), dtype=np.float32)
                for name in (
                    "Flair_subtrMeanDivStd.nii.gz",
                    "T1c_subtrMeanDivStd.nii.gz",
                    "OTMultiClass.nii.gz",
                    "brainmask.nii.gz",
                )
            )
            kept = [z for z in range(flair.shape[2]) if (brain[:, :, z] > 0.5).mean() >= args.min_brain][:: args.step]
            for z in kept:
                out = args.target / split / f"{case.name}_{z:03d}"
                out.mkdir(parents=True)
                for name, volume in (("flair", flair), ("t1c", t1c)):
                    image = volume[:, :, z].reshape(120, 2, 120, 2).mean((1, 3))
                    np.save(out / f"{name}.npy", image.astype(np.float32))
                label = TO_CLASS[labels[::2, ::2, z].round().astype(np.int64)]
                label[brain[::2, ::2, z] <= 0.5] = IGNORE
                Image.fromarray(label).save(out / "label.png")
            print(f"{split}: {case.name}: {len(kept)} slices")


if __name__ == "__main__":
    main()
