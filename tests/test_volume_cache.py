"""The persistent preprocessing cache of BraTS-style cases: same arrays and crops as in memory, a dataset that
holds no pixel arrays, one build, invalidation by settings and by files, a resumable and parallel build."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from simmlm.datasets.brats.loader import RandomCropDataset, VolumeDataset, load_brats_split
from simmlm.datasets.brats.volume_cache import CachedCase, cached_cases, entry_name
from test_brats import BRATS2015, BRATS2018, write_case


@pytest.fixture
def split(tmp_path: Path) -> Path:
    for i in range(3):
        write_case(tmp_path / "train", f"c{i}", BRATS2015, seed=i)
    return tmp_path / "train"


def _arrays(case: Any) -> dict[str, torch.Tensor]:
    return {**case.inputs, "mask": case.mask, "target": case.target, "brain": case.brain}


def _pixel_arrays(obj: Any, seen: set[int] | None = None) -> list[int]:
    """Sizes of every tensor or array reachable from ``obj``'s attributes, lists, tuples and dicts."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor | np.ndarray):
        return [obj.size if isinstance(obj, np.ndarray) else obj.numel()]
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, list | tuple):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type | Path):
        children = list(vars(obj).values())
    else:
        children = [getattr(obj, f) for f in getattr(obj, "__dataclass_fields__", {})]
    return [n for child in children for n in _pixel_arrays(child, seen)]


def test_cached_cases_equal_the_cases_in_memory_and_so_do_their_crops(split: Path, tmp_path: Path) -> None:
    memory = load_brats_split(split, BRATS2015, downsample=2)
    cached = load_brats_split(split, BRATS2015, downsample=2, cache=tmp_path / "cache")
    assert all(isinstance(c, CachedCase) for c in cached.cases)
    for a, b in zip(memory.cases, cached.cases, strict=True):
        assert a.case_id == b.case_id
        left, right = _arrays(a), _arrays(b)
        assert left.keys() == right.keys()
        assert all(left[k].dtype == right[k].dtype and torch.equal(left[k], right[k]) for k in left)
    crops = [RandomCropDataset(d, (8, 8, 8), samples_per_epoch=6) for d in (memory, cached)]
    for c in crops:
        c.set_random_state(5)
    for key in [(0, 0), (1, 4), (2, 5)]:
        x, y = crops[0][key], crops[1][key]
        assert torch.equal(x[2], y[2]) and all(torch.equal(x[0][k], y[0][k]) for k in x[0])
    assert crops[1].items is None  # the cached dataset's crops read their case each time


def test_a_cached_dataset_holds_no_pixel_arrays(split: Path, tmp_path: Path) -> None:
    cached = load_brats_split(split, BRATS2015, cache=tmp_path / "cache")
    memory = load_brats_split(split, BRATS2015)
    assert max(_pixel_arrays(cached)) == 2  # the masks, [M], only
    assert max(_pixel_arrays(memory)) > 1000  # the check sees what a dataset in memory holds


def test_the_cache_is_built_once_and_rebuilt_when_a_file_or_setting_changes(
    split: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    folders = sorted(split.iterdir())
    with caplog.at_level(logging.INFO, logger="simmlm"):
        first = cached_cases(folders, BRATS2015, 1, cache)
    built = [r.getMessage() for r in caplog.records]
    assert "preprocessing 3 of 3 cases" in built[0] and "BraTS cache: 3/3 cases in" in built[-1], built
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="simmlm"):
        again = cached_cases(folders, BRATS2015, 1, cache)
    assert not caplog.records and [c.entry for c in again] == [c.entry for c in first]
    assert entry_name(folders[0], BRATS2015, 2) != entry_name(folders[0], BRATS2015, 1)  # another setting
    threads = torch.get_num_threads()
    try:  # another thread count: the z-scoring's sums, so the arrays, may differ in the last bits
        torch.set_num_threads(threads + 1)
        assert entry_name(folders[0], BRATS2015, 1) != first[0].entry.name
    finally:
        torch.set_num_threads(threads)
    # a source file rewritten: that case only is rebuilt, and from the new file
    flair = folders[1] / "Flair.nii.gz"
    write_case(tmp_path / "new", "c1", BRATS2015, seed=9)
    os.replace(tmp_path / "new" / "c1" / "Flair.nii.gz", flair)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="simmlm"):
        changed = cached_cases(folders, BRATS2015, 1, cache)
    built = [r.getMessage() for r in caplog.records]
    assert "preprocessing 1 of 3 cases" in built[0] and "BraTS cache: 1/1 cases in" in built[-1], built
    assert changed[1].entry != first[1].entry and changed[0].entry == first[0].entry
    assert not torch.equal(changed[1].inputs["flair"], first[1].inputs["flair"])


def test_an_interrupted_build_goes_on_and_leaves_no_half_entry(split: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folders = sorted(split.iterdir())
    cached_cases(folders[:1], BRATS2015, 1, cache)  # a build killed after its first case
    name = f"{entry_name(folders[1], BRATS2015, 1)}.tmp-{socket.gethostname()}-99999999"
    broken = cache / name  # what a kill mid-write leaves (no process has that pid)
    broken.mkdir()
    (broken / "input0.npy").write_bytes(b"half")
    cases = cached_cases(folders, BRATS2015, 1, cache)
    assert [c.case_id for c in cases] == ["c0", "c1", "c2"]
    assert {p.name for p in cache.iterdir()} == {c.entry.name for c in cases}  # the dead build's folder removed


def test_parallel_workers_build_the_same_arrays_and_report_a_bad_file(split: Path, tmp_path: Path) -> None:
    folders = sorted(split.iterdir())
    serial = cached_cases(folders, BRATS2015, 2, tmp_path / "serial")
    parallel = cached_cases(folders, BRATS2015, 2, tmp_path / "parallel", workers=2)
    for a, b in zip(serial, parallel, strict=True):
        left, right = _arrays(a), _arrays(b)
        assert all(torch.equal(left[k], right[k]) for k in left)
    (folders[2] / "T1c.nii.gz").write_bytes(b"not a NIfTI file")
    with pytest.raises(ValueError, match="T1c.nii.gz: unreadable NIfTI"):
        cached_cases(folders, BRATS2015, 2, tmp_path / "broken", workers=2)


def test_the_segmentation_task_reads_its_cases_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simmlm.datasets.brats import BratsConfig, BratsData
    from simmlm.engine.tasks import SegmentationTask

    for split in ("train", "validation", "test"):
        for i in range(2):
            write_case(tmp_path / "data" / split, f"{split}{i}", BRATS2018, seed=i)
    monkeypatch.setattr("simmlm.datasets.brats.volume_cache.cache_root", lambda: tmp_path / "cache")
    cfg = BratsConfig(crop_size=(8, 8, 8), crops_per_epoch=4)
    splits = SegmentationTask(BratsData(data_dir=tmp_path / "data", brats=cfg)).load_splits()
    assert all(isinstance(c, CachedCase) for d in (splits.train, splits.val, splits.test) for c in d.cases)
    assert len(list((tmp_path / "cache").rglob("case.json"))) == 6
    memory = BratsConfig(crop_size=(8, 8, 8), crops_per_epoch=4, cache=False)
    in_memory = SegmentationTask(BratsData(data_dir=tmp_path / "data", brats=memory)).load_splits()
    assert not any(isinstance(c, CachedCase) for c in in_memory.train.cases)
    assert isinstance(splits.train, VolumeDataset)
