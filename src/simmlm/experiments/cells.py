"""Training the robustness suite's cells: each cell's benchmark, the runs of ``simmlm_val``'s MoFe lambdas and the
variants of simmlm, in this process or, a seed of a cell at a time, in worker processes
(:mod:`simmlm.experiments.parallel`). :mod:`simmlm.experiments.robustness` evaluates what they trained."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from simmlm.data.base import Splits
from simmlm.engine.config import load_config, resolve_config
from simmlm.engine.tasks import task_for
from simmlm.experiments.benchmark import run_benchmark
from simmlm.experiments.parallel import run_in_workers, worker_threads
from simmlm.experiments.suite import Cell, SuiteConfig, variant_settings
from simmlm.fileio import folder_lock

logger = logging.getLogger(__name__)
TUNED_FROM, TUNED = "simmlm", "simmlm_val"


def fit_cell(
    cell: Cell,
    cell_dir: Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    config: Path | None,
    overrides: dict[str, Any] | None,
    suite: SuiteConfig,
    modalities: Sequence[str],
    runs_only: bool = False,
) -> tuple[dict[str, list[Path]], dict[str, float]]:
    """Train (or load) every run of the cell: the methods, simmlm_val's lambdas and the variants, in their benchmark
    folders. Returns each method's run folders (one per seed) and simmlm_val's lambda per seed. ``runs_only``: as
    a worker of a parallel suite (:func:`run_benchmark`'s)."""
    cell_overrides = {**(overrides or {}), **({"data.scenario": cell.scenario} if cell.scenario else {})}
    cache: dict[str, Any] = {}  # stage 1 of simmlm's experts, trained once for every lambda
    run_benchmark(methods, seeds, cell_dir, config, cell_overrides, resume=True, cache=cache, runs_only=runs_only)
    runs = {m: [cell_dir / "runs" / f"{m}-seed{s}" for s in seeds] for m in methods}
    choice: dict[str, float] = {}
    if TUNED_FROM in methods and suite.lambdas:
        runs[TUNED], choice = _lambda_on_validation(cell_dir, seeds, config, cell_overrides, suite, cache, runs_only)
    for name, variant in suite.variants.items():
        logger.info("%s (a variant of simmlm, stage 2 from its stage-1 experts)", name)
        folder = cell_dir / "variants" / name
        settings = {**cell_overrides, **variant_settings(variant, modalities)}
        run_benchmark([TUNED_FROM], seeds, folder, config, settings, resume=True, cache=cache, runs_only=runs_only)
        runs[name] = [folder / "runs" / f"{TUNED_FROM}-seed{s}" for s in seeds]
    return runs, choice


def _lambda_on_validation(
    cell_dir: Path,
    seeds: Sequence[int],
    config: Path | None,
    overrides: dict[str, Any],
    suite: SuiteConfig,
    cache: dict[str, Any],
    runs_only: bool = False,
) -> tuple[list[Path], dict[str, float]]:
    """simmlm_val: per seed, the simmlm run whose MoFe lambda (of ``suite.lambdas``) scored best on the validation
    headline (average accuracy; a regression's average MAE; ties: the first lambda listed). simmlm's own lambda
    reuses its run; the others train stage 2 only (stage 1 from ``cache``). Returns the chosen run folders and
    lambdas per seed."""
    resolved = resolve_config(load_config(config, {**overrides, "method": TUNED_FROM}))
    own, task = resolved.train.mofe_lambda, task_for(resolved)
    folders: dict[float, Path] = {}
    for lam in suite.lambdas:
        if lam == own:
            folders[lam] = cell_dir
            continue
        folders[lam] = cell_dir / "lambdas" / f"{lam:g}"
        logger.info("simmlm with MoFe lambda %g (for simmlm_val)", lam)
        settings = {**overrides, "train.mofe_lambda": lam}
        run_benchmark(
            [TUNED_FROM], seeds, folders[lam], config, settings, resume=True, cache=cache, runs_only=runs_only
        )
    chosen, choice = [], {}
    for seed in seeds:
        runs = {lam: folder / "runs" / f"{TUNED_FROM}-seed{seed}" for lam, folder in folders.items()}
        key, sign = f"val_{task.average_key}", 1 if task.higher_is_better else -1
        val = {lam: sign * json.loads((run / "metrics.json").read_text())[key] for lam, run in runs.items()}
        best = max(val, key=lambda lam: val[lam])  # max keeps the first of equal values
        chosen.append(runs[best])
        choice[str(seed)] = best
    return chosen, choice


def train_in_workers(
    cells: Sequence[Cell],
    out: Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    config: Path | None,
    overrides: dict[str, Any] | None,
    suite: SuiteConfig,
    splits: Splits,
    workers: int,
) -> dict[str, float]:
    """Every run of every seed of ``cells``, trained (or resumed) in ``workers`` processes into the cells' folders,
    which this process locks meanwhile. Returns each cell's training seconds, summed over its seeds."""
    threads = worker_threads(workers)
    units = [(cell, seed) for cell in cells for seed in seeds]
    logger.info(
        "training %d cells x %d seeds in %d processes of %d thread(s) each (a number reproduces only at the same "
        "thread count)",
        len(cells),
        len(seeds),
        workers,
        threads,
    )
    with ExitStack() as locks:
        for cell in cells:
            locks.enter_context(folder_lock(out / "cells" / cell.name, "simmlm robustness"))
        args = [
            (cell, out / "cells" / cell.name, methods, seed, config, overrides, suite, splits.modalities)
            for cell, seed in units
        ]
        spent = run_in_workers(_fit_seed, args, [f"{c.title}, seed {s}" for c, s in units], workers, threads)
    totals: dict[str, float] = {}
    for (cell, _), value in zip(units, spent, strict=True):
        totals[cell.name] = totals.get(cell.name, 0.0) + value
    return totals


def _fit_seed(
    cell: Cell,
    cell_dir: Path,
    methods: Sequence[str],
    seed: int,
    config: Path | None,
    overrides: dict[str, Any] | None,
    suite: SuiteConfig,
    modalities: Sequence[str],
) -> float:
    """A worker's unit: one seed of a cell (:func:`fit_cell` with ``runs_only``); returns its seconds."""
    start = time.perf_counter()
    fit_cell(cell, cell_dir, methods, [seed], config, overrides, suite, modalities, runs_only=True)
    return time.perf_counter() - start
