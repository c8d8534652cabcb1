"""Preprocessed BraTS-style cases on disk, read one case at a time (the idea of MONAI's ``PersistentDataset``).

Reading and preprocessing a case (:func:`simmlm.datasets.brats.loader.load_case`: four gzipped NIfTI sequences, a label
map, z-scoring, the brain crop) takes seconds and about 100 MB at full resolution, so holding a whole BraTS training set
in memory (285 cases) is out of reach and re-reading it for every run is slow. Here each case is preprocessed once into
an *entry*, a folder of ``.npy`` arrays under ``<cache>/brats/``, and a dataset holds only the entries' paths and masks
(:class:`CachedCase`); a case's arrays are read when an item is taken (a training crop, a sliding-window evaluation), so
memory does not grow with the number of cases.

An entry's name is a hash of everything its arrays depend on: the preprocessing settings (the file layout, label
convention, downsampling, margin and :data:`PREPROCESSING_VERSION`), torch's thread count (the z-scoring's sums are
split across threads) and each source file's name, size and modification time. Changing a setting or a file gives
another name, so a stale entry is never read (it is left on disk; delete the folder to reclaim it). Entries are
written to a temporary folder and renamed into place: a build that is killed leaves whole entries and no half ones,
and the next build goes on from where it stopped. The build shows its progress (:mod:`simmlm.progress`: a bar in a
terminal, else lines on the logger) and runs ``workers`` processes at once; every worker computes with the parent's
thread count, so the arrays do not depend on ``workers``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from simmlm.datasets.brats.loader import NiftiLayout, VolumeCase, load_case
from simmlm.fileio import alive, cache_dir
from simmlm.progress import progress

logger = logging.getLogger(__name__)

PREPROCESSING_VERSION = 1  # bump when load_case's arithmetic changes: every entry is rebuilt
MARGIN = 4  # voxels around the brain's bounding box (load_case's default)


def cache_root() -> Path:
    """Where the entries are: ``brats/`` under simmlm's cache folder (:func:`simmlm.fileio.cache_dir`)."""
    return cache_dir() / "brats"


@dataclass(frozen=True)
class CachedCase:
    """A case in the cache: its id and mask in memory, its arrays (:class:`~simmlm.datasets.brats.loader.VolumeCase`'s
    ``inputs``, ``target``, ``brain``) read from ``entry`` on every access."""

    case_id: str
    mask: Tensor
    entry: Path
    modalities: tuple[str, ...]

    @property
    def inputs(self) -> dict[str, Tensor]:
        return {name: self._read(f"input{i}") for i, name in enumerate(self.modalities)}

    @property
    def target(self) -> Tensor:
        return self._read("target").float()

    @property
    def brain(self) -> Tensor:
        return self._read("brain")

    def _read(self, name: str) -> Tensor:
        return torch.from_numpy(np.load(self.entry / f"{name}.npy", allow_pickle=False))


def source_files(folder: Path, layout: NiftiLayout) -> list[Path]:
    """The files of a case folder the layout names (those that exist; :func:`load_case` judges what is missing)."""
    patterns = [*layout.modalities.values(), layout.label, *([layout.brain_mask] if layout.brain_mask else [])]
    return [folder / p.format(case=folder.name) for p in patterns if (folder / p.format(case=folder.name)).is_file()]


def entry_name(folder: Path, layout: NiftiLayout, downsample: int) -> str:
    """The hash of the preprocessing settings, torch's thread count and the source files' names, sizes and
    modification times. (The z-scoring's mean and standard deviation are sums split across threads: the arrays
    differ in the last bits with the thread count.)"""
    files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in source_files(folder, layout)]
    settings = {
        "version": PREPROCESSING_VERSION,
        "layout": layout.model_dump(mode="json", include=set(NiftiLayout.model_fields)),
        "downsample": downsample,
        "margin": MARGIN,
        "threads": torch.get_num_threads(),
        "case": folder.name,
        "files": files,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


def open_entry(entry: Path) -> CachedCase:
    """A finished entry as a :class:`CachedCase` (its arrays are not read)."""
    meta = json.loads((entry / "case.json").read_text())
    return CachedCase(meta["case_id"], torch.tensor(meta["mask"], dtype=torch.bool), entry, tuple(meta["modalities"]))


def write_entry(case: VolumeCase, entry: Path) -> None:
    """``case``'s arrays into ``entry``, atomically (a temporary folder renamed into place); regions as uint8."""
    tmp = entry.with_name(f"{entry.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        modalities = list(case.inputs)
        for i, name in enumerate(modalities):
            np.save(tmp / f"input{i}.npy", case.inputs[name].numpy())
        np.save(tmp / "target.npy", case.target.numpy().astype(np.uint8))  # 0/1 regions: exact
        np.save(tmp / "brain.npy", case.brain.numpy())
        meta = {"case_id": case.case_id, "mask": case.mask.tolist(), "modalities": modalities}
        (tmp / "case.json").write_text(json.dumps(meta))
        try:
            os.replace(tmp, entry)
        except OSError:  # another process finished the same entry first: its arrays are the same
            if not (entry / "case.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale(root: Path) -> None:
    """Temporary folders of builds on this host whose process is gone (killed while writing an entry)."""
    for tmp in root.glob("*.tmp-*") if root.is_dir() else []:
        host, _, pid = tmp.name.rsplit(".tmp-", 1)[1].rpartition("-")
        if host == socket.gethostname() and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _build(folder: Path, layout: NiftiLayout, downsample: int, entry: Path) -> None:
    write_entry(load_case(folder, layout, downsample, MARGIN), entry)


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def cached_cases(
    folders: Sequence[Path], layout: NiftiLayout, downsample: int, root: Path, workers: int = 0
) -> list[CachedCase]:
    """Every case of ``folders`` from the cache under ``root``, preprocessing the ones not there yet (with
    ``workers`` processes, or in this one when 0), showing the progress of the build."""
    entries = [root / entry_name(f, layout, downsample) for f in folders]
    todo = [(f, e) for f, e in zip(folders, entries, strict=True) if not (e / "case.json").is_file()]
    if todo:
        _remove_stale(root)
        logger.info("preprocessing %d of %d cases into %s (once; runs read them there)", len(todo), len(folders), root)
        root.mkdir(parents=True, exist_ok=True)
        with progress("BraTS cache", len(todo), "cases") as bar:
            if workers > 0:
                context = get_context("spawn")  # no fork of a process whose torch threads already run
                threads = torch.get_num_threads()
                with ProcessPoolExecutor(workers, context, initializer=_set_threads, initargs=(threads,)) as pool:
                    for future in [pool.submit(_build, f, layout, downsample, e) for f, e in todo]:
                        future.result()  # a case that cannot be read raises here, naming its file
                        bar.advance()
            else:
                for folder, entry in todo:
                    _build(folder, layout, downsample, entry)
                    bar.advance()
    return [open_entry(e) for e in entries]
