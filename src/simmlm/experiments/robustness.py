"""``simmlm robustness``: the methods under missing and corrupted modalities, with intervals and Shapley values.

Three scenarios (:mod:`simmlm.data.scenarios` makes the data):

1. **training-time missingness**: a share of the training and validation samples lack a modality (SMIL's setting);
   tested on every subset of the clean test set;
2. **test-time corruption** of a present modality (noise, occlusion, band dropout, and the unannounced missing
   modality: zeros while the mask says present), on the models trained on clean data, without retraining;
3. **training-time corruption**: a share of the training and validation samples carry a corrupted modality marked
   present (each modality in turn), so a gate can learn to distrust it; tested on clean inputs and on inputs whose
   modality is corrupted in every sample.

Beside the methods it is given, the suite trains named *variants* of simmlm (``SuiteConfig.variants``): by default
``simmlm_reliable``, the reliability-aware gate (``model.method_options.reliability``) whose stage 2 sees corrupted
inputs marked present (the ``corrupt`` augmentation on every modality). A variant trains stage 2 only, from simmlm's
stage-1 experts of the same seed, so it costs a stage 2 per seed and cell.

The suite trains one benchmark per training condition (a *cell*: clean, then every share of 1 and 3) in
``cells/<name>/``, a normal benchmark folder (so an interrupted cell resumes run by run, and DREAM reuses the
late-fusion run of its seed as its scorer), evaluates every model of the cell under its test conditions and keeps
that in ``cells/<name>/cell.json``; a rerun loads finished cells. Every test corruption is drawn with the suite's
seed, so all methods see the same inputs and comparisons stay paired.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simmlm.data.base import Splits, TensorMultimodalDataset
from simmlm.data.scenarios import corrupt, corruption_scale
from simmlm.engine.config import RunConfig, load_config
from simmlm.engine.runs import load_checkpoint
from simmlm.engine.tasks import Task, task_for
from simmlm.evaluation.evaluate import headline_keys, shapley_per_seed
from simmlm.experiments.cells import TUNED, fit_cell, train_in_workers
from simmlm.experiments.comparisons import compare_methods, holm_adjust
from simmlm.experiments.parallel import at_threads, worker_threads
from simmlm.experiments.reproducibility import provenance
from simmlm.experiments.suite import CLEAN, EVALUATION_ONLY, Cell, Condition, SuiteConfig, plan
from simmlm.fileio import write_text_atomic
from simmlm.methods.registry import list_methods
from simmlm.metrics.bootstrap import RunArrays
from simmlm.subsets import mask_to_bits

logger = logging.getLogger(__name__)


def _test_set(splits: Splits, condition: Condition, seed: int) -> TensorMultimodalDataset:
    if condition.corruption is None:
        return splits.test
    modality, kind, severity, fraction = condition.corruption
    scale = corruption_scale(splits.train, modality)  # noise in units of the clean training data's spread
    return corrupt(splits.test, modality, kind, severity, fraction, seed=seed, scale=scale)


def _per_seed(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's metrics under one condition, as lists over seeds."""
    first = reports[0]
    names = [n for n in first["subsets"]]
    covered = [n for n in names if first["subsets"][n]["samples"]]
    key, average = headline_keys(first)
    keys = [key, "ece"] if "ece" in first["subsets"][names[0]] else [key]  # a regression has no ECE
    out: dict[str, Any] = {
        "subsets": {n: {k: [r["subsets"][n][k] for r in reports] for k in keys} for n in names},
        average: [r[average] for r in reports],
        "counterintuitive_rate": [r["counterintuitive_rate"] for r in reports],
    }
    if "ece" in keys:
        out["ece"] = [sum(r["subsets"][n]["ece"] for n in covered) / len(covered) for r in reports]
    if "shapley" in first:
        out["shapley"] = shapley_per_seed(reports)
    return out


def evaluate_cell(
    cell: Cell, runs: dict[str, list[Path]], splits: Splits, suite: SuiteConfig, task: Task
) -> dict[str, Any]:
    """Every model of a trained cell (method -> its run folders, one per seed) under each of the cell's test
    conditions: metrics and comparisons per condition."""
    tests = {c: _test_set(splits, c, suite.seed) for c in cell.conditions}
    reports: dict[Condition, dict[str, list[dict[str, Any]]]] = {c: {} for c in cell.conditions}
    arrays: dict[Condition, dict[str, list[RunArrays]]] = {c: {} for c in cell.conditions}
    for method, folders in runs.items():
        for folder in folders:
            model, _, _ = load_checkpoint(folder / "model.pt")
            for condition, test in tests.items():
                report, out = task.report(model, test, splits.modalities)
                reports[condition].setdefault(method, []).append(report)
                run = RunArrays.from_arrays(out, mask_to_bits(test.mask))
                arrays[condition].setdefault(method, []).append(run)
    return {
        "conditions": [
            {
                "scenario": c.scenario,
                "severity": c.severity,
                "methods": {m: _per_seed(r) for m, r in reports[c].items()},
                "comparisons": compare_methods(arrays[c], suite.bootstrap_draws, suite.seed, suite.references),
            }
            for c in cell.conditions
        ]
    }


def assemble(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """scenario -> severity -> results, with the clean models' results at severity 0 of every scenario."""
    by_scenario: dict[str, dict[str, Any]] = {}
    clean: dict[str, Any] | None = None
    for cell in cells:
        for c in cell["conditions"]:
            entry = {"methods": c["methods"], "comparisons": c["comparisons"]}
            if c["scenario"] == CLEAN:
                clean = entry
                continue
            by_scenario.setdefault(c["scenario"], {})[f"{c['severity']:g}"] = entry
    for severities in by_scenario.values():
        if clean is not None and "0" not in severities:
            severities["0"] = clean
    return {
        "clean": clean,
        "scenarios": {
            name: dict(sorted(sev.items(), key=lambda kv: float(kv[0]))) for name, sev in by_scenario.items()
        },
    }


def run_robustness(
    methods: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    config: Path | None = None,
    overrides: dict[str, Any] | None = None,
    suite: SuiteConfig | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Train and evaluate every cell of the suite; write ``robustness.json``, ``robustness.md`` and the figures.

    Finished cells (``cells/<name>/cell.json`` of the same suite, methods and seeds) are loaded, and an
    interrupted cell resumes its benchmark run by run. ``workers`` > 1: every seed of every cell still to train is
    trained first, in that many processes side by side (:mod:`simmlm.experiments.parallel`), then the cells are
    gathered and evaluated one after the other.
    """
    from simmlm.reporting.robustness_report import robustness_markdown, write_figures

    wall = time.perf_counter()

    suite = suite or SuiteConfig()
    clash = [name for name in suite.variants if name in (*methods, TUNED) or name in list_methods()]
    if clash:
        raise ValueError(f"suite variant {clash[0]!r} has the name of a method; give it another name")
    base = load_config(config, overrides)
    if not hasattr(base.data, "scenario"):
        raise ValueError(f"the robustness suite runs on classification datasets, not {base.data.dataset!r}")
    source = provenance()
    task = task_for(base)
    splits = task.load_splits()
    cells = plan(suite, splits)
    out.mkdir(parents=True, exist_ok=True)
    identity = {
        "suite": suite.model_dump(mode="json"),
        "methods": list(methods),
        "seeds": list(seeds),
        "config": cell_config(base),
    }
    saved = {cell.name: out / "cells" / cell.name / "cell.json" for cell in cells}
    befores = {name: _normalised(json.loads(p.read_text())) if p.is_file() else {} for name, p in saved.items()}
    to_train = [cell for cell in cells if not (befores[cell.name] and _trained_alike(befores[cell.name], identity))]
    parallel, threads = workers > 1 and bool(to_train), worker_threads(workers)
    seconds: dict[str, float] = {}
    if parallel:
        seconds = train_in_workers(to_train, out, methods, seeds, config, overrides, suite, splits, workers)
        source = {**source, "threads": threads}  # what trained and evaluates, not this process's
    results: list[dict[str, Any]] = []
    trained: list[float] = []
    robustness: dict[str, Any] = {}
    with ExitStack() as stack:
        if parallel:  # gathered and evaluated with the workers' thread count, as one process would have
            stack.enter_context(at_threads(threads))
        for k, cell in enumerate(cells, 1):
            cell_dir, before = out / "cells" / cell.name, befores[cell.name]
            if {key: v for key, v in before.items() if key in identity} == identity:
                logger.info("cell %d/%d (%s): finished before, loaded from %s", k, len(cells), cell.title, cell_dir)
                result = before
            elif before and _trained_alike(before, identity):  # only the evaluation settings changed
                logger.info("cell %d/%d (%s): trained before, evaluating it again", k, len(cells), cell.title)
                result = _train_cell(cell, cell_dir, methods, seeds, config, overrides, suite, splits, task)
                result = {**identity, **result, "seconds": before["seconds"]}  # the cell's cost stays its training's
                write_text_atomic(saved[cell.name], json.dumps(result, indent=2))
            else:
                left, eta = len(cells) - k + 1, ""
                if trained and not parallel:  # (after workers, what is left is gathering and evaluating)
                    eta = f"; about {sum(trained) / len(trained) * left / 60:.0f} min left"
                logger.info(f"cell {k}/{len(cells)} ({cell.title}): {len(methods)} methods x {len(seeds)} seeds{eta}")
                result = {
                    **identity,
                    **_train_cell(cell, cell_dir, methods, seeds, config, overrides, suite, splits, task),
                }
                result["seconds"] += seconds.get(cell.name, 0.0)  # its seeds' training in the workers
                trained.append(result["seconds"])
                write_text_atomic(saved[cell.name], json.dumps(result, indent=2))
            results.append(result)
            robustness = _summary(base.data.dataset, splits.modalities, seeds, suite, results, source)
            write_text_atomic(out / "robustness.json", json.dumps(robustness, indent=2))  # after every cell
    robustness["wall_seconds"] = time.perf_counter() - wall  # this call's, cells loaded from before included
    if parallel:
        robustness["workers"] = {"processes": workers, "threads": threads}
    write_text_atomic(out / "robustness.json", json.dumps(robustness, indent=2))
    write_text_atomic(out / "robustness.md", robustness_markdown(robustness))
    write_figures(robustness, out)
    logger.info(
        "suite done in %.1f min (%.1f min of training and evaluation over %d cells)",
        robustness["wall_seconds"] / 60,
        robustness["seconds"] / 60,
        len(cells),
    )
    return robustness


def _normalised(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved cell with its suite and run config read again (settings added since it ran take their defaults), so
    that a cell of the same suite and config still matches."""
    try:
        suite = SuiteConfig.model_validate(saved.get("suite", {})).model_dump(mode="json")
        config = cell_config(RunConfig.model_validate(saved.get("config", {})))
    except ValidationError:
        return saved
    return {**saved, "suite": suite, "config": config}


def _trained_alike(saved: dict[str, Any], identity: dict[str, Any]) -> bool:
    """Whether a finished cell trained what ``identity`` asks for, its suite's evaluation settings aside."""

    def training(ident: dict[str, Any]) -> dict[str, Any]:
        suite = {k: v for k, v in ident.get("suite", {}).items() if k not in EVALUATION_ONLY}
        return {**{k: ident.get(k) for k in identity}, "suite": suite}

    return training(saved) == training(identity)


def cell_config(cfg: RunConfig) -> dict[str, Any]:
    """What a cell's results depend on in the run config (where the data lives does not count)."""
    dumped = cfg.model_dump(mode="json")
    dumped["data"].pop("data_dir", None)
    return dumped


def _train_cell(
    cell: Cell,
    cell_dir: Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    config: Path | None,
    overrides: dict[str, Any] | None,
    suite: SuiteConfig,
    splits: Splits,
    task: Task,
) -> dict[str, Any]:
    """Train (or resume, or load) the cell's benchmark, simmlm_val's lambdas and the variants, then evaluate every
    model."""
    start = time.perf_counter()
    runs, choice = fit_cell(cell, cell_dir, methods, seeds, config, overrides, suite, splits.modalities)
    logger.info("evaluating %d test conditions", len(cell.conditions))
    result = {
        "cell": cell.name,
        "title": cell.title,
        **({"lambda_chosen": choice} if choice else {}),
        **evaluate_cell(cell, runs, splits, suite, task),
    }
    return {**result, "seconds": time.perf_counter() - start}


def _summary(
    dataset: str,
    modalities: list[str],
    seeds: Sequence[int],
    suite: SuiteConfig,
    results: list[dict[str, Any]],
    source: dict[str, Any],
) -> dict[str, Any]:
    """``robustness.json`` from the cells finished so far; every comparison also read with Holm's adjustment over
    all of the suite's comparisons (``holm_family`` of them)."""
    family = holm_adjust([c["comparisons"] for r in results for c in r["conditions"]])
    return {
        "dataset": dataset,
        "modalities": modalities,
        "methods": list(results[0]["conditions"][0]["methods"]),
        "seeds": list(seeds),
        "suite": suite.model_dump(mode="json"),
        "cells": {
            r["cell"]: {
                "title": r["title"],
                "seconds": r["seconds"],
                **({"lambda_chosen": r["lambda_chosen"]} if "lambda_chosen" in r else {}),
            }
            for r in results
        },
        "seconds": sum(r["seconds"] for r in results),
        "holm_family": family,
        **assemble(results),
        "provenance": source,
    }
