"""Peak memory and time to the first training step of BraTS-sized data, in memory and through the cache.

Writes ``N`` synthetic BraTS 2018-sized cases once (four 240×240×155 int16 sequences, a label map, uncompressed
NIfTI ``.nii`` so that writing them is quick; real BraTS files are gzipped, which makes reading slower, not
larger), then, for each size and each way of loading, runs a fresh process that loads the splits the way
``simmlm benchmark brats`` does, draws the first batch of training crops and makes one optimiser step of a small
3-D U-Net mixture, and reports that process's peak resident memory (``ru_maxrss``) and the seconds to that step.
Ways: ``memory`` (``data.brats.cache: false``), ``cache-cold`` (an empty cache: the build is included) and
``cache-warm`` (the cache the cold run built). Run from the repository root::

    python scripts/volume_memory.py --root /tmp/brats-full --sizes 10,40,100   # --ways cache-cold,cache-warm

``--workers N`` sets ``data.brats.workers`` (processes building the cache, DataLoader workers reading crops).

Disk: about 90 MB of sources and 135 MB of cache entries per case.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
from measure_child import first_step, measure  # scripts/ is on the path when a script in it runs

SHAPE = (240, 240, 155)
SEQUENCES = ("flair", "t1", "t1ce", "t2")
VAL, TEST = 2, 2  # cases of the validation and test splits (the training split grows)


def write_cases(root: Path, count: int) -> None:
    """Cases ``case000..`` under ``root/pool`` (written once; existing ones are kept)."""
    import nibabel as nib

    pool = root / "pool"
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij"))
    brain = (grid**2).sum(0) < 0.8
    for i in range(count):
        folder = pool / f"case{i:03d}"
        if (folder / f"{folder.name}_seg.nii").is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(i)
        centre = rng.uniform(-0.3, 0.3, 3).reshape(3, 1, 1, 1)
        tumour = ((grid - centre) ** 2).sum(0) < 0.05
        labels = np.where(tumour, rng.choice([1, 2, 4], size=SHAPE), 0).astype(np.int16)
        for k, name in enumerate(SEQUENCES):
            volume = (rng.normal(400, 60, SHAPE) + 150 * (k + 1) * tumour) * brain
            nib.save(nib.Nifti1Image(volume.astype(np.int16), np.eye(4)), str(folder / f"{folder.name}_{name}.nii"))
        nib.save(nib.Nifti1Image(labels, np.eye(4)), str(folder / f"{folder.name}_seg.nii"))


def link_splits(root: Path, train: int) -> Path:
    """``root/n<train>/{train,validation,test}``: symbolic links to cases of the pool."""
    data = root / f"n{train}"
    names = sorted(p.name for p in (root / "pool").iterdir())
    parts = {"train": names[:train], "validation": names[train : train + VAL], "test": names[train + VAL :][:TEST]}
    for split, cases in parts.items():
        (data / split).mkdir(parents=True, exist_ok=True)
        for case in cases:
            if not (data / split / case).exists():
                (data / split / case).symlink_to(root / "pool" / case)
    return data


def first_step_of(data: Path, cache: bool, workers: int = 0) -> dict[str, float]:
    """Load the splits as a benchmark does, then one training step; this process's peak memory and time."""
    from simmlm.engine.config import RunConfig

    start = time.perf_counter()
    brats = {
        "modalities": {s: f"{{case}}_{s}.nii" for s in SEQUENCES},
        "label": "{case}_seg.nii",
        "crop_size": [64, 64, 64],
        "crops_per_epoch": 4,
        "cache": cache,
        "workers": workers,
    }
    cfg = RunConfig.model_validate(
        {
            "data": {"dataset": "brats", "data_dir": str(data), "brats": brats},
            "model": {"expert": "unet3d", "expert_options": {"channels": [8, 16, 32], "strides": [2, 2]}},
            "train": {"batch_size": 2},
        }
    )
    return first_step(cfg, 2, start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder for the synthetic cases and the cache")
    parser.add_argument("--sizes", default="10,40,100", help="training cases per measurement")
    parser.add_argument("--ways", default="memory,cache-cold,cache-warm", help="which ways of loading to measure")
    parser.add_argument(
        "--workers", type=int, default=0, help="data.brats.workers: processes building the cache and reading crops"
    )
    parser.add_argument("--child", nargs=3, metavar=("DATA", "CACHE", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(first_step_of(Path(args.child[0]), args.child[1] == "1", int(args.child[2]))))
        return
    sizes = [int(n) for n in args.sizes.split(",")]
    write_cases(args.root, max(sizes) + VAL + TEST)
    rows = []
    for n in sizes:
        data = link_splits(args.root, n)
        cache = args.root / f"cache-n{n}"
        for way in args.ways.split(","):
            use_cache = "0" if way == "memory" else "1"
            if way == "cache-cold":
                subprocess.run(["rm", "-rf", str(cache)], check=True)
            child = ["--child", str(data), use_cache, str(args.workers)]
            result = measure([__file__, "--root", str(args.root), *child], cache)
            if isinstance(result, str):
                print(json.dumps({"train_cases": n, "way": way, "failed": result}), flush=True)
                continue
            rows.append({"train_cases": n, "way": way, "workers": args.workers, **result})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| training cases | way | peak RSS (MB) | load (s) | to the first step (s) |\n|---|---|---|---|---|")
    for r in rows:
        memory, load, step = f"{r['peak_rss_mb']:.0f}", f"{r['load_s']:.1f}", f"{r['first_step_s']:.1f}"
        print(f"| {r['train_cases']} | {r['way']} | {memory} | {load} | {step} |")
    for way in ("memory", "cache-warm"):
        xs = [r["train_cases"] for r in rows if r["way"] == way]
        ys = [r["peak_rss_mb"] for r in rows if r["way"] == way]
        if len(xs) > 1:
            print(f"{way}: {np.polyfit(xs, ys, 1)[0]:.1f} MB of peak RSS per training case (least squares)")


if __name__ == "__main__":
    main()
