"""Arrays too large to hold in memory, read row by row from a ``.npy`` file: a dataset's memory then does not grow
with its size (UPMC Food-101's raw images when the encoders are fine-tuned: 90,704 × 3 × 224 × 224 bytes).

:class:`RowFile` reads the rows a batch asks for with positioned reads (``os.pread``), not a memory map: the pages
read stay in the operating system's file cache, which it frees under pressure, and never count in the process's
resident memory. :func:`write_rows` fills such a file a block of rows at a time, atomically (a temporary name, then a
rename), so building it needs memory for one block only. :class:`~simmlm.data.base.TensorMultimodalDataset` takes a
``RowFile`` wherever it takes a tensor and zero-fills its missing rows when a batch is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from simmlm.fileio import atomic_path


class RowFile:
    """The rows of a C-ordered ``.npy`` array, read on demand (``rows``: which of the file's rows, in order).

    Indexing with an integer gives one row as a tensor, with a sequence or tensor of integers a stacked batch;
    :meth:`take` selects rows without reading them. It pickles as its path and row selection (DataLoader workers
    open the file themselves).
    """

    lazy = True

    def __init__(self, path: str | Path, rows: np.ndarray | None = None) -> None:
        self.path = Path(path)
        with self.path.open("rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(handle)
            self._offset = handle.tell()
        if fortran or dtype.hasobject:
            raise ValueError(f"{self.path}: needs a C-ordered array of plain numbers")
        self._row_shape, self._dtype = tuple(shape[1:]), dtype
        self._row_bytes = int(np.prod(self._row_shape, dtype=np.int64)) * dtype.itemsize
        self.rows = np.arange(shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self._row_shape))

    @property
    def dtype(self) -> torch.dtype:
        return torch.from_numpy(np.empty(0, dtype=self._dtype)).dtype

    @property
    def ndim(self) -> int:
        return 1 + len(self._row_shape)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, rows: Sequence[int] | np.ndarray) -> RowFile:
        """These rows (indices into this selection), unread."""
        return RowFile(self.path, self.rows[np.asarray(rows, dtype=np.int64)])

    def __getitem__(self, index: int | Sequence[int] | Tensor) -> Tensor:
        single = isinstance(index, int) or (isinstance(index, Tensor) and index.ndim == 0)
        wanted = self.rows[np.atleast_1d(np.asarray(index, dtype=np.int64))]
        out = np.empty((len(wanted), *self._row_shape), dtype=self._dtype)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for k, row in enumerate(wanted.tolist()):
                data = os.pread(fd, self._row_bytes, self._offset + row * self._row_bytes)
                if len(data) != self._row_bytes:
                    raise ValueError(f"{self.path} is shorter than its header says (row {row}): rebuild the cache")
                out[k] = np.frombuffer(data, dtype=self._dtype).reshape(self._row_shape)
        finally:
            os.close(fd)
        tensor = torch.from_numpy(out)
        return tensor[0] if single else tensor


def write_rows(
    path: Path, count: int, blocks: Iterable[tuple[Sequence[int], Tensor]], row_shape: Sequence[int], dtype: np.dtype
) -> RowFile:
    """Write a ``[count, *row_shape]`` ``.npy`` at ``path`` from ``(rows, values)`` blocks (rows never written are
    zeros), one block in memory at a time; atomic: ``path`` appears complete or not at all. Rows are written with
    positioned writes (``os.pwrite``), not through a memory map, so the pages written never count in this process's
    resident memory."""
    dtype = np.dtype(dtype)
    shape = (int(count), *(int(n) for n in row_shape))
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        offset = handle.tell()
        handle.truncate(offset + count * row_bytes)  # rows never written read as zeros
        handle.flush()
        for rows, values in blocks:
            data = np.ascontiguousarray(values.numpy(), dtype=dtype).reshape(-1, row_bytes // dtype.itemsize)
            for row, chunk in zip(np.asarray(rows, dtype=np.int64).tolist(), data, strict=True):
                os.pwrite(handle.fileno(), chunk.tobytes(), offset + row * row_bytes)
    return RowFile(path)
