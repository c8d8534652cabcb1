"""Run folders without Lightning: checkpoints (``model.pt``), ``metrics.json``, ``predictions.npz``, params/FLOPs.

A run folder (``simmlm train --out DIR`` or ``DIR/runs/<method>-seed<k>`` of a benchmark) holds:

- ``model.pt``: ``{"state_dict", "config", "input_shapes", "num_classes", "modalities", "preprocessing"}``, loaded
  with ``weights_only=True`` and rebuilt by :func:`load_checkpoint` from the config alone;
- ``metrics.json``: the test report under every subset, the validation average, training time, the epochs each
  stage selected and the MoFe statistics;
- ``predictions.npz`` (classification): test-set class probabilities per subset, for reliability diagrams, and
  the test samples' ids where the dataset names them (folder data: the manifest's ``sample_id``).

:func:`predict_files` runs a finished run folder's model on files (``simmlm predict``): its task reads them and
predicts (:mod:`simmlm.evaluation.predict`).

Every file is written to a temporary file beside its target and renamed over it
(:func:`simmlm.fileio.atomic_path`), so a kill leaves the old file or the new one, never half of one. Under DDP
only the global rank 0 writes.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simmlm.data.base import Splits
from simmlm.engine.config import RunConfig, config_differences, resolve_config
from simmlm.fileio import atomic_path, torch_save_atomic, write_text_atomic


def is_global_zero() -> bool:
    """Whether this process is the global rank 0 (the only one that writes files).

    Lightning sets the rank on ``lightning_utilities``' ``rank_zero_only`` (the object it re-exports), so this needs
    no Lightning import: outside a distributed run the rank is 0.
    """
    from lightning_utilities.core.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def build_model(cfg: RunConfig, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> nn.Module:
    """Instantiate the configured method for inputs of the given shapes."""
    from simmlm.methods import create_method

    m = cfg.model  # gate options reach only methods with a gate (create_method)
    expert, expert_options = _expert_setting(cfg)
    return create_method(
        cfg.method,
        input_shapes=input_shapes,
        num_classes=num_classes,
        expert=expert,
        expert_options=expert_options,
        gate_width=m.gate_width,
        gate_hidden=m.gate_hidden,
        gate_channels=m.gate_channels,
        gate_on=m.gate_on,
        **m.method_options,
    )


def _expert_setting(cfg: RunConfig) -> tuple[Any, dict[str, Any]]:
    """``model.expert`` and ``model.expert_options``, unless the data section supplies the experts (Food-101
    fine-tuning: experts standing on its encoders)."""
    experts = getattr(cfg.data, "experts", None)
    return experts(cfg.model) if experts is not None else (cfg.model.expert, cfg.model.expert_options)


def explain_experts(cfg: RunConfig, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, dict[str, str]]:
    """Which expert each modality gets under ``cfg`` and why (``{"kind", "why"}`` per modality), as
    :func:`build_model` will build it; for ``simmlm data``, the start of a benchmark and its summary."""
    from simmlm.nn.experts import check_expert_options, expert_kinds, expert_options_for, explain_expert

    expert, options = _expert_setting(cfg)
    kinds = expert_kinds(input_shapes, expert)
    explained = {name: explain_expert(name, kinds[name], shape) for name, shape in input_shapes.items()}
    for name, (kind, _) in explained.items():  # a misspelt option is refused here, before anything trains
        try:
            check_expert_options(kind, expert_options_for(name, list(input_shapes), options))
        except ValueError as err:
            raise ValueError(f"modality {name!r}: {err}") from None
    return {name: {"kind": kind, "why": why} for name, (kind, why) in explained.items()}


def save_checkpoint(path: str | Path, model: nn.Module, cfg: RunConfig, **meta: Any) -> None:
    """Write ``{"state_dict", "config", **meta}`` to ``path`` atomically."""
    torch_save_atomic({"state_dict": model.state_dict(), "config": cfg.model_dump(mode="json"), **meta}, path)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """Rebuild the model of a checkpoint written by :func:`save_checkpoint`; returns (model, config, meta).

    Loaded with ``weights_only=True`` (tensors and plain containers only, so a file cannot run code); a file that
    is not such a checkpoint is one ``ValueError`` (torch's own message is not relayed: for some files it advises
    loading with ``weights_only=False``, which would run whatever the file holds)."""
    path = Path(path)
    not_ours = (
        f"{path} is not a model.pt that simmlm wrote, or it is damaged or truncated; nothing in it was run. Give the "
        "folder of a finished run, or train it again"
    )
    try:
        with warnings.catch_warnings():  # torch's notes on a foreign file's pickle protocol are not the user's concern
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # any bytes at all: whatever the unpickler raises, the file is not a checkpoint
        raise ValueError(f"{not_ours} ({type(err).__name__})") from err
    try:
        cfg = RunConfig.model_validate(blob.pop("config"))
        state = blob.pop("state_dict")
        model = build_model(cfg, {k: tuple(v) for k, v in blob["input_shapes"].items()}, blob["num_classes"])
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:  # the wrong content
        raise ValueError(f"{not_ours} ({type(err).__name__})") from err
    return model.eval(), cfg, blob


def refuse_other_runs(out: Path, configs: dict[str, RunConfig], data_dir: str | None) -> None:
    """A ``ValueError`` when ``out`` holds a finished run (``runs/NAME/model.pt``) made with another config than the
    one ``configs[NAME]`` would train, or a summary of another data folder: a benchmark never silently overwrites
    another experiment (``--overwrite`` or ``--resume`` skips this check)."""
    summary = Path(out) / "summary.json"
    if data_dir and summary.is_file():
        try:
            before = json.loads(summary.read_text()).get("data_dir")
        except (ValueError, OSError, AttributeError):
            before = None
        if before and Path(before) != Path(data_dir).resolve():
            raise ValueError(
                f"{out} holds a benchmark of another data folder ({before}); choose another --out, or pass "
                "--overwrite to replace it"
            )
    for name, cfg in configs.items():
        path = Path(out) / "runs" / name / "model.pt"
        if not path.is_file():
            continue
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["config"]
        except Exception:  # unreadable: nothing worth keeping is lost by training it again
            continue
        differ = config_differences(saved, resolve_config(cfg).model_dump(mode="json"))
        if differ:
            raise ValueError(
                f"{out} holds a finished run {name} made with another config (differs in {', '.join(differ)}); "
                "choose another --out, or pass --overwrite to replace it"
            )


@dataclass
class RunResult:
    """A trained model and what its training measured."""

    model: nn.Module
    config: RunConfig
    train_seconds: float  #: everything this model's training took, including phases reused from another run
    selected: dict[str, Any] = field(default_factory=dict)
    mofe: dict[str, float] = field(default_factory=dict)
    shared_seconds: float = 0.0  #: the part of ``train_seconds`` reused (trained once for several methods)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def full_modality_flops(model: nn.Module, splits: Splits, cfg: RunConfig | None = None) -> int:
    """FLOPs of one forward pass with every modality present (torch.utils.flop_counter): one test sample for
    classification, one training-crop-sized volume for segmentation (the task's example input).

    Counted with autograd enabled: under ``torch.no_grad`` the counter's module tracker fails on
    ``nn.MultiheadAttention`` (torch 2.13). Only the forward pass runs.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from simmlm.engine.tasks import task_for

    inputs, mask = task_for(cfg or RunConfig()).example_inputs(splits)
    counter = FlopCounterMode(display=False)
    with counter:
        model(inputs, mask)
    return int(counter.get_total_flops())


def save_run(run_dir: Path, result: RunResult, splits: Splits) -> dict[str, Any]:
    """Evaluate a trained run on every subset; write ``model.pt``, ``metrics.json`` and ``predictions.npz``.

    ``predictions.npz`` (classification only) holds the test-set class probabilities per subset (``probs``
    ``[S, N, K]``, NaN for samples lacking a modality of the subset; ``subsets``, ``targets``), from which reports
    draw reliability diagrams. Returns the metrics: test report, validation average score, training time,
    selections and MoFe stats. Only the global rank 0 writes (under DDP every rank holds the same trained model).
    """
    from simmlm.engine.tasks import task_for

    task = task_for(result.config)
    report, arrays = task.report(result.model, splits.test, splits.modalities)
    val_report, _ = task.report(result.model, splits.val, splits.modalities)
    metrics = {
        "test": report,
        f"val_{task.average_key}": val_report[task.average_key],
        "train_seconds": result.train_seconds,
        "shared_seconds": result.shared_seconds,
        "selected": result.selected,
        "mofe": result.mofe,
    }
    if not is_global_zero():
        return metrics
    save_checkpoint(
        run_dir / "model.pt",
        result.model,
        result.config,
        input_shapes={k: list(v) for k, v in task.input_shapes(splits).items()},
        num_classes=splits.num_classes,
        modalities=splits.modalities,
        preprocessing=splits.preprocessing,
    )
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    if arrays:
        with atomic_path(run_dir / "predictions.npz") as tmp:
            np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    return metrics


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
    shared = metrics.get("shared_seconds", 0.0)  # absent from runs written before it was recorded
    return metrics, RunResult(model, saved, metrics["train_seconds"], metrics["selected"], metrics["mofe"], shared)


def predict_files(run_dir: str | Path, files: dict[str, Path | str], output: Path | None = None) -> dict[str, Any]:
    """Prediction, class probabilities (or region volumes), gate weights and entropy for the given files.

    The run's task reads the files (each dataset's own reader; a ``str`` is a text given as such, e.g. a title) and
    predicts (:mod:`simmlm.evaluation.predict`: the files each dataset reads); ``output`` (segmentation runs only)
    receives the predicted label map as NIfTI, in the input's space.
    """
    from simmlm.engine.tasks import task_for

    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").is_file():
        unfinished = " (it holds checkpoints/: an unfinished run; finish it with --resume)"
        raise FileNotFoundError(
            f"{run_dir} holds no model.pt{unfinished if (run_dir / 'checkpoints').is_dir() else ''}: give the folder "
            "of a finished run, where train or benchmark wrote model.pt (e.g. results/avmnist/runs/simmlm-seed0)"
        )
    model, cfg, meta = load_checkpoint(run_dir / "model.pt")
    task = task_for(cfg)
    modalities: list[str] = list(meta["modalities"])
    unknown = sorted(set(files) - set(modalities) - task.extra_inputs)
    if unknown:
        raise ValueError(f"unknown modality {unknown}; this model takes {modalities}")
    if not set(files) - task.extra_inputs:
        raise ValueError(f"give at least one input; this model takes {modalities}")
    return task.predict(model, cfg, meta, files, output)
