"""UPMC Food-101 (Wang et al. 2015), the image-text benchmark of the SimMLM and MMP papers: the data layer.

90,704 image-title pairs (a food photo and the title of the web page it came from), 101 classes, an official
train / test split. This module reads the dataset as it is distributed, decodes its JPEGs, draws the missing-rate
protocol of the literature, splits a stratified validation set off the training split, and writes a tiny
learnable stand-in in the same layout
(:func:`simmlm.datasets.food101.synthetic.write_example_food101`). There is no model code here.

Layout (as :func:`read_food101` expects it and the example writer writes it)::

    ROOT/images/train/<class>/<file>.jpg     e.g. images/train/apple_pie/apple_pie_0.jpg
    ROOT/images/test/<class>/<file>.jpg
    ROOT/texts/train_titles.csv              rows: image file name, title, class name
    ROOT/texts/test_titles.csv

What this relies on, and where it comes from (third-party public material, checked in code search):

- The folder layout, the ``<class>_<n>.jpg`` file names and the two CSV files: ``DATA.md`` of the missing-aware
  prompts code (github.com/YiLunLee/missing_aware_prompts, Lee et al., CVPR 2023), which points to the download at
  visiir.isir.upmc.fr and to the Kaggle copy ``gianmarco96/upmcfood101``.
- The CSVs have **no header row** and three columns in the order *image file name, title, class name*: every
  loader found reads them with pandas ``names=[...]`` and no header (e.g. ``names=["img_name", "desc", "class"]``,
  ``header=None, names=["img", "text", "class_name"]``) and then opens ``images/<split>/<class>/<img_name>``.
  One loader of the Kaggle copy drops a first row whose first cell is ``filename``, so some copies may carry a
  header: a first row whose three cells all name columns (e.g. ``filename,text,class_name``, in any order) is
  accepted as a header and its order is used.
- Not every image has a title: MAP's converter skips images "with no text data". Here an image on disk without a
  CSV row becomes an image-only item (title ``None``) instead of being dropped.
- The missing-rate protocol (:func:`missing_pattern`): MAP's ``vilt/datasets/food101_dataset.py`` marks a random
  ``int(N * rate)`` samples as missing; for ``both`` a share ``both_ratio`` (0.5) of those lose the image and the
  others the text, so no sample loses both. Here the count is rounded half up (``round(rate * N)``) and the draw is
  seeded.

Which sample lacks what is always told by the returned items and masks, never by the content.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from simmlm.data.specs import MissingKind

Split = Literal["train", "test"]

SPLITS: tuple[str, ...] = ("train", "test")
MISSING_KINDS: tuple[str, ...] = ("text", "image", "both")
#: Suffixes of the files that count as images when a folder holds an image without a CSV row.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
#: Column names an optional header row may use, per role (compared lower-case, stripped).
HEADER_NAMES: dict[str, frozenset[str]] = {
    "image": frozenset({"image", "img", "img_name", "image_name", "image_id", "filename", "file_name", "file"}),
    "title": frozenset({"title", "titles", "text", "desc", "description", "caption"}),
    "class": frozenset({"class", "class_name", "classname", "label", "food", "category"}),
}
_MAX_LISTED = 5  # how many offending rows an error message quotes


@dataclass(frozen=True)
class Food101Item:
    """One sample of a split: its class, and its image and title where it has them.

    Attributes:
        class_name: the class (the folder name under ``images/<split>/``), e.g. ``apple_pie``.
        image: path of the image file, or None when the CSV row names a file that does not exist
            (only with ``allow_missing_images=True``).
        title: the web page title, or None for an image without a CSV row (or a row with an empty title).
        line: the CSV line of the row, or None for an image without a CSV row.
    """

    class_name: str
    image: Path | None
    title: str | None
    line: int | None = None


@dataclass(frozen=True)
class _Row:
    line: int
    file: str
    title: str
    class_name: str


def titles_csv(root: Path, split: str) -> Path:
    """The titles CSV of a split: ``root/texts/<split>_titles.csv``."""
    return root / "texts" / f"{split}_titles.csv"


def _check_layout(root: Path, split: str) -> tuple[Path, Path]:
    """The split's CSV and image folder; ``FileNotFoundError`` naming what is missing and the layout expected."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    layout = "ROOT/images/{train,test}/<class>/<file>.jpg and ROOT/texts/{train,test}_titles.csv"
    if not root.is_dir():
        raise FileNotFoundError(f"UPMC Food-101 folder {root} not found (expected {layout})")
    for folder in ("texts", "images"):
        if not (root / folder).is_dir():
            raise FileNotFoundError(f"{root / folder}: folder not found; UPMC Food-101 needs {layout}")
    csv_path, images = titles_csv(root, split), root / "images" / split
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: file not found (the titles of the {split} split)")
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: folder not found (the images of the {split} split, one folder a class)")
    return csv_path, images


def _decode(path: Path) -> str:
    """The file's text (UTF-8, a BOM allowed); a ``ValueError`` naming the line of an undecodable byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(f"{path} line {line}: not UTF-8 text ({err.reason} at byte {err.start})") from err


def _header_order(cells: list[str]) -> list[str] | None:
    """The roles (``image``, ``title``, ``class``) of the columns if ``cells`` is a header row, else None."""
    if len(cells) != 3:
        return None
    roles = []
    for cell in cells:
        matches = [role for role, names in HEADER_NAMES.items() if cell.strip().lower() in names]
        if len(matches) != 1:
            return None
        roles.append(matches[0])
    return roles if len(set(roles)) == 3 else None


def _plain_name(value: str) -> bool:
    """Whether ``value`` is one path component (no separator, not ``.`` or ``..``)."""
    return bool(value) and "/" not in value and "\\" not in value and value not in (".", "..")


def _read_rows(path: Path) -> list[_Row]:
    """The rows of a titles CSV, every structural problem a ``ValueError`` naming the file and line."""
    reader = csv.reader(io.StringIO(_decode(path), newline=""), strict=True)
    rows: list[_Row] = []
    order = ["image", "title", "class"]
    first = True
    line = 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1  # a quoted title may span lines: report where the row starts
            if not any(c.strip() for c in cells):
                continue  # blank line
            if first:
                first = False
                header = _header_order(cells)
                if header is not None:
                    order = header
                    continue
            if len(cells) != 3:
                raise ValueError(
                    f"{path} line {start}: {len(cells)} cell(s), expected 3 (image file name, title, class name): "
                    f"{cells!r:.120}"
                )
            values = dict(zip(order, (c.strip() for c in cells), strict=True))
            for role in ("image", "class"):
                if not _plain_name(values[role]):
                    what = "image file name" if role == "image" else "class name"
                    raise ValueError(
                        f"{path} line {start}: {what} {values[role]!r} is empty or not a plain name "
                        "(no '/', '\\', '.' or '..')"
                    )
            rows.append(_Row(start, values["image"], values["title"], values["class"]))
    except csv.Error as err:
        where = f"the row from line {line} fails on line {reader.line_num}: {err}"
        raise ValueError(f"{path} line {line}: not a readable CSV row ({where}; a quote left open?)") from err
    return rows


def _list_images(images: Path) -> dict[str, set[str]]:
    """Class folder name -> names of the files in it (hidden entries skipped)."""
    found: dict[str, set[str]] = {}
    with os.scandir(images) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                with os.scandir(entry.path) as files:
                    found[entry.name] = {f.name for f in files if f.is_file() and not f.name.startswith(".")}
    return found


def _listing(rows: Sequence[_Row], text: str) -> str:
    """``line L: <text>`` for the first few rows, and how many more."""
    shown = "; ".join(f"line {r.line}: {text.format(row=r)}" for r in rows[:_MAX_LISTED])
    return shown + (f"; and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else "")


def read_food101(root: str | Path, split: Split, allow_missing_images: bool = False) -> list[Food101Item]:
    """Read one split of UPMC Food-101 (layout in the module docstring) as items.

    Every CSV row becomes an item in file order: its image ``images/<split>/<class>/<file>``, its title (None when
    the title cell is empty) and its class. Then every image on disk that no row names becomes an image-only item
    (title None), sorted by class and file name; only files ending in ``.jpg``, ``.jpeg`` or ``.png`` count, and a
    class folder that no row names contributes its images this way too. A row naming the same image as another
    row is kept as its own pair.

    Args:
        root: the dataset folder (holding ``images/`` and ``texts/``).
        split: ``"train"`` or ``"test"``.
        allow_missing_images: keep a row whose image file does not exist as a text-only item (image None) instead
            of raising; such a row with an empty title has neither modality and is left out.

    Returns:
        The items of the split.

    Raises:
        FileNotFoundError: ``root``, ``texts/``, ``images/``, ``images/<split>/`` or the CSV is missing.
        ValueError: a malformed CSV row (not three cells, an empty or path-like file or class name, not UTF-8,
            bad quoting), a class without an image folder, or (by default) rows whose image file does not exist;
            the message names the CSV and the lines.
    """
    root = Path(root)
    csv_path, images = _check_layout(root, split)
    rows = _read_rows(csv_path)
    on_disk = _list_images(images)
    unknown = [r for r in {r.class_name: r for r in reversed(rows)}.values() if r.class_name not in on_disk]
    if unknown:
        unknown.sort(key=lambda r: r.line)
        raise ValueError(
            f"{csv_path}: {len(unknown)} class(es) have no image folder in {images} (first use: "
            + _listing(unknown, "{row.class_name!r}")
            + f"); the folder has {len(on_disk)} class folder(s), e.g. {sorted(on_disk)[:_MAX_LISTED]}"
        )
    absent = [r for r in rows if r.file not in on_disk[r.class_name]]
    if absent and not allow_missing_images:
        raise ValueError(
            f"{csv_path}: {len(absent)} of {len(rows)} rows name an image file that does not exist ("
            + _listing(absent, f"images/{split}/{{row.class_name}}/{{row.file}}")
            + "); pass allow_missing_images=True to keep their titles as text-only items"
        )
    items = []
    for row in rows:
        present = row.file in on_disk[row.class_name]
        if present or row.title:
            image = images / row.class_name / row.file if present else None
            items.append(Food101Item(row.class_name, image, row.title or None, row.line))
    named = {(r.class_name, r.file) for r in rows}
    for class_name in sorted(on_disk):
        for name in sorted(on_disk[class_name]):
            if (class_name, name) not in named and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                items.append(Food101Item(class_name, images / class_name / name, None, None))
    return items


def load_image(path: str | Path, size: int) -> Tensor:
    """One image as a float tensor ``[3, size, size]`` in ``[0, 1]``.

    Converted to RGB, resized (bilinear) so that its shorter side is ``size`` (the longer side is rounded half
    up), then centre-cropped to ``size x size`` (an odd excess puts the extra pixel on the right / bottom).

    Args:
        path: the image file (JPEG, or any format Pillow reads).
        size: side of the square output, >= 1.

    Returns:
        The image, channels first.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``size`` < 1, or the file is not a readable image (corrupt or truncated); names the file.
    """
    from PIL import Image

    path = Path(path)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: not a readable image, corrupt or truncated ({err})") from err
    width, height = rgb.size
    scale = size / min(width, height)
    new_width = max(size, math.floor(width * scale + 0.5))
    new_height = max(size, math.floor(height * scale + 0.5))
    if (new_width, new_height) != (width, height):
        rgb = rgb.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left, top = (new_width - size) // 2, (new_height - size) // 2
    rgb = rgb.crop((left, top, left + size, top + size))
    array = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0).contiguous()


def _round_half_up(value: float) -> int:
    """``value`` rounded to the nearest integer, halves up (``round`` would round halves to even)."""
    return math.floor(value + 0.5)


def missing_pattern(num_samples: int, rate: float, kind: MissingKind, seed: int = 0) -> Tensor:
    """Availability of image and text under the missing-rate protocol of MAP / MMP.

    Exactly ``k = round(rate * num_samples)`` (half up) samples, a seeded random choice, are affected: with
    ``kind="text"`` they lose the text, with ``"image"`` the image; with ``"both"`` the first ``ceil(k / 2)`` of
    them lose the text and the other ``floor(k / 2)`` the image (a share ``rate / 2`` each), so no sample loses both.

    Args:
        num_samples: N, >= 0.
        rate: the share of affected samples, in ``[0, 1]``.
        kind: which modality goes missing: ``"text"``, ``"image"`` or ``"both"``.
        seed: seed of the draw; the same arguments always give the same pattern.

    Returns:
        Bool ``[N, 2]``, True where present; column 0 is the image, column 1 the text.

    Raises:
        ValueError: ``num_samples`` < 0, ``rate`` outside ``[0, 1]`` or an unknown ``kind``.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    if kind not in MISSING_KINDS:
        raise ValueError(f"kind must be one of {list(MISSING_KINDS)}, got {kind!r}")
    present = torch.ones(num_samples, 2, dtype=torch.bool)
    count = _round_half_up(rate * num_samples)
    chosen = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))[:count]
    if kind == "text":
        present[chosen, 1] = False
    elif kind == "image":
        present[chosen, 0] = False
    else:
        lose_text = count - count // 2
        present[chosen[:lose_text], 1] = False
        present[chosen[lose_text:], 0] = False
    return present


def stratified_split(labels: Sequence[int], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split sample indices into training and validation, class by class.

    A class of ``n >= 2`` samples sends ``round(val_fraction * n)`` (half up) of them, a seeded random choice, to
    validation, but at least one and never all of them; a class of one sample stays in training.

    Args:
        labels: the class of each sample.
        val_fraction: the share of each class that goes to validation, in ``(0, 1)``.
        seed: seed of the draw.

    Returns:
        ``(train_idx, val_idx)``: disjoint ascending index lists that together cover every sample.

    Raises:
        ValueError: ``val_fraction`` outside ``(0, 1)``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    values = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for label in np.unique(values):
        members = np.flatnonzero(values == label)
        if len(members) < 2:
            continue
        count = min(max(_round_half_up(val_fraction * len(members)), 1), len(members) - 1)
        val.extend(int(i) for i in rng.permutation(members)[:count])
    chosen = set(val)
    return [i for i in range(len(values)) if i not in chosen], sorted(val)
