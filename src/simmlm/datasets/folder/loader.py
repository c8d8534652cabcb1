"""Your own data: a folder with a CSV manifest and one array file per modality per sample.

Layout (all paths relative to the folder)::

    DIR/manifest.csv            sample_id,label,split,<modality 1>,<modality 2>,...
    DIR/<any path>.npy          one array per (sample, modality), e.g. image/s001.npy
    DIR/<any path>.npz          or one archive per modality holding an array per sample id

- ``sample_id``: unique, non-empty. ``split``: ``train``, ``val`` or ``test``; every split needs at least one row.
- ``label``: if every label is an integer, the labels are the class indices ``0..K-1`` (``K`` = largest + 1, or
  ``num_classes``); otherwise every label is a class name and the names, sorted, become indices ``0..K-1``. Labels
  that mix the two (a typo ``l`` or ``1.0`` among integers) are an error naming the odd rows.
- Every other column is a modality, in column order. A cell holds the file of that modality for that sample:
  a ``.npy`` path, or a ``.npz`` path whose array under the key ``sample_id`` is the sample. An empty cell means
  the modality is missing for that sample (at least one per sample must be present).
- Arrays are numeric and finite, and every sample of a modality has the same shape (messages quote the files' own
  shapes). 2-D arrays ``[H, W]`` are read as one-channel images ``[1, H, W]``, except for the modalities listed in
  ``sequences``, whose 2-D arrays are ``[T, D]`` feature sequences (frames x features), kept as they are and
  standardised per feature; other ranks are kept.
- ``standardize``: each modality is standardised with a mean and standard deviation fitted on the training samples
  that have it (per feature for 1-D inputs, per channel ``[C, ...]`` otherwise); the statistics are kept in
  ``Splits.preprocessing`` and travel with checkpoints, so ``simmlm predict`` applies the same scaling.

Every problem raises one ``ValueError`` (or ``FileNotFoundError``) naming the manifest line, sample and file.
"""

from __future__ import annotations

import collections
import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simmlm.data.arrays import Archives, read_npy
from simmlm.data.base import Splits, TensorMultimodalDataset
from simmlm.fileio import not_a_file

SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("sample_id", "label", "split")
_MODALITY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class _Row:
    line: int
    sample_id: str
    label: str
    split: str
    cells: dict[str, str]


def _read_manifest(path: Path) -> tuple[list[str], list[_Row]]:
    """Modality names (column order) and rows of a manifest, with every structural check."""
    problem = not_a_file(path)
    if problem:
        raise FileNotFoundError(f"manifest {problem} (a folder dataset needs a {path.name} listing samples)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            body = [(reader.line_num, cells) for cells in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: not a readable UTF-8 CSV file ({err})") from err
    except OSError as err:
        raise OSError(f"manifest {path}: cannot be read ({err.strerror or err})") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; the header must have {list(REQUIRED_COLUMNS)} + modalities"
        )
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate column(s) {duplicates}")
    modalities = [c for c in header if c not in REQUIRED_COLUMNS]
    bad = [m for m in modalities if not _MODALITY_NAME.match(m)]
    if bad:
        raise ValueError(f"{path}: modality column names must match [A-Za-z][A-Za-z0-9_-]*, got {bad}")
    if len(modalities) < 2:
        raise ValueError(
            f"{path}: needs at least 2 modality columns besides {list(REQUIRED_COLUMNS)}, got {modalities}"
        )
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    for line, cells in body:
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) != len(header):
            raise ValueError(f"{path} line {line}: {len(cells)} cells, the header has {len(header)}")
        values = dict(zip(header, (c.strip() for c in cells), strict=True))
        sample_id = values["sample_id"]
        where = f"{path} line {line} (sample {sample_id!r})"
        if not sample_id:
            raise ValueError(f"{path} line {line}: empty sample_id")
        if sample_id in seen:
            raise ValueError(f"{where}: duplicate sample_id, first used on line {seen[sample_id]}")
        seen[sample_id] = line
        if values["split"] not in SPLITS:
            raise ValueError(f"{where}: unknown split {values['split']!r}; use one of {list(SPLITS)}")
        if not values["label"]:
            raise ValueError(f"{where}: empty label")
        if not any(values[m] for m in modalities):
            raise ValueError(f"{where}: every modality is missing; a sample needs at least one")
        rows.append(_Row(line, sample_id, values["label"], values["split"], {m: values[m] for m in modalities}))
    for split in SPLITS:
        if not any(r.split == split for r in rows):
            raise ValueError(f"{path}: the {split!r} split has no rows (mark some samples split={split})")
    return modalities, rows


def _class_indices(rows: list[_Row], num_classes: int | None, path: Path) -> tuple[list[int], list[str]]:
    """Integer labels (all labels integers) or sorted class names -> indices; also the class names."""
    integer = [r.label.lstrip("-").isdigit() for r in rows]
    if any(integer) and not all(integer):  # e.g. a typo `l` or `1.0` among integer labels
        minority = [r for r, i in zip(rows, integer, strict=True) if i != (sum(integer) * 2 >= len(rows))]
        named = ", ".join(f"line {r.line} (sample {r.sample_id!r}): {r.label!r}" for r in minority[:5])
        more = f" and {len(minority) - 5} more" if len(minority) > 5 else ""
        raise ValueError(
            f"{path}: {sum(integer)} labels are integers and {len(rows) - sum(integer)} are not; the odd ones out: "
            f"{named}{more}. Use class indices 0..K-1 for every sample, or class names for every sample"
        )
    indices = [int(r.label) for r in rows] if all(integer) else []
    if indices:
        for row, index in zip(rows, indices, strict=True):
            if index < 0 or (num_classes is not None and index >= num_classes):
                allowed = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
                raise ValueError(
                    f"{path} line {row.line} (sample {row.sample_id!r}): label {index} outside the classes {allowed}"
                )
        k = num_classes if num_classes is not None else max(indices) + 1
        return indices, [str(i) for i in range(k)]
    names = sorted({r.label for r in rows})
    spellings: dict[str, list[str]] = {}
    for name in names:
        spellings.setdefault(" ".join(name.split()).casefold(), []).append(name)
    clash = next((group for group in spellings.values() if len(group) > 1), None)
    if clash is not None:
        rare = min(clash, key=lambda name: sum(r.label == name for r in rows))
        line = next(r.line for r in rows if r.label == rare)
        raise ValueError(
            f"{path}: the class names {', '.join(map(repr, clash))} differ only in case or spaces (e.g. line {line}), "
            "so they would be different classes; use one spelling"
        )
    if num_classes is not None and len(names) > num_classes:
        raise ValueError(f"{path}: {len(names)} class names {names[:10]} but num_classes is {num_classes}")
    lookup = {name: i for i, name in enumerate(names)}
    return [lookup[r.label] for r in rows], names


def as_model_input(array: np.ndarray, sequence: bool = False) -> np.ndarray:
    """A file's array as the model reads it: 2-D ``[H, W]`` becomes ``[1, H, W]`` (a one-channel image), unless it
    is a ``[T, D]`` feature ``sequence``."""
    return array[None] if array.ndim == 2 and not sequence else array


def _read_cell(
    root: Path, cell: str, sample_id: str, archives: Archives, outside_paths: bool = False
) -> np.ndarray | None:
    """The array of one manifest cell (None for an empty cell: the modality is missing)."""
    if not cell:
        return None
    path = root / cell
    if not outside_paths:
        try:
            resolved = path.resolve()
        except (RuntimeError, OSError) as err:  # a symlink loop (RuntimeError before Python 3.13)
            raise FileNotFoundError(f"{path}: a symlink loop, not a file") from err
        if not resolved.is_relative_to(root.resolve()):
            raise ValueError(
                f"{cell!r} leads outside the data folder (to {resolved}); set data.outside_paths: true "
                "(--set data.outside_paths=true) to read files there"
            )
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return read_npy(path)
    if suffix == ".npz":
        return archives.read(path, sample_id)
    raise ValueError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .npy, or .npz keyed by sample_id")


def _load_modality(
    root: Path, name: str, rows: list[_Row], manifest: Path, sequence: bool = False, outside_paths: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Stacked arrays ``[N, ...]`` (zeros where missing) and the presence vector ``[N]`` of one modality. Samples
    whose shape differs from the modality's most common one are refused, the first of them named."""
    arrays: list[np.ndarray | None] = []
    with Archives() as archives:
        for row in rows:
            try:
                arrays.append(_read_cell(root, row.cells[name], row.sample_id, archives, outside_paths))
            except (ValueError, OSError) as err:
                raise type(err)(f"{_where(manifest, row, name)}: {err}") from err
    shapes = collections.Counter(a.shape for a in arrays if a is not None)
    shape, count = shapes.most_common(1)[0]  # the caller checks that every modality has a training sample
    for row, array in zip(rows, arrays, strict=True):
        if array is not None and array.shape != shape:  # the odd one out, not whichever sample came first
            usual = next(r.sample_id for r, a in zip(rows, arrays, strict=True) if a is not None and a.shape == shape)
            raise ValueError(
                f"{_where(manifest, row, name)}: {row.cells[name]} has shape {list(array.shape)}, but {count} other "
                f"samples (e.g. {usual!r}) have {list(shape)}; every sample of a modality must have the same shape"
            )
    if sequence and len(shape) != 2:
        raise ValueError(
            f"{manifest}: modality {name!r} is listed in sequences, but its arrays have shape {list(shape)}; a "
            "feature sequence is a 2-D [T, D] array (frames x features)"
        )
    present = np.array([a is not None for a in arrays])
    zeros = np.zeros(shape, dtype=np.float32)
    return np.stack([as_model_input(zeros if a is None else a, sequence) for a in arrays]), present


def _where(manifest: Path, row: _Row, name: str) -> str:
    return f"{manifest.name} line {row.line} (sample {row.sample_id!r}, modality {name!r})"


def fit_standardization(values: np.ndarray, sequence: bool = False) -> dict[str, list[Any]]:
    """Mean and std of ``[N, ...]`` present samples: per feature for ``[N, D]`` and for ``[N, T, D]`` sequences, per
    channel for ``[N, C, ...]``."""
    axes = (0,) if values.ndim == 2 else (0, 1) if sequence else (0, *range(2, values.ndim))
    with np.errstate(over="ignore", invalid="ignore"):
        mean = values.mean(axis=axes, keepdims=True)[0].astype(np.float64)
        std = values.std(axis=axes, keepdims=True)[0].astype(np.float64)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):  # float32 sums overflowed (values near 1e38)
        mean = values.mean(axis=axes, keepdims=True, dtype=np.float64)[0]
        std = values.std(axis=axes, keepdims=True, dtype=np.float64)[0]
    std = np.where(std < 1e-8, 1.0, std)  # constant features are only centred
    return {"mean": mean.tolist(), "std": std.tolist()}


def apply_standardization(array: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """``(x - mean) / std`` with statistics from :func:`fit_standardization` (``array``: one sample or ``[N, ...]``)."""
    mean, std = np.asarray(stats["mean"], dtype=np.float32), np.asarray(stats["std"], dtype=np.float32)
    return ((array - mean) / std).astype(np.float32)


def _iter_splits(rows: list[_Row]) -> Iterator[tuple[str, np.ndarray]]:
    split = np.array([r.split for r in rows])
    for name in SPLITS:
        yield name, np.flatnonzero(split == name)


def load_folder(
    root: str | Path,
    manifest: str = "manifest.csv",
    standardize: bool = True,
    num_classes: int | None = None,
    sequences: Sequence[str] = (),
    outside_paths: bool = False,
) -> Splits:
    """Read a folder dataset (layout in the module docstring) into train / validation / test splits; the modalities
    in ``sequences`` are ``[T, D]`` feature sequences. A manifest path that leads outside ``root`` (``..``, an
    absolute path, a symlink), once resolved, is refused unless ``outside_paths``."""
    root = Path(root)
    if num_classes is not None and num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (or None: from the labels), got {num_classes}")
    manifest_path = root / manifest
    modalities, rows = _read_manifest(manifest_path)
    labels, classes = _class_indices(rows, num_classes, manifest_path)
    if len(classes) < 2:
        raise ValueError(f"{manifest_path}: every sample has the class {classes[0]!r}; a classifier needs two or more")
    trained = {label for label, row in zip(labels, rows, strict=True) if row.split == "train"}
    unseen = next((row for label, row in zip(labels, rows, strict=True) if label not in trained), None)
    if unseen is not None:
        raise ValueError(
            f"{manifest_path} line {unseen.line} (sample {unseen.sample_id!r}): class {unseen.label!r} is in the "
            f"{unseen.split} split but in no training sample, so no model can learn it"
        )
    train_rows = [r for r in rows if r.split == "train"]
    for name in modalities:
        if not any(r.cells[name] for r in train_rows):
            raise ValueError(f"{manifest_path}: modality {name!r} is missing for every training sample")
    unknown = sorted(set(sequences) - set(modalities))
    if unknown:
        raise ValueError(f"sequences names modalities the manifest does not have: {unknown}; it has {modalities}")
    loaded = {
        name: _load_modality(root, name, rows, manifest_path, name in sequences, outside_paths) for name in modalities
    }
    shapes = {name: list(values.shape[1:]) for name, (values, _) in loaded.items()}
    preprocessing: dict[str, Any] = {
        "dataset": "folder",
        "classes": classes,
        "shapes": shapes,
        "standardize": {},
        "sequences": list(sequences),
    }
    is_train = np.array([r.split == "train" for r in rows])
    inputs: dict[str, np.ndarray] = {}
    for name, (values, present) in loaded.items():
        if standardize:
            stats = fit_standardization(values[present & is_train], name in sequences)
            preprocessing["standardize"][name] = stats
            values = np.where(present.reshape(-1, *[1] * (values.ndim - 1)), apply_standardization(values, stats), 0)
        inputs[name] = values.astype(np.float32)
    mask = np.stack([loaded[name][1] for name in modalities], axis=1)
    targets = np.asarray(labels, dtype=np.int64)

    def part(index: np.ndarray) -> TensorMultimodalDataset:
        return TensorMultimodalDataset(
            {name: torch.from_numpy(values[index]) for name, values in inputs.items()},
            torch.from_numpy(mask[index]),
            torch.from_numpy(targets[index]),
            [rows[i].sample_id for i in index],
        )

    parts = {name: part(index) for name, index in _iter_splits(rows)}
    shape_text = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
    present_pct = ", ".join(f"{name} {mask[is_train, m].mean():.0%}" for m, name in enumerate(modalities))
    counts = {s: np.bincount(targets[index], minlength=len(classes)) for s, index in _iter_splits(rows)}
    per_class = ", ".join(
        f"{n} {counts['train'][k]}/{counts['val'][k]}/{counts['test'][k]}" for k, n in enumerate(classes)
    )
    description = (
        f"Folder dataset {Path(root).name} ({manifest}): {len(rows)} samples, {len(classes)} classes, "
        f"modalities {shape_text}; "
        f"splits from the manifest (train {len(parts['train'])}, val {len(parts['val'])}, test {len(parts['test'])}); "
        f"present in training: {present_pct}; samples per class (train/val/test): {per_class}; "
        + ("standardised with training statistics." if standardize else "not standardised.")
    )
    return Splits(parts["train"], parts["val"], parts["test"], len(classes), description, preprocessing)


def read_input(name: str, path: Path, preprocessing: dict[str, Any]) -> torch.Tensor:
    """One raw ``.npy`` of a folder-dataset modality -> the model's input tensor, standardised as in training."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(
            f"{path}: inputs of folder-dataset runs must be .npy files, got {path.suffix or 'no suffix'!r}"
        )
    raw = read_npy(path)
    array = as_model_input(raw, name in preprocessing.get("sequences", []))
    expected = (preprocessing.get("shapes") or {}).get(name)
    if expected is not None and list(array.shape) != list(expected):
        image = len(expected) == 3 and expected[0] == 1
        files = f" (or a 2-D {list(expected[1:])} array, read as one channel)" if image else ""
        raise ValueError(f"{path}: {name} has shape {list(raw.shape)}, the model expects {list(expected)}{files}")
    stats = (preprocessing.get("standardize") or {}).get(name)
    return torch.from_numpy(apply_standardization(array, stats) if stats else array)
