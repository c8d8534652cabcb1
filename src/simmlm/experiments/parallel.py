"""Independent units of work (e.g. the robustness suite's cells and seeds) in several processes.

The models simmlm trains on a CPU are small: a second intra-op thread barely shortens a run (one avMNIST run of
simmlm takes as long with one thread as with two on a 2-core machine), while a second process running another run
does the work of two. :func:`run_in_workers` runs units in ``workers`` spawned processes, each with ``threads``
intra-op threads (:func:`worker_threads`). Processes times threads must not exceed the cores: PyTorch's OpenMP
threads wait for each other by spinning, and two 2-thread runs on two cores took 8 times as long as one after the
other.

A run's numbers depend on its thread count (float sums are split across threads), not on the process it runs in:
units trained with as many threads as a sequential run give that run's numbers bit for bit. Each worker logs its
lines prefixed with its unit's label, and long loops show plain progress lines (bars of several processes would
overwrite each other).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from simmlm.portable import THREADS_VARIABLE, portable_threads, reproducibility_mode

logger = logging.getLogger(__name__)


def worker_threads(workers: int) -> int:
    """Intra-op threads for each of ``workers`` processes: ``$SIMMLM_THREADS`` where it is set (portable mode pins
    it: the thread count is part of what reproduces a number), else the cores shared out (at least 1)."""
    if os.environ.get(THREADS_VARIABLE, "").strip():
        return portable_threads()
    return max(1, (os.cpu_count() or 1) // workers)


def check_cores(workers: int, threads: int) -> None:
    """Refuse more threads in all than cores: the processes would spin against each other (see the module)."""
    cores = os.cpu_count() or 1
    if workers * threads > cores:
        raise ValueError(
            f"{workers} workers x {threads} threads exceed this machine's {cores} cores, which makes training many "
            f"times slower: use fewer workers, or set {THREADS_VARIABLE}={max(1, cores // workers)}"
        )


@contextmanager
def at_threads(threads: int) -> Iterator[None]:
    """This process computes with ``threads`` intra-op threads inside the block (``$SIMMLM_THREADS`` too, which
    portable mode pins), as the workers did: a parallel run's evaluation then matches its training's thread count."""
    import torch

    before, count = os.environ.get(THREADS_VARIABLE), torch.get_num_threads()
    os.environ[THREADS_VARIABLE] = str(threads)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(THREADS_VARIABLE, None)
        else:
            os.environ[THREADS_VARIABLE] = before
        torch.set_num_threads(count)


def run_in_workers(
    fn: Callable[..., Any], units: Sequence[tuple[Any, ...]], labels: Sequence[str], workers: int, threads: int
) -> list[Any]:
    """``[fn(*unit) for unit in units]``, computed in ``workers`` fresh processes of ``threads`` threads each.

    ``fn`` must be a module-level function, its arguments and result picklable. The first unit to fail stops the
    others (their processes are terminated) and its error is raised here.
    """
    check_cores(workers, threads)
    level = logger.getEffectiveLevel()  # what the caller logs (the package logger's level, inherited)
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds threads and open files
    results: list[Any] = [None] * len(units)
    with context.Pool(workers, initializer=_start_worker, initargs=(threads, level)) as pool:
        jobs = [(k, labels[k], fn, unit) for k, unit in enumerate(units)]
        for done, (k, value) in enumerate(pool.imap_unordered(_run_unit, jobs), 1):
            results[k] = value
            logger.info("%s: done (%d of %d)", labels[k], done, len(units))
    return results


class _Prefix(logging.Formatter):
    """Prefixes every line of a worker with the label of the unit it works on."""

    label = ""

    def format(self, record: logging.LogRecord) -> str:
        return f"[{self.label}] {super().format(record)}"


_PREFIX = _Prefix("%(message)s")


def _start_worker(threads: int, level: int) -> None:
    import torch

    from simmlm.engine.train import quiet_lightning
    from simmlm.portable import configure_torch

    os.environ[THREADS_VARIABLE] = str(threads)  # portable mode pins what this says (configure_torch)
    os.environ["TERM"] = "dumb"  # plain progress lines (simmlm.progress), not a bar per process
    configure_torch()
    if reproducibility_mode() != "portable":
        torch.set_num_threads(threads)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PREFIX)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    quiet_lightning()


def _run_unit(job: tuple[int, str, Callable[..., Any], tuple[Any, ...]]) -> tuple[int, Any]:
    k, label, fn, unit = job
    _PREFIX.label = label
    return k, fn(*unit)
