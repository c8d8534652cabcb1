"""Peak memory and time to the first training step of UPMC Food-101-sized data, fine-tuning, through the cache.

Writes synthetic JPEGs once in the real UPMC Food-101 layout (``images/{train,test}/<class>/<file>.jpg`` and
``texts/{train,test}_titles.csv`` without a header, as :func:`~simmlm.datasets.food101.loader.read_food101` reads
it): 384×512 (a quarter of them 512×384) JPEGs of quality 90, about 75 KB each, with web-page-like titles. To keep
writing quick, 16 pictures are encoded once and every file is one of their byte blobs with its own JPEG comment
segment (its number) inserted, so the files differ but decode to 16 pictures; decoding cost is that of a real
image of that size. Then, for each number ``N`` of images in the training CSV (the training split plus the
validation share that ``data.val_fraction`` splits off it; the test split is fixed: two images of each class),
and each way of loading, runs a fresh process that loads the splits the way
``simmlm benchmark food101 --set data.mode=finetune`` does, draws the first training batch and makes one
optimiser step, and reports that process's peak resident memory (``ru_maxrss``) and the seconds to that step.

Fine-tuning decodes every image once into a uint8 row file (``<split>-finetune-<key>.images.npy``, 3×S×S bytes
an image) beside a small ``.pt`` of the token ids, mask and classes under ``$SIMMLM_CACHE_DIR/food101/``; the
splits hold a :class:`~simmlm.data.rows.RowFile` and each batch reads its rows. Ways: ``cache-cold`` (an empty
cache: the decoding and the row file's writing are included) and ``cache-warm`` (the cache the cold run built; a
warm run without one is reported as failed, not silently built). There is no in-memory way: fine-tuning always
goes through the row file. The encoders are the smallest the example data uses (a CNN of width 4, 16-wide hashed
n-grams), so the numbers are about the data, not the model; the images are 224 px (``--image-size``) as in
``configs/food101.yaml``. The cold run reads the JPEGs from wherever the operating system has them (often its file
cache, right after they were written). Run from the repository root::

    python scripts/image_memory.py --root /tmp/food101-full --sizes 10000,50000   # --ways cache-cold,cache-warm

Disk: about 75 KB of source JPEG and a row-file entry of 3×224×224 = 150,528 bytes (plus 512 bytes of token ids)
per image: about 13 GB for ``--sizes 10000,50000``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from measure_child import first_step, measure  # scripts/ is on the path when a script in it runs

SHAPE = (384, 512)  # height, width of the pictures (every fourth one is turned: 512×384)
QUALITY = 90
PICTURES = 16  # distinct pictures; every file is one of them with its own comment segment
CLASSES = 101  # as UPMC Food-101 (fewer when the smallest size has under two images a class)
TEST_PER_CLASS = 2  # the test split (fixed; the training CSV grows)


def _pictures() -> list[bytes]:
    """The JPEG bytes of :data:`PICTURES` photo-like pictures: colour waves, blotches and pixel noise."""
    from PIL import Image

    blobs = []
    for k in range(PICTURES):
        rng = np.random.default_rng(k)
        h, w = SHAPE if k % 4 != 3 else SHAPE[::-1]
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        waves = [0.5 + 0.3 * np.sin(2 * np.pi * (f * xx + g * yy) + p) for f, g, p in rng.uniform(0.5, 4, (3, 3))]
        small = (rng.uniform(0, 255, (h // 8, w // 8, 3))).astype(np.uint8)
        blotches = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)) / 255 - 0.5
        picture = np.stack(waves, -1) + 0.3 * blotches + rng.normal(0, 0.04, (h, w, 3))
        buffer = io.BytesIO()
        Image.fromarray((np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buffer, "JPEG", quality=QUALITY)
        blobs.append(buffer.getvalue())
    return blobs


def write_images(root: Path, count: int) -> None:
    """Images ``img000000.jpg..`` under ``root/pool`` (written once; existing ones are kept)."""
    pool = root / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    blobs: list[bytes] = []
    for i in range(count):
        path = pool / f"img{i:06d}.jpg"
        if path.is_file():
            continue
        blobs = blobs or _pictures()
        note = f"simmlm image_memory {i}".encode()
        blob = blobs[i % PICTURES]  # SOI, then a comment segment (FF FE, its length), then the rest
        path.write_bytes(blob[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + blob[2:])


def link_splits(root: Path, train: int, classes: int) -> Path:
    """``root/n<train>``: the UPMC Food-101 layout, its images symbolic links to the pool (rebuilt each time)."""
    from simmlm.datasets.food101.loader import titles_csv
    from simmlm.datasets.food101.synthetic import _example_title

    data = root / f"n{train}"
    shutil.rmtree(data, ignore_errors=True)
    (data / "texts").mkdir(parents=True)
    names = [f"dish_{k:03d}" for k in range(classes)]
    test = TEST_PER_CLASS * classes
    rng = np.random.default_rng(0)
    for split, first, count in (("test", 0, test), ("train", test, train)):
        for name in names:
            (data / "images" / split / name).mkdir(parents=True)
        rows = []
        for j in range(count):
            name = names[j % classes]
            file = f"{name}_{j}.jpg"
            (data / "images" / split / name / file).symlink_to(root / "pool" / f"img{first + j:06d}.jpg")
            rows.append([file, _example_title(name, rng), name])
        with titles_csv(data, split).open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows[i] for i in rng.permutation(len(rows)))  # not grouped by class
    return data


def first_step_of(data: Path, image_size: int, batch_size: int) -> dict[str, float]:
    """Load the splits as a benchmark does, then one training step; this process's peak memory and time."""
    import yaml

    from simmlm.engine.config import RunConfig, find_config, resolve_config

    start = time.perf_counter()
    raw = yaml.safe_load(find_config("food101").read_text())
    raw["data"] |= {
        "data_dir": str(data),
        "mode": "finetune",
        "image_size": image_size,
        "image_encoder": {"kind": "cnn", "width": 4},
        "text_encoder": {"kind": "hashed", "dim": 16, "buckets": 256},
    }
    raw["train"] |= {"batch_size": batch_size}
    cfg = resolve_config(RunConfig.model_validate(raw))
    return first_step(cfg, batch_size, start)


def _megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder for the synthetic images and the caches")
    parser.add_argument("--sizes", default="10000,50000", help="images of the training CSV per measurement")
    parser.add_argument("--ways", default="cache-cold,cache-warm", help="which ways of loading to measure")
    parser.add_argument("--image-size", type=int, default=224, help="data.image_size (the row file's S)")
    parser.add_argument("--batch-size", type=int, default=64, help="train.batch_size of the first step")
    parser.add_argument("--child", type=Path, metavar="DATA", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(first_step_of(args.child, args.image_size, args.batch_size)))
        return
    sizes = [int(n) for n in args.sizes.split(",")]
    classes = min(CLASSES, min(sizes) // 2)  # two images a class at least: one trains, one validates
    write_images(args.root, TEST_PER_CLASS * classes + max(sizes))
    rows = []
    for n in sizes:
        data = link_splits(args.root, n, classes)
        cache = args.root / f"cache-n{n}"
        for way in args.ways.split(","):
            if way == "cache-cold":
                subprocess.run(["rm", "-rf", str(cache)], check=True)
            elif not any(cache.rglob("*.images.npy")):
                print(json.dumps({"train_images": n, "way": way, "failed": f"no cache in {cache}"}), flush=True)
                continue
            sets = ["--image-size", str(args.image_size), "--batch-size", str(args.batch_size)]
            result = measure([__file__, "--root", str(args.root), *sets, "--child", str(data)], cache)
            if isinstance(result, str):
                print(json.dumps({"train_images": n, "way": way, "failed": result}), flush=True)
                continue
            rows.append({"train_images": n, "way": way, **result, "cache_mb": _megabytes(cache)})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| training-CSV images | way | load (s) | to the first step (s) | peak RSS (MB) |\n|---|---|---|---|---|")
    for r in rows:
        load, step, memory = f"{r['load_s']:.1f}", f"{r['first_step_s']:.1f}", f"{r['peak_rss_mb']:.0f}"
        print(f"| {r['train_images']} | {r['way']} | {load} | {step} | {memory} |")
    for way in dict.fromkeys(r["way"] for r in rows):
        points = sorted((r["train_images"], r["peak_rss_mb"]) for r in rows if r["way"] == way)
        (x0, y0), (x1, y1) = points[0], points[-1]
        if x1 > x0:
            print(f"{way}: {(y1 - y0) / (x1 - x0) * 1000:.1f} MB of peak RSS per 1,000 images (N {x0} to {x1})")


if __name__ == "__main__":
    main()
