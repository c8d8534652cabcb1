"""The files that hold MulT / MMSA feature sequences: their pickles, read without running code, and a plain ``.npz``
layout that needs no unpickling at all.

A pickle can name any Python callable and have it called while loading, so ``pickle.load`` on a downloaded file
runs whatever its author chose. :func:`load_feature_pickle` admits only what these files hold (dicts, lists,
strings, numbers, NumPy arrays) and refuses anything else before it is called.

The ``.npz`` layout (written by :func:`convert_feature_pickle`, ``simmlm convert-features``): one array per split
and key, named ``SPLIT/KEY`` (``train/text``, ``valid/regression_labels``, ``test/id``, ...), read with
``allow_pickle=False``. Arrays of Python strings or bytes become NumPy string arrays; anything else that is not a
plain array (e.g. ragged lists) is left out and named.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from simmlm.fileio import atomic_path

#: What a MulT / MMSA feature pickle may reference besides dicts, lists, strings and numbers: NumPy's arrays, dtypes
#: and scalars (under numpy 1's and numpy 2's module names), ordered dicts, and the byte-string codec of Python 2
#: pickles. Anything else (a function, ``os.system``, a class of another package) is refused before it is called.
_PICKLE_GLOBALS = {
    *(
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    ),
    *((module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
}


class RefusedPickle(pickle.UnpicklingError):
    """A feature pickle references something it must not hold (raised before it is called)."""


class _FeatureUnpickler(pickle.Unpickler):
    """Unpickles only the types a MulT / MMSA feature file holds (:data:`_PICKLE_GLOBALS`), so a crafted file
    cannot run code: ``pickle.load`` would call whatever the file names."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise RefusedPickle(
                f"it references {module}.{name}, which a feature pickle never holds (only dicts, lists, strings, "
                "numbers and NumPy arrays are read; nothing in the file was run)"
            )
        return super().find_class(module, name)


def load_feature_pickle(path: Path) -> Any:
    """The content of a MulT / MMSA feature pickle, read with :class:`_FeatureUnpickler` (Python 2 pickles too)."""
    with path.open("rb") as fh:
        try:
            return _FeatureUnpickler(fh).load()
        except UnicodeDecodeError:  # pickles written by Python 2 (older MulT files)
            fh.seek(0)
            return _FeatureUnpickler(fh, encoding="latin1").load()


def read_feature_file(path: Path) -> dict[str, Any]:
    """The splits of a feature file: a ``.npz`` in the layout above, else a pickle (:func:`load_feature_pickle`)."""
    if path.suffix.lower() != ".npz":
        return load_feature_pickle(path)
    splits: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as arrays:
        for name in arrays.files:
            split, _, key = name.partition("/")
            if not key:
                raise ValueError(f"{path}: array {name!r} is not named SPLIT/KEY (e.g. train/text)")
            splits.setdefault(split, {})[key] = arrays[name]
    return splits


def convert_feature_pickle(source: Path, target: Path) -> list[str]:
    """Write the MulT / MMSA pickle ``source`` as a ``.npz`` file ``target`` (atomically); returns the ``SPLIT/KEY``
    entries left out because they are not plain arrays."""
    data = load_feature_pickle(source)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{source} does not hold a dict of splits, each a dict of arrays")
    arrays, left_out = {}, []
    for split, content in data.items():
        for key, value in content.items():
            array = _plain_array(value)
            if array is None:
                left_out.append(f"{split}/{key}")
            else:
                arrays[f"{split}/{key}"] = array
    try:
        with atomic_path(target) as tmp, tmp.open("wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
    except OSError as err:
        raise OSError(f"cannot write {target} ({err.strerror or err})") from err
    return left_out


def _plain_array(value: Any) -> np.ndarray | None:
    """``value`` as an array NumPy saves without pickling (strings and bytes as a string array), or None."""
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        return None
    if array.dtype != object:
        return array
    flat = array.ravel().tolist()
    if not all(isinstance(v, str | bytes) for v in flat):
        return None
    text = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in flat]
    return np.array(text, dtype=str).reshape(array.shape)
