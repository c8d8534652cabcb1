"""Atomic file writes: the project's one helper for "write to a temporary file beside it, then rename".

A kill leaves the old file or the new one, never half of one. Plain Python, torch and PyYAML only, so every layer
(datasets' caches, run folders, predictions) can use it. Also a new folder filled under a temporary name
(:func:`new_folder`, the example writers'), the output folders' lock, and the one-line reasons a path a user gives
cannot be read (:func:`not_a_file`, :func:`read_yaml`).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml

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
    """``torch.save`` to ``path`` atomically (:func:`atomic_path`); a failed write (a full disk: torch raises a
    ``RuntimeError`` from its zip writer) is an ``OSError`` naming the file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        try:
            torch.save(obj, handle)
        except RuntimeError as err:
            raise OSError(f"could not write {path} (is the disk full or the folder not writable?): {err}") from err


def check_new_folder(directory: Path) -> None:
    """``ValueError`` unless ``directory`` is new or an empty folder."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(f"{directory} already exists and is not empty; choose a new folder")


@contextmanager
def new_folder(directory: Path) -> Iterator[Path]:
    """A temporary folder beside ``directory`` that becomes ``directory`` when the block ends (and is removed if it
    raises), so an interrupted writer (the example-data writers) leaves nothing half written."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        yield tmp
        if directory.exists():
            directory.rmdir()
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


LOCK_NAME = ".simmlm.lock"


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Own ``folder`` for one run at a time: ``folder/.simmlm.lock`` holds the owner's PID, host, command and start
    time, created exclusively, and is removed when the block ends. A lock whose process is gone (same host) is stale
    and taken over; a live one is a ``ValueError`` naming its owner, so two runs never write into one folder (the
    second would delete the first's checkpoints). A folder it created and nothing was written to is removed again."""
    import json
    import socket
    import sys
    import time

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder: choose another --out")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot create the output folder {folder} ({err.strerror or err}): choose another --out"
        ) from err
    if any(os.environ.get(rank, "0") != "0" for rank in ("RANK", "LOCAL_RANK", "NODE_RANK")):
        yield  # another process of the same distributed run (launched with the same command): rank 0 owns the lock
        return
    lock = folder / LOCK_NAME
    host = socket.gethostname()
    me = {"pid": os.getpid(), "host": host, "command": " ".join(sys.argv), "what": what, "since": time.ctime()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text())
                pid, owner_host = int(owner["pid"]), str(owner["host"])
            except (OSError, ValueError, KeyError, TypeError):
                owner, pid, owner_host = {}, -1, host  # unreadable: written by a process killed mid-write
            if owner_host == host and (pid < 0 or not alive(pid)):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise ValueError(
                f"{folder} is in use by another simmlm run ({owner.get('what', 'a run')}: pid {pid} on {owner_host} "
                f"since {owner.get('since', '?')}, `{owner.get('command', '?')}`); wait for it to finish, choose "
                f"another --out, or delete {lock} if that run is gone"
            ) from None
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(me))
        break
    else:
        raise ValueError(f"could not take {lock}: another run keeps creating it")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        if created and not any(p.is_file() for p in folder.rglob("*")):
            shutil.rmtree(folder, ignore_errors=True)  # a run refused before it wrote a file leaves nothing behind


def not_a_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a regular file, as a message naming it (``None`` when it can): not found, a
    folder, a symlink loop, no permission, or something else (a pipe, a device)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        why = {errno.ELOOP: "a symlink loop, not a file", errno.EACCES: "permission denied"}
        return f"{path}: {why.get(err.errno or 0, 'file not found')}"
    if stat.S_ISDIR(mode):
        return f"{path}: a folder, not a file"
    return None if stat.S_ISREG(mode) else f"{path}: not a regular file (a pipe, socket or device)"


def read_yaml(path: str | Path) -> Any:
    """The content of a YAML file a user gives; a ``ValueError`` naming it when it is not a readable file or not
    YAML (the parser's message on one line)."""
    problem = not_a_file(path)
    if problem:
        raise ValueError(problem)
    try:
        return yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable YAML file ({' '.join(str(err).split())})") from err
