"""``simmlm benchmark``: methods x seeds -> ``summary.json`` (DESIGN.md contract) and ``summary.md``."""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from simmlm.engine.config import load_config
from simmlm.engine.resume import remove_checkpoints
from simmlm.engine.runs import (
    count_params,
    explain_experts,
    full_modality_flops,
    is_global_zero,
    load_run,
    refuse_other_runs,
    save_run,
)
from simmlm.engine.schedule import stage_epochs
from simmlm.engine.tasks import task_for
from simmlm.engine.train import run_key, train
from simmlm.evaluation.evaluate import headline_keys, shapley_per_seed
from simmlm.experiments.comparisons import COMPARISON_DRAWS, compare_methods, runs_from_folder
from simmlm.experiments.reproducibility import provenance
from simmlm.fileio import folder_lock, write_text_atomic
from simmlm.methods.registry import expert_mixtures, protocol_clauses
from simmlm.progress import progress
from simmlm.reporting.format import headline
from simmlm.reporting.summary import WIDE_SUBSETS, summary_markdown

logger = logging.getLogger(__name__)


def run_benchmark(
    methods: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    config: Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    cache: dict[str, Any] | None = None,
    overwrite: bool = False,
    runs_only: bool = False,
) -> dict[str, Any]:
    """Train and test every method with every seed; model selection uses the validation split only.

    Each run checkpoints every epoch under ``runs/<method>-seed<k>/checkpoints`` (removed once the run is
    saved). With ``resume``, finished runs (``metrics.json`` present, same config) are loaded instead of trained
    and an interrupted run continues from its checkpoints. ``cache`` (see :func:`~simmlm.engine.train.train`) may
    be shared with other benchmarks on the same splits, e.g. to train stage 1 once for several MoFe lambdas.
    Finished runs made with another config are refused unless ``overwrite`` (or ``resume``). Each run gets a line on
    this module's logger, and the runs a progress bar (:mod:`simmlm.progress`: plain lines when not in a terminal).

    ``runs_only``: train (or, with ``resume``, load) the runs and nothing else: no lock on ``out`` (the caller holds
    it), no summary, comparisons or figures. The workers of a parallel robustness suite train their seeds so, side
    by side in one folder; a later call without it gathers the runs.
    """
    base = load_config(config, {**(overrides or {}), "method": methods[0]})  # method options checked for it
    source = provenance()  # before anything is written
    task = task_for(base)
    splits = task.load_splits()  # before creating ``out``: bad data leaves nothing behind
    data_dir = getattr(base.data, "data_dir", None) or os.environ.get("SIMMLM_DATA_DIR")
    if runs_only:
        out.mkdir(parents=True, exist_ok=True)
    with nullcontext() if runs_only else folder_lock(out, "simmlm benchmark"):  # a second run on ``out`` is refused
        experts = explain_experts(base, task.input_shapes(splits))
        given = overrides or {}
        cfgs = {
            f"{m}-seed{s}": load_config(config, {**given, "method": m, "train.seed": s}) for m in methods for s in seeds
        }
        if not (resume or overwrite):
            refuse_other_runs(out, cfgs, data_dir)
        for name, expert in experts.items():
            logger.info("expert for %s: %s", name, expert["why"])
        summary: dict[str, Any] = {
            "dataset": base.data.dataset,
            "data_dir": str(Path(data_dir).resolve()) if data_dir else None,  # the data read (the report's title)
            "modalities": splits.modalities,
            "experts": experts,
            "seeds": list(seeds),
            "protocol": "",
            "methods": {},
            "provenance": source,
        }
        cache = {} if cache is None else cache  # stage 1 and finished runs shared between runs (see train)
        total = len(methods) * len(seeds)
        with progress(f"benchmark of {base.data.dataset}", total, "runs") as bar:
            for method in methods:
                runs = []
                for seed in seeds:
                    cfg = cfgs[f"{method}-seed{seed}"]
                    run_dir = out / "runs" / f"{method}-seed{seed}"
                    if resume and (run_dir / "metrics.json").is_file():
                        logger.info("%s seed %d: finished before, loaded from %s", method, seed, run_dir)
                        run, result = load_run(run_dir, cfg)
                        cache[run_key(cfg, splits)] = result  # a later method may pre-train this run (DREAM's scorer)
                        runs.append(({"method": method, "seed": seed, **run}, result))
                        bar.advance()
                        continue
                    logger.info("%s seed %d: training", method, seed)
                    result = train(
                        cfg,
                        splits,
                        progress=False,
                        cache=cache,
                        checkpoint_dir=run_dir / "checkpoints",
                        resume=resume,
                    )
                    run = {"method": method, "seed": seed, **save_run(run_dir, result, splits)}
                    remove_checkpoints(run_dir)
                    report = run["test"]
                    key, average_key = headline_keys(report)
                    accs = ", ".join(f"{k} {headline(key, v[key])}" for k, v in report["subsets"].items())
                    if len(report["subsets"]) > WIDE_SUBSETS:  # dozens of subsets: the full set and the average
                        full = "+".join(splits.modalities)
                        average = f"average over the subsets {headline(key, report[average_key])}"
                        accs = f"{full} {headline(key, report['subsets'][full][key])}, {average}"
                    own = result.train_seconds - result.shared_seconds
                    shared = f" (+ {result.shared_seconds:.1f} s reused)" if result.shared_seconds else ""
                    logger.info(
                        f"{method} seed {seed}: trained in {own:.1f} s{shared}  test: {accs}  "
                        f"CR {report['counterintuitive_rate']:.2%}"
                    )
                    runs.append((run, result))
                    bar.advance()
                if runs_only:
                    continue
                resolved, score_name = runs[0][1].config, task.score_name
                t, n = resolved.train, task.samples_per_epoch(splits)
                steps = f", each stage at least {t.min_steps} optimiser steps" if t.min_steps else ""
                summary["protocol"] = (
                    f"{splits.description} Expert mixtures ({', '.join(expert_mixtures())}) train in two stages "
                    f"(stage 1: {stage_epochs(t.stage1.epochs, n, t)} epochs per expert, stage 2: "
                    f"{stage_epochs(t.stage2.epochs, n, t)} epochs{steps}; stage 1 is shared between methods with "
                    f"identical experts); {'; '.join(protocol_clauses(methods))}. Adam; every stage keeps its best "
                    f"epoch on validation {score_name} (stage 2: mean over every subset), never on test data. Test "
                    "metrics: every non-empty modality subset, each over the test samples that have all of its "
                    "modalities; ECE/SCE with 20 bins."
                )
                summary["protocol"] += task.protocol(resolved)
                summary["methods"][method] = _aggregate(
                    [r for r, _ in runs],
                    count_params(runs[0][1].model),
                    full_modality_flops(runs[0][1].model, splits, resolved),
                    {s: r.config.train.mofe_lambda for s, (_, r) in zip(seeds, runs, strict=True)},
                )
                done = list(summary["methods"])
                runs_arrays = runs_from_folder(out, done, seeds) if len(done) > 1 else {}
                if runs_arrays:  # classification: every method against simmlm, with 95 % intervals
                    summary["comparisons"] = compare_methods(runs_arrays, COMPARISON_DRAWS)
                if is_global_zero():  # written after every method, so an interruption keeps what is finished
                    task.figures(out, method, runs[0][1].model, resolved, splits)
                    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
                    write_text_atomic(out / "summary.md", summary_markdown(summary))
                    task.summary_figures(summary, out)
        return summary


def _aggregate(runs: list[dict[str, Any]], params: int, flops: int, lambdas: dict[int, Any]) -> dict[str, Any]:
    tests = [r["test"] for r in runs]
    _, average = headline_keys(tests[0])
    averages = {k: [t[k] for t in tests] for k in tests[0] if k.startswith("average_")}  # regression: one a metric
    subsets = {
        name: {key: [t["subsets"][name][key] for t in tests] for key in tests[0]["subsets"][name]}
        for name in tests[0]["subsets"]
    }
    gate_weights = {
        name: {m: statistics.fmean(t["gate_weights"][name][m] for t in tests) for m in weights}
        for name, weights in tests[0]["gate_weights"].items()
    }
    evenness = {name: [t["gate_evenness"][name] for t in tests] for name in tests[0].get("gate_evenness", {})}
    out: dict[str, Any] = {
        "subsets": subsets,
        **averages,
        "counterintuitive_rate": [t["counterintuitive_rate"] for t in tests],
        "gate_weights": gate_weights,
        **({"gate_evenness": evenness} if "gate_evenness" in tests[0] else {}),
        **({"shapley": shapley_per_seed(tests)} if "shapley" in tests[0] else {}),
        "train_seconds": [r["train_seconds"] for r in runs],
        "shared_seconds": [r.get("shared_seconds", 0.0) for r in runs],
        "params": params,
        "flops_full": flops,
        "mofe_lambda": next(iter(lambdas.values())),
        "mofe_hinge_mean": [r["mofe"].get("hinge_mean") for r in runs],
        "mofe_active_fraction": [r["mofe"].get("active_fraction") for r in runs],
        f"val_{average}": [r[f"val_{average}"] for r in runs],
    }
    chosen = [r.get("selected", {}).get("gate_shrinkage") for r in runs]
    if all(chosen):  # train.gate_shrinkage listed several values: the one validation chose, per seed
        out["gate_shrinkage"] = {
            "chosen": [c["chosen"] for c in chosen],
            "val_mean_score": [c["val_mean_score"] for c in chosen],
        }
    if "gate_weights_regions" in tests[0]:  # segmentation: per-region gates and CR
        out["gate_weights_regions"] = {
            name: {
                m: {r: statistics.fmean(t["gate_weights_regions"][name][m][r] for t in tests) for r in regions}
                for m, regions in weights.items()
            }
            for name, weights in tests[0]["gate_weights_regions"].items()
        }
        out["counterintuitive_rate_regions"] = {
            r: [t["counterintuitive_rate_regions"][r] for t in tests] for r in tests[0]["counterintuitive_rate_regions"]
        }
    return out
