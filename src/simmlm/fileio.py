"""Atomic file writes: the project's one helper for "write to a temporary file beside it, then rename".

A kill leaves the old file or the new one, never half of one. Plain Python and torch only, so every layer
(datasets' caches, run folders, predictions) can use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from simmlm.portable import cache_subfolder


def cache_dir() -> Path:
    """Where built arrays (avMNIST's MFCCs, Food-101's embeddings) are cached: ``$SIMMLM_CACHE_DIR`` or
    ``~/.cache/simmlm``; in portable mode its ``portable/`` subfolder (:func:`simmlm.portable.cache_subfolder`)."""
    return Path(os.environ.get("SIMMLM_CACHE_DIR", Path.home() / ".cache" / "simmlm")) / cache_subfolder()


@contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that read it keep working) to write to.

    When the block ends without an error the file is flushed to disk and renamed over ``path``; otherwise it is
    removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)
