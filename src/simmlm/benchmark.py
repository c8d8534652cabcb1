"""``simmlm benchmark``: methods x seeds -> ``summary.json`` (DESIGN.md contract) and ``summary.md``."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from simmlm.data.base import Splits
from simmlm.engine.checkpoint import load_checkpoint, save_checkpoint
from simmlm.engine.config import RunConfig, load_config
from simmlm.engine.resume import config_differences, is_global_zero, remove_checkpoints
from simmlm.engine.train import RunResult, load_splits, resolve_config, train
from simmlm.evaluate import classification_report
from simmlm.methods.predict import predict_subsets


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def full_modality_flops(model: nn.Module, splits: Splits) -> int:
    """FLOPs of one forward pass on one test sample with every modality present (torch.utils.flop_counter).

    Counted with autograd enabled: under ``torch.no_grad`` the counter's module tracker fails on
    ``nn.MultiheadAttention`` (torch 2.13). Only the forward pass runs.
    """
    inputs, mask, _ = splits.test[[0]]
    counter = FlopCounterMode(display=False)
    with counter:
        model(inputs, torch.ones_like(mask))
    return int(counter.get_total_flops())


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_run(run_dir: Path, result: RunResult, splits: Splits) -> dict[str, Any]:
    """Evaluate a trained run on every subset; write ``model.pt``, ``metrics.json`` and ``predictions.npz``.

    ``predictions.npz`` holds the test-set class probabilities per subset (``probs`` ``[S, N, K]``, ``subsets``,
    ``targets``), from which reports draw reliability diagrams. Returns the metrics: test report, validation
    average accuracy, training time, selections and MoFe stats. Only the global rank 0 writes (under DDP every
    rank holds the same trained model).
    """
    test_predictions = predict_subsets(result.model, splits.test)
    report = classification_report(test_predictions, splits.modalities)
    val_report = classification_report(predict_subsets(result.model, splits.val), splits.modalities)
    metrics = {
        "test": report,
        "val_average_accuracy": val_report["average_accuracy"],
        "train_seconds": result.train_seconds,
        "selected": result.selected,
        "mofe": result.mofe,
    }
    if not is_global_zero():
        return metrics
    save_checkpoint(
        run_dir / "model.pt",
        result.model,
        result.config,
        input_shapes={k: list(v.shape[1:]) for k, v in splits.test.inputs.items()},
        num_classes=splits.num_classes,
        modalities=splits.modalities,
        preprocessing=splits.preprocessing,
    )
    write_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    tmp = run_dir / "predictions.tmp.npz"
    np.savez_compressed(
        tmp,
        probs=test_predictions.logits.float().softmax(-1).numpy().astype(np.float32),
        subsets=np.asarray(test_predictions.subsets),
        targets=test_predictions.targets.numpy(),
    )
    os.replace(tmp, run_dir / "predictions.npz")
    return metrics


def run_benchmark(
    methods: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    config: Path | None = None,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    resume: bool = False,
) -> dict[str, Any]:
    """Train and test every method with every seed; model selection uses the validation split only.

    Each run checkpoints every epoch under ``runs/<method>-seed<k>/checkpoints`` (removed once the run is
    saved). With ``resume``, finished runs (``metrics.json`` present, same config) are loaded instead of trained
    and an interrupted run continues from its checkpoints.
    """
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(config, overrides)
    splits = load_splits(base.data)
    summary: dict[str, Any] = {
        "dataset": base.data.dataset,
        "modalities": splits.modalities,
        "seeds": list(seeds),
        "protocol": "",
        "methods": {},
    }
    stage1_cache: dict = {}
    for method in methods:
        runs = []
        for seed in seeds:
            cfg = load_config(config, {**(overrides or {}), "method": method, "train.seed": seed})
            run_dir = out / "runs" / f"{method}-seed{seed}"
            if resume and (run_dir / "metrics.json").is_file():
                log(f"{method} seed {seed}: finished before, loaded from {run_dir}")
                run, result = load_run(run_dir, cfg)
                runs.append(({"method": method, "seed": seed, **run}, result))
                continue
            log(f"{method} seed {seed}: training ({cfg.train.stage1.epochs}+{cfg.train.stage2.epochs} epochs)")
            result = train(
                cfg,
                splits,
                progress=False,
                stage1_cache=stage1_cache,
                checkpoint_dir=run_dir / "checkpoints",
                resume=resume,
            )
            run = {"method": method, "seed": seed, **save_run(run_dir, result, splits)}
            remove_checkpoints(run_dir)
            report = run["test"]
            accs = ", ".join(f"{k} {v['accuracy']:.2%}" for k, v in report["subsets"].items())
            reused = " (stage 1 reused)" if result.selected.get("stage1_reused") else ""
            log(
                f"{method} seed {seed}: {result.train_seconds:.1f}s{reused}  test: {accs}  "
                f"CR {report['counterintuitive_rate']:.2%}"
            )
            runs.append((run, result))
        resolved = runs[0][1].config
        summary["protocol"] = (
            f"{splits.description} Expert mixtures (simmlm, dmome, late_fusion) train in two stages "
            f"(stage 1: {resolved.train.stage1.epochs} epochs per expert, stage 2: {resolved.train.stage2.epochs} "
            "epochs; stage 1 is shared between methods with identical experts); methods without per-modality "
            "experts (mmp, dream) train in one stage for the same total number of epochs, dream after its "
            "scorer. Adam; every stage keeps its best epoch on validation accuracy (stage 2: mean over every "
            "subset), never on test data. Test metrics: every non-empty modality subset; ECE/SCE with 20 bins."
        )
        summary["methods"][method] = _aggregate(
            [r for r, _ in runs],
            count_params(runs[0][1].model),
            full_modality_flops(runs[0][1].model, splits),
            {s: r.config.train.mofe_lambda for s, (_, r) in zip(seeds, runs, strict=True)},
        )
        # Written after every method, so an interruption keeps what is finished.
        if is_global_zero():
            write_atomic(out / "summary.json", json.dumps(summary, indent=2))
            write_atomic(out / "summary.md", summary_markdown(summary))
    return summary


def load_run(run_dir: Path, cfg: RunConfig) -> tuple[dict[str, Any], RunResult]:
    """The metrics and model of a finished run folder; an error if it was trained with another config."""
    model, saved, _ = load_checkpoint(run_dir / "model.pt")
    differ = config_differences(saved.model_dump(mode="json"), resolve_config(cfg).model_dump(mode="json"))
    if differ:
        raise ValueError(
            f"{run_dir} was trained with another config (differs in {', '.join(differ)}); "
            "drop --resume or choose another --out"
        )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics, RunResult(model, saved, metrics["train_seconds"], metrics["selected"], metrics["mofe"])


def _aggregate(runs: list[dict[str, Any]], params: int, flops: int, lambdas: dict[int, Any]) -> dict[str, Any]:
    tests = [r["test"] for r in runs]
    subsets = {
        name: {key: [t["subsets"][name][key] for t in tests] for key in tests[0]["subsets"][name]}
        for name in tests[0]["subsets"]
    }
    gate_weights = {
        name: {m: statistics.fmean(t["gate_weights"][name][m] for t in tests) for m in weights}
        for name, weights in tests[0]["gate_weights"].items()
    }
    return {
        "subsets": subsets,
        "average_accuracy": [t["average_accuracy"] for t in tests],
        "counterintuitive_rate": [t["counterintuitive_rate"] for t in tests],
        "gate_weights": gate_weights,
        "train_seconds": [r["train_seconds"] for r in runs],
        "params": params,
        "flops_full": flops,
        "mofe_lambda": next(iter(lambdas.values())),
        "mofe_hinge_mean": [r["mofe"].get("hinge_mean") for r in runs],
        "mofe_active_fraction": [r["mofe"].get("active_fraction") for r in runs],
        "val_average_accuracy": [r["val_average_accuracy"] for r in runs],
    }


def _pm(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """Render ``summary.json`` as Markdown tables (mean ± std over seeds, percentages)."""
    methods = summary["methods"]
    names = list(next(iter(methods.values()))["subsets"])
    lines = [
        f"# {summary['dataset']}: {', '.join(methods)} (seeds {', '.join(map(str, summary['seeds']))})",
        "",
        summary["protocol"],
        "",
        "## Test accuracy (%) per available-modality subset",
        "",
        "| method | " + " | ".join(names) + " | average | CR (%) ↓ | ECE (%) ↓ | params | MFLOPs | train s |",
        "|---" * (len(names) + 7) + "|",
    ]
    for method, m in methods.items():
        cells = [_pm(m["subsets"][n]["accuracy"]) for n in names]
        ece = [statistics.fmean(per_seed) for per_seed in zip(*(m["subsets"][n]["ece"] for n in names), strict=True)]
        lines.append(
            f"| {method} | "
            + " | ".join(cells)
            + f" | {_pm(m['average_accuracy'])} | {_pm(m['counterintuitive_rate'])} | {_pm(ece)} | "
            + f"{m['params']:,} | {m['flops_full'] / 1e6:.2f} | {statistics.fmean(m['train_seconds']):.1f} |"
        )
    lines += ["", "ECE in this table is the mean over subsets; FLOPs are for one full-modality sample."]
    lines += [
        "",
        "## Calibration (%) per subset: ECE / SCE (20 bins) ↓",
        "",
        "| method | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for method, m in methods.items():
        cells = [f"{_pm(m['subsets'][n]['ece'])} / {_pm(m['subsets'][n]['sce'])}" for n in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Mean gate weights (test set, mean over seeds)",
        "",
        "| method | subset | weights |",
        "|---|---|---|",
    ]
    for method, m in methods.items():
        for subset, weights in m["gate_weights"].items():
            lines.append(f"| {method} | {subset} | " + ", ".join(f"{k} {v:.3f}" for k, v in weights.items()) + " |")
    lines += [
        "",
        "## MoFe hinge during stage 2 (mean over steps)",
        "",
        "| method | lambda | hinge active (% of samples) | mean hinge |",
        "|---|---|---|---|",
    ]
    for method, m in methods.items():
        lines.append(
            f"| {method} | {m['mofe_lambda']} | {_pm(m['mofe_active_fraction'])} | "
            f"{_pm(m['mofe_hinge_mean'], scale=1.0, digits=4)} |"
        )
    return "\n".join(lines) + "\n"
