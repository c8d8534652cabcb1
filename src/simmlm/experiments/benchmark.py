"""``simmlm benchmark``: methods x seeds -> ``summary.json`` (DESIGN.md contract) and ``summary.md``."""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simmlm.datasets.brats.loader import REGIONS
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
from simmlm.evaluation.evaluate import SHAPLEY_NOTE, headline_keys, shapley_per_seed
from simmlm.experiments.comparisons import compare_methods, comparison_markdown, comparison_note, runs_from_folder
from simmlm.experiments.reproducibility import provenance
from simmlm.fileio import folder_lock, write_text_atomic
from simmlm.methods.registry import expert_mixtures, protocol_clauses
from simmlm.progress import progress
from simmlm.reporting.format import NO_NUMBER, ci, headline, over_subsets, pm, training_seconds, units

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
) -> dict[str, Any]:
    """Train and test every method with every seed; model selection uses the validation split only.

    Each run checkpoints every epoch under ``runs/<method>-seed<k>/checkpoints`` (removed once the run is
    saved). With ``resume``, finished runs (``metrics.json`` present, same config) are loaded instead of trained
    and an interrupted run continues from its checkpoints. ``cache`` (see :func:`~simmlm.engine.train.train`) may
    be shared with other benchmarks on the same splits, e.g. to train stage 1 once for several MoFe lambdas.
    Finished runs made with another config are refused unless ``overwrite`` (or ``resume``). Each run gets a line on
    this module's logger, and the runs a progress bar (:mod:`simmlm.progress`: plain lines when not in a terminal).
    """
    base = load_config(config, {**(overrides or {}), "method": methods[0]})  # method options checked for it
    source = provenance()  # before anything is written
    task = task_for(base)
    splits = task.load_splits()  # before creating ``out``: bad data leaves nothing behind
    data_dir = getattr(base.data, "data_dir", None) or os.environ.get("SIMMLM_DATA_DIR")
    with folder_lock(out, "simmlm benchmark"):  # creates ``out``; a second run on it is refused at once
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


#: Bootstrap draws of the comparisons in ``summary.json``.
COMPARISON_DRAWS = 1000


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


def gate_evenness(weights: Sequence[float]) -> float:
    """Entropy of a weight vector over ``n >= 2`` modalities divided by ``log n``: 1 uniform, 0 one-hot."""
    entropy = -sum(w * math.log(w) for w in weights if w > 0)
    return entropy / math.log(len(weights))


def _region_calibration(methods: dict[str, Any], names: Sequence[str]) -> list[str]:
    """The voxel ECE / SCE table per region (none for summaries written before it was measured per region)."""
    if not all(f"ece_{r}" in m["subsets"][n] for m in methods.values() for n in names for r in REGIONS):
        return []
    lines = ["", "## Voxel calibration (%) per region, mean over subsets: ECE / SCE (20 bins) ↓", ""]
    lines += ["| method | WT | TC | ET |", "|---|---|---|---|"]
    for method, m in methods.items():
        cells = [
            f"{pm(over_subsets(m, f'ece_{r}', names))} / {pm(over_subsets(m, f'sce_{r}', names))}" for r in REGIONS
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


#: What the Shapley table of a regression summary holds.
SHAPLEY_NOTE_REGRESSION = (
    "Shapley value of each modality from the predictions under every subset, mean over test samples, mean ± std over "
    "seeds. abs_error: the value of a subset is how much closer its score is to the truth than predicting 0 "
    "(|y| - |ŷ - y|, in the score's units); correctness: 1 if its sign is right (pp; no modality: 1/2)."
)
#: The sentiment metrics of a regression summary: key -> column title.
SENTIMENT_COLUMNS = {
    "mae": "MAE ↓",
    "corr": "Corr",
    "acc2_has0": "Acc-2 has-0 (%)",
    "acc2_non0": "Acc-2 non-0 (%)",
    "f1_has0": "F1 has-0 (%)",
    "f1_non0": "F1 non-0 (%)",
    "acc7": "Acc-7 (%)",
}


def _sentiment_tables(methods: dict[str, Any], names: Sequence[str]) -> list[str]:
    """MulT's and MMSA's metrics, with every modality and averaged over the subsets (mean ± std over seeds)."""
    full = max(names, key=lambda n: n.count("+"))  # every modality
    lines = ["", "## Sentiment metrics (MulT / MMSA conventions)", ""]
    lines += ["| method | over | " + " | ".join(SENTIMENT_COLUMNS.values()) + " |"]
    lines += ["|---" * (len(SENTIMENT_COLUMNS) + 2) + "|"]
    for method, m in methods.items():
        every = [pm(m["subsets"][full][k], *units(k)) for k in SENTIMENT_COLUMNS]
        mean = [pm(m[f"average_{k}"], *units(k)) for k in SENTIMENT_COLUMNS]
        lines.append(f"| {method} | {full} | " + " | ".join(every) + " |")
        lines.append(f"| {method} | average of the subsets | " + " | ".join(mean) + " |")
    return lines


#: Beyond this many subsets (more than three modalities) the per-subset tables are transposed, subsets as rows.
WIDE_SUBSETS = 7


def _table(columns: list[str], rows: dict[str, list[str]], wide: bool) -> list[str]:
    """A Markdown table with one row per method, or with ``wide`` one row per column (methods as columns), so that
    dozens of subsets read down the page instead of off its edge."""
    if not wide:
        body = [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()]
        return ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|", *body]
    body = [f"| {c} | " + " | ".join(cells[j] for cells in rows.values()) + " |" for j, c in enumerate(columns)]
    return ["| | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|", *body]


def summary_markdown(summary: dict[str, Any]) -> str:
    """Render ``summary.json`` as Markdown tables (mean ± std over seeds, percentages)."""
    methods = summary["methods"]
    first = next(iter(methods.values()))
    names = list(first["subsets"])
    key, average = headline_keys(first)
    segmentation, regression = key == "dice_mean", key == "mae"
    scale, digits = units(key)
    what = "mean Dice (WT, TC, ET) (%)" if segmentation else "MAE (lower is better)" if regression else "accuracy (%)"
    lines = [
        f"# {summary['dataset']}: {', '.join(methods)} (seeds {', '.join(map(str, summary['seeds']))})",
        "",
        summary["protocol"],
        "",
        *(
            ["Experts: " + "; ".join(f"{n}: {e['why']}" for n, e in summary["experts"].items()) + ".", ""]
            if "experts" in summary
            else []
        ),
        f"## Test {what} per available-modality subset",
        "",
    ]
    lines += _table(
        [*names, "average", "CR (%) ↓", *([] if regression else ["ECE (%) ↓"]), "params", "MFLOPs", "train s"],
        {
            method: [
                *(pm(m["subsets"][n][key], scale, digits) for n in names),
                pm(m[average], scale, digits),
                pm(m["counterintuitive_rate"]),
                *([] if regression else [pm(over_subsets(m, "ece", names))]),
                f"{m['params']:,}",
                f"{m['flops_full'] / 1e6:.2f}",
                training_seconds(m),
            ]
            for method, m in methods.items()
        },
        wide=len(names) > WIDE_SUBSETS,
    )
    lines += [
        "",
        "ECE in this table is the mean over subsets; FLOPs are for one full-modality sample; train s is the method's "
        "own training time, plus (in brackets) the stage 1 it reused from a method before it.",
    ]
    if regression:
        lines += _sentiment_tables(methods, names)
    counts = {n: first["subsets"][n].get("samples", [None])[0] for n in names}
    if all(isinstance(c, int) for c in counts.values()):
        few = [f"{n} ({100 / c:.1f} points a sample)" for n, c in counts.items() if 0 < c < 100]
        lines += [
            "",
            "Test samples per subset (those that have all of its modalities): "
            + ", ".join(f"{n} {c}" for n, c in counts.items())
            + (f". Few samples, so one sample moves the score a lot: {', '.join(few)}." if few else "."),
        ]
    if len(summary["seeds"]) > 1:
        lines += [
            "",
            "## Headline means with 95 % intervals over seeds",
            "",
            "Mean ± half-width of the 95 % t-interval over the seeds: how far another set of seeds (or another "
            "processor's rounding, which acts like one) may move the mean. The test set is fixed; its sampling "
            "error is in the comparisons below.",
            "",
        ]
        lines += _table(
            [*names, "average", "CR (%) ↓"],
            {
                method: [
                    *(ci(m["subsets"][n][key], scale, digits) for n in names),
                    ci(m[average], scale, digits),
                    ci(m["counterintuitive_rate"]),
                ]
                for method, m in methods.items()
            },
            wide=len(names) > WIDE_SUBSETS,
        )
    if segmentation:
        lines += ["", "## Test Dice (%) per region: WT / TC / ET", "", "| method | " + " | ".join(names) + " |"]
        lines += ["|---" * (len(names) + 1) + "|"]
        for method, m in methods.items():
            cells = [" / ".join(pm(m["subsets"][n][f"dice_{r}"], digits=1) for r in REGIONS) for n in names]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += ["", "| method | CR WT | CR TC | CR ET |", "|---|---|---|---|"]
        for method, m in methods.items():
            cr = m["counterintuitive_rate_regions"]
            lines.append(f"| {method} | " + " | ".join(pm(cr[r]) for r in REGIONS) + " |")
        lines += _region_calibration(methods, names)
    if "comparisons" in summary:
        lines += ["", "## Differences to simmlm (95 % intervals)", "", comparison_note(COMPARISON_DRAWS), ""]
        lines += comparison_markdown({"": summary["comparisons"]})
    if all("shapley" in m for m in methods.values()):
        modalities = summary["modalities"]
        lines += [
            "",
            "## Shapley contribution of each modality (percentage points)",
            "",
            SHAPLEY_NOTE_REGRESSION if regression else SHAPLEY_NOTE,
            "",
            "| method | value | " + " | ".join(modalities) + " |",
            "|---" * (len(modalities) + 2) + "|",
        ]
        for method, m in methods.items():
            for value, phi in m["shapley"].items():
                cells = " | ".join(pm(phi[x], *units(value)) for x in modalities)
                lines.append(f"| {method} | {value} | {cells} |")
    if not regression:
        lines += ["", "## Calibration (%) per subset: ECE / SCE (20 bins) ↓", ""]
        calibration = {
            method: [f"{pm(m['subsets'][n]['ece'])} / {pm(m['subsets'][n]['sce'])}" for n in names]
            for method, m in methods.items()
        }
        lines += _table(names, calibration, wide=len(names) > WIDE_SUBSETS)
    lines += [
        "",
        "## Mean gate weights (test set, mean over seeds)",
        "",
        "Evenness = entropy / log(number of modalities in the subset): 1 is the plain mean of the experts, 0 a gate",
        "that uses one modality only. Of the mean weights, and per sample (mean ± std over seeds of the mean over",
        "test samples): a gate can be even on average yet pick one expert per sample. A collapsing gate shows here.",
        "",
        "| method | subset | weights | evenness of the mean | per-sample evenness |",
        "|---|---|---|---|---|",
    ]
    for method, m in methods.items():
        for subset, weights in m["gate_weights"].items():
            real = len(weights) > 1 and not any(math.isnan(v) for v in weights.values())  # NaN: no test sample
            evenness = f"{gate_evenness(list(weights.values())):.2f}" if real else NO_NUMBER
            per_sample = m.get("gate_evenness", {}).get(subset)  # absent: one modality, or a segmentation summary
            evenness += f" | {pm(per_sample, scale=1.0)}" if per_sample else f" | {NO_NUMBER}"
            if segmentation:
                per_region = m["gate_weights_regions"][subset]
                cells = [f"{k} " + "/".join(f"{per_region[k][r]:.2f}" for r in REGIONS) for k in weights]
                lines.append(f"| {method} | {subset} | " + ", ".join(cells) + f" (WT/TC/ET) | {evenness} |")
            else:
                cells = [f"{k} {v:.3f}" for k, v in weights.items()]
                lines.append(f"| {method} | {subset} | " + ", ".join(cells) + f" | {evenness} |")
    lines += [
        "",
        "## MoFe hinge during stage 2 (mean over steps)",
        "",
        "| method | lambda | hinge active (% of samples) | mean hinge |",
        "|---|---|---|---|",
    ]
    for method, m in methods.items():
        lines.append(
            f"| {method} | {m['mofe_lambda']} | {pm(m['mofe_active_fraction'])} | "
            f"{pm(m['mofe_hinge_mean'], scale=1.0, digits=4)} |"
        )
    chosen = {method: m["gate_shrinkage"] for method, m in methods.items() if "gate_shrinkage" in m}
    if chosen:
        lines += ["", "## Gate shrinkage chosen on validation (README: the gate)", ""]
        lines += ["| method | chosen per seed | validation mean score (%) per value, per seed |", "|---|---|---|"]
        for method, c in chosen.items():
            per_seed = [", ".join(f"{v}: {100 * s:.2f}" for v, s in seed.items()) for seed in c["val_mean_score"]]
            lines.append(f"| {method} | {', '.join(f'{v:g}' for v in c['chosen'])} | {'; '.join(per_seed)} |")
    return "\n".join(lines) + "\n"
