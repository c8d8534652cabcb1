"""Reading numeric arrays from files a user gives (``.npy``, ``.npz``): one clear error per bad file, nothing
pickled ever loaded, no memory asked for beyond what the file holds."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from simmlm.fileio import not_a_file


def check_array(array: object, where: str) -> np.ndarray:
    """A numeric, finite array as ``float32``, shape unchanged (:func:`as_model_input` adds the image channel)."""
    if not isinstance(array, np.ndarray) or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"{where}: dtype {getattr(array, 'dtype', type(array).__name__)} is not numeric")
    if np.iscomplexobj(array):
        raise ValueError(f"{where}: complex values are not supported")
    if array.ndim == 0 or array.size == 0:
        what = "a scalar" if array.ndim == 0 else f"an array of no values (shape {list(array.shape)})"
        raise ValueError(f"{where}: {what}; a modality needs an array of at least one value")
    with np.errstate(over="ignore"):
        values = array.astype(np.float32)
    bad = ~np.isfinite(values)
    if bad.any():  # one pass over the array; only the offending values are looked at again
        source = array[bad]
        if not np.isfinite(source).all():
            raise ValueError(f"{where}: contains {int((~np.isfinite(source)).sum())} NaN or infinite value(s)")
        raise ValueError(f"{where}: values beyond float32's range (±3.4e38), e.g. {source.flat[0]:g}")
    return values


def read_npy(path: Path) -> np.ndarray:
    """One ``.npy`` file through :func:`check_array`; unreadable, truncated or pickled files raise ``ValueError``."""
    problem = not_a_file(path)
    if problem:
        raise FileNotFoundError(problem)
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: an empty file (0 bytes), not a .npy array")
    with path.open("rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            hint = "; it looks like text: save arrays with numpy.save" if _is_text(path) else ""
            raise ValueError(f"{path}: not a NumPy .npy file (it does not start with the .npy header{hint})")
        handle.seek(0)
        _check_npy_size(handle, path)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err) or "pickled" in str(err):
            raise ValueError(f"{path}: holds Python objects (a pickled object array), not numbers") from err
        raise ValueError(f"{path}: not a readable numeric .npy array ({err})") from err
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: a damaged or truncated .npy file ({err})") from err
    return check_array(array, str(path))


def _check_npy_size(handle: Any, path: Path) -> None:
    """Refuse a ``.npy`` (``handle`` open at its start) whose header claims more data than the file holds (a damaged
    or crafted header, e.g. 1e11 floats, would otherwise ask for that much memory before failing)."""
    try:
        version = np.lib.format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            return  # a newer format: np.load checks it
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(handle)
        header_end = handle.tell()
    except (ValueError, OSError, EOFError, SyntaxError):
        return  # a damaged header: np.load says what is wrong
    claimed = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    held = path.stat().st_size - header_end
    if claimed > held and not dtype.hasobject:  # an object array is refused by np.load(allow_pickle=False)
        raise ValueError(
            f"{path}: its header claims an array of shape {list(shape)} ({claimed:,} bytes) but the file holds "
            f"{held:,}: truncated or damaged"
        )


def _is_text(path: Path) -> bool:
    """Whether a file's first KiB decodes as UTF-8 text."""
    try:
        with path.open("rb") as handle:
            handle.read(1024).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Archives:
    """``.npz`` archives opened once each and closed on exit."""

    def __init__(self) -> None:
        self.open: dict[Path, Any] = {}

    def __enter__(self) -> Archives:
        return self

    def __exit__(self, *exc: object) -> None:
        for archive in self.open.values():
            archive.close()

    def read(self, path: Path, key: str) -> np.ndarray:
        if path not in self.open:
            problem = not_a_file(path)
            if problem:
                raise FileNotFoundError(problem)
            try:
                self.open[path] = np.load(path, allow_pickle=False)
            except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
                raise ValueError(f"{path}: not a readable .npz archive ({err})") from err
        archive = self.open[path]
        if key not in archive.files:
            raise ValueError(f"{path}: no array named {key!r} (the archive holds {len(archive.files)} arrays)")
        try:
            array = archive[key]
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}[{key!r}]: not a readable numeric array ({err})") from err
        return check_array(array, f"{path}[{key!r}]")
