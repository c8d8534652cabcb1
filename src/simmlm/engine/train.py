"""Train one run: data -> model -> stage 1 -> stage 2, with seeds, on Lightning."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from torch import nn
from torch.utils.data import DataLoader

from simmlm.data.base import Splits, without_annotation
from simmlm.engine.callbacks import EpochLog, FailOnDivergence, ReleaseProcessGroup
from simmlm.engine.config import STAGES, RunConfig, TrainConfig, resolve_config, stage_augment
from simmlm.engine.resume import AtomicCheckpointIO, EpochCheckpoint, RunCheckpoints
from simmlm.engine.runs import RunResult, build_model
from simmlm.engine.schedule import stage_epochs
from simmlm.engine.stages import CooperativeStage, ExpertStage
from simmlm.engine.tasks import Task, task_for
from simmlm.methods import ExpertMixture, get_method
from simmlm.portable import configure_torch

logger = logging.getLogger(__name__)


def _trainer(epochs: int, t: TrainConfig, progress: bool, checkpoint: Path | None = None) -> L.Trainer:
    """A Trainer on ``t``'s devices; with ``checkpoint``, writing it (atomically) after every epoch."""
    callbacks: list[L.Callback] = [ReleaseProcessGroup(), FailOnDivergence()] + ([] if progress else [EpochLog()])
    if checkpoint is not None:
        callbacks.append(EpochCheckpoint(checkpoint))
    return L.Trainer(
        max_epochs=epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        strategy=_strategy(t),
        num_nodes=t.num_nodes,
        use_distributed_sampler=False,  # our ShardedBatchSampler shards each batch itself
        logger=False,
        enable_checkpointing=checkpoint is not None,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
    )


def check_precision(t: TrainConfig) -> None:
    """Refuse float16 mixed precision where it would run on the CPU (Lightning would switch to bfloat16 with a
    warning, and the run would not be what its config says)."""
    if t.precision != "16-mixed":
        return
    on_cpu = t.accelerator == "cpu" or (
        t.accelerator == "auto" and not torch.cuda.is_available() and not torch.backends.mps.is_available()
    )
    if on_cpu:
        raise ValueError("train.precision 16-mixed needs a GPU (float16 autocast); on the CPU use bf16-mixed or 32")


def pin_on_cuda(loader: DataLoader, trainer: L.Trainer) -> None:
    """On CUDA, batches in page-locked memory, so Lightning's copies to the device (``non_blocking``) overlap."""
    if isinstance(trainer.accelerator, CUDAAccelerator):
        loader.pin_memory = True  # read when the loader starts an epoch; allowed after construction


def to_channels_last(model: nn.Module) -> nn.Module:
    """Every 4-D (2-D convolution) and 5-D (3-D convolution) parameter and buffer of ``model`` in channels-last
    layout, in place: a convolution whose weight is channels-last runs channels-last (oneDNN on the CPU, cuDNN),
    whatever the input's layout. The values are unchanged; the arithmetic, and so the last bits, differ."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.ndim in formats:
            tensor.data = tensor.data.contiguous(memory_format=formats[tensor.ndim])
    return model


def _strategy(t: TrainConfig) -> str:
    """Lightning's strategy name; DDP variants detect unused parameters (stage 1 leaves the gate idle)."""
    name = t.strategy
    if name == "auto" and (t.devices != 1 or t.num_nodes > 1):
        name = "ddp"
    return f"{name}_find_unused_parameters_true" if name in ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook") else name


def _fit(
    stage: L.LightningModule,
    loader: DataLoader,
    epochs: int,
    t: TrainConfig,
    progress: bool,
    store: RunCheckpoints | None,
    phase: str,
) -> float:
    """Fit ``stage`` (continuing from ``phase``'s last checkpoint when resuming); returns its training seconds."""
    start = time.perf_counter()
    trainer = _trainer(epochs, t, progress, store.last(phase) if store is not None else None)
    if t.batch_size % trainer.world_size:
        raise ValueError(f"train.batch_size {t.batch_size} must be a multiple of the {trainer.world_size} processes")
    pin_on_cuda(loader, trainer)
    trainer.fit(stage, loader, ckpt_path=store.resume_from(phase) if store is not None else None)
    seconds = time.perf_counter() - start
    callback = trainer.checkpoint_callback
    return max(seconds, callback.seconds()) if isinstance(callback, EpochCheckpoint) else seconds


def quiet_lightning() -> None:
    """Silence Lightning's start-up banners (device summaries, tips) for batch runs."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # epoch values are equal on every rank
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def _stage_seed(seed: int, stage: int) -> int:
    """Each stage starts from its own seed, so a stage's result does not depend on whether the previous one ran."""
    return seed * 10 + stage


def stage1_key(cfg: RunConfig, splits: Splits, model: ExpertMixture) -> str:
    """Everything stage 1 depends on (including the experts' initial weights): equal keys, identical experts."""
    t = cfg.train
    init = hashlib.sha256()
    for name, tensor in model.experts.state_dict().items():
        init.update(name.encode())
        init.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    parts = {
        "experts_init": init.hexdigest(),
        "model": cfg.model.model_dump(mode="json", include={"expert", "expert_options"}),
        "data": cfg.data.model_dump(mode="json"),
        "splits": [len(splits.train), len(splits.val), splits.description],
        "train": t.model_dump(
            mode="json",
            include={
                "seed",
                "batch_size",
                "stage1",
                "min_steps",
                "augment",
                "precision",
                "channels_last",
                "accelerator",
                "devices",
                "strategy",
                "num_nodes",
            },
        ),
    }
    return json.dumps(parts, sort_keys=True)


def run_key(cfg: RunConfig, splits: Splits) -> str:
    """Everything a whole run depends on (runs are deterministic): equal keys, identical trained models."""
    parts = {
        "config": resolve_config(cfg).model_dump(mode="json"),
        "splits": [len(splits.train), len(splits.val), splits.description],
    }
    return "run:" + json.dumps(parts, sort_keys=True)


@dataclass
class StageOneResult:
    """Experts after stage 1, kept so that methods sharing stage 1 (simmlm, dmome) train it once."""

    expert_state: dict[str, Any]
    selected: dict[str, Any]
    seconds: float


def train(
    cfg: RunConfig,
    splits: Splits,
    progress: bool = True,
    cache: dict[str, StageOneResult | RunResult] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> RunResult:
    """Two-stage training of ``cfg.method`` on ``splits`` (test split untouched).

    With ``cache`` (a dict the caller keeps), stage 1 runs once per :func:`stage1_key` and later runs
    reuse its experts (the paper's point (b) of Sec. 3.3; simmlm, dmome and late_fusion share them), and every
    finished run is kept under its :func:`run_key`, so a method that pre-trains another (DREAM's scorer) reuses
    that method's run of the same seed instead of training it again. Results are identical either way, because
    runs and stages are seeded on their own; ``train_seconds`` always counts the reused phases' measured time,
    and ``shared_seconds`` says how much of it was reused rather than trained by this run.

    With ``checkpoint_dir`` every epoch is checkpointed there and every finished phase recorded
    (:mod:`simmlm.engine.resume`); with ``resume`` too, finished phases are loaded and an interrupted one
    continues from its last epoch, ending exactly where an uninterrupted run with the same seed ends.
    """
    configure_torch()  # portable mode (simmlm.portable): before anything is computed
    given, cfg = cfg, resolve_config(cfg)  # ``given``: what the caller set, before this method's defaults
    t = cfg.train
    task = task_for(cfg)
    L.seed_everything(t.seed, workers=True, verbose=False)
    model = build_model(cfg, task.input_shapes(splits), splits.num_classes)
    if t.channels_last:
        to_channels_last(model)
    task.check_method(model, cfg.method)
    if not getattr(model, "reads_annotation", True):  # e.g. dream_paper: never told which modalities are missing
        splits = without_annotation(splits)
    for where, specs in (("train.augment", t.augment), *((f"train.{s}.augment", stage_augment(t, s)) for s in STAGES)):
        unknown = sorted(set(specs) - set(splits.modalities))
        if unknown:
            raise ValueError(f"{where} names unknown modalities {unknown}; known: {splits.modalities}")
    check_precision(t)
    # only now, with the config, data and model known to be good, is anything written
    store = RunCheckpoints(checkpoint_dir, cfg, resume) if checkpoint_dir is not None else None
    entry = get_method(cfg.method)
    selected: dict[str, Any] = {}
    prior_seconds = 0.0  # pre-training (e.g. DREAM's scorer) and stage 1 (measured even when reused from the cache)
    shared_seconds = 0.0  # the part of it reused from the cache
    if entry.pretrain is not None:

        def train_method(method: str, options: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
            """The same run with another method (its default options, updated by ``options``), checkpointed in a
            sub-folder."""
            nonlocal prior_seconds, shared_seconds
            # from the config as given, so the other method gets its own defaults (e.g. simmlm's lambda), not ours
            nested_model = given.model.model_copy(update={"method_options": dict(options or {})})
            nested_cfg = given.model_copy(update={"method": method, "model": nested_model})
            done = cache.get(run_key(nested_cfg, splits)) if cache is not None else None
            if isinstance(done, RunResult):
                logger.info("  %s: the same run as before (reused, not retrained)", method)
                prior_seconds += done.train_seconds
                shared_seconds += done.train_seconds
                return done.model, {**done.selected, "reused": True}
            nested_dir = store.directory / f"pretrain-{method}" if store is not None else None
            nested = train(nested_cfg, splits, progress, cache, nested_dir, resume)
            prior_seconds += nested.train_seconds
            shared_seconds += nested.shared_seconds
            return nested.model, nested.selected

        selected.update(entry.pretrain(model, train_method, splits.train))
    if t.stage1.epochs > 0 and isinstance(model, ExpertMixture):
        stage1 = stage_one(cfg, splits, model, task, progress, cache, store)
        selected.update(stage1.selected)
        prior_seconds += stage1.seconds
        shared_seconds += stage1.seconds if stage1.selected.get("stage1_reused") else 0.0
    values = shrinkage_grid(t.gate_shrinkage, model)
    start = copy.deepcopy(model.state_dict()) if len(values) > 1 else None
    tried: list[tuple[float, StageTwoResult]] = []
    best: tuple[float, StageTwoResult, dict[str, Any] | None] | None = None
    for value in values:
        if start is not None:
            model.load_state_dict(start)  # every value from the same stage-1 experts and the same stage-2 seed
            logger.info(
                "  stage 2 with gate_shrinkage %g (%d of %d values; validation chooses)",
                value,
                len(tried) + 1,
                len(values),
            )
        phase = "stage2" if len(values) == 1 else f"stage2-shrinkage{value:g}"
        two = _stage_two(cfg, splits, model, task, progress, store, value, phase)
        tried.append((value, two))
        # the best validation score (mean accuracy or Dice over subsets; a tie goes to the lower validation loss, as
        # in the choice of epochs; then to the value listed first): only its weights are kept
        if best is None or two.score > best[1].score:
            best = (value, two, copy.deepcopy(model.state_dict()) if start is not None else None)
    assert best is not None
    chosen, two, state = best
    if state is not None:
        model.load_state_dict(state)
    selected.update(two.selected)
    mofe, seconds = two.mofe, sum(x.seconds for _, x in tried)
    if len(values) > 1:
        scores = {f"{v:g}": x.score[0] for v, x in tried}
        losses = {f"{v:g}": -x.score[1] for v, x in tried}
        selected["gate_shrinkage"] = {"chosen": chosen, "val_mean_score": scores, "val_mean_loss": losses}
        logger.info("  gate_shrinkage %g chosen (validation mean score: %s)", chosen, scores)
    if entry.after_training is not None:
        entry.after_training(model)
    model.cpu().eval()
    result = RunResult(model, cfg, prior_seconds + seconds, selected, mofe, shared_seconds)
    if cache is not None:
        cache[run_key(given, splits)] = result
    return result


def shrinkage_grid(setting: float | list[float], model: nn.Module) -> list[float]:
    """The gate-shrinkage values stage 2 tries (``train.gate_shrinkage``: one value, or a list to choose from on
    validation). Only a learned gate over experts (DMoME: simmlm, dmome) has weights to shrink: other methods train
    once, with the first value (it changes nothing for them)."""
    values = [float(setting)] if isinstance(setting, int | float) else [float(v) for v in setting]
    learned_gate = isinstance(model, ExpertMixture) and any(
        p.requires_grad for name, p in model.named_parameters() if not name.startswith("experts.")
    )
    return values if learned_gate else values[:1]


@dataclass
class StageTwoResult:
    """What stage 2 gave: the ``selected`` entries, MoFe statistics, seconds and its best validation score."""

    selected: dict[str, Any]
    mofe: dict[str, float]
    seconds: float
    score: tuple[float, float]


def _stage_two(
    cfg: RunConfig,
    splits: Splits,
    model: nn.Module,
    task: Task,
    progress: bool,
    store: RunCheckpoints | None,
    gate_shrinkage: float,
    phase: str,
) -> StageTwoResult:
    """Stage 2 (experts + gate with eq. 4; the whole training of a method without stage 1) with one gate-shrinkage
    value: from its finished-phase record when resuming, else trained (resumably) under ``phase``."""
    t = cfg.train
    entry = get_method(cfg.method)
    done = store.done(phase) if store is not None else None
    if done is not None:
        model.load_state_dict(done["model"])
        score = tuple(done.get("score", (0.0, 0.0)))
        return StageTwoResult(done["selected"], done["mofe"], done["seconds"], (score[0], score[1]))
    L.seed_everything(_stage_seed(t.seed, 2), workers=True, verbose=False)
    two_stage = isinstance(model, ExpertMixture)
    stage2 = CooperativeStage(
        model,
        splits.val,
        t.stage2.lr,
        t.stage2.weight_decay,
        stage_augment(t, "stage2"),
        float(t.mofe_lambda or 0.0),
        t.mofe_views,
        task,
        gate_shrinkage,
        t.pairs_per_sample,
        "stage2" if two_stage else "train",
        t.stage2.expert_lr_scale,
    )
    if t.gate_init == "uniform" and isinstance(model, ExpertMixture):
        model.reset_fusion_to_uniform()
    # Methods without per-modality experts have no stage 1: they get the whole epoch budget in one stage,
    # unless their pre-training gave them stage-1 weights (DREAM's encoders from its scorer's experts).
    n = task.samples_per_epoch(splits)
    if two_stage:
        what = "stage 2 (experts + gate)"
    elif entry.stage1_in_pretrain:
        what = "stage 2 (after its pre-training)"
    else:
        what = "one stage (no per-modality experts to train first)"
    one_stage = not (two_stage or entry.stage1_in_pretrain)
    epochs = stage_epochs(t.stage2.epochs, n, t) + (stage_epochs(t.stage1.epochs, n, t) if one_stage else 0)
    logger.info("  %s: %d epochs", what, epochs)
    seconds, selected = 0.0, {}
    if epochs > 0:
        loader = task.train_loader(
            splits.train, t.batch_size, _stage_seed(t.seed, 2), with_index=entry.needs_sample_index
        )
        seconds = _fit(stage2, loader, epochs, t, progress, store, phase)
        selected["stage2"] = stage2.selected()
    mofe = stage2.mofe_stats()
    score = stage2.best[0] if stage2.best is not None else (0.0, 0.0)
    if store is not None:
        record = {"model": model.state_dict(), "selected": selected, "mofe": mofe, "seconds": seconds, "score": score}
        store.save_done(phase, record)
    return StageTwoResult(selected, mofe, seconds, (float(score[0]), float(score[1])))


def stage_one(
    cfg: RunConfig,
    splits: Splits,
    model: ExpertMixture,
    task: Task,
    progress: bool,
    cache: dict[str, StageOneResult | RunResult] | None,
    store: RunCheckpoints | None,
) -> StageOneResult:
    """Stage 1 of ``model``'s experts: from a finished-phase record, the cache, or trained (resumably).

    Returns the experts' state, the ``selected`` entries to report and the seconds to count.
    """
    t = cfg.train
    key = stage1_key(cfg, splits, model)
    done = store.done("stage1") if store is not None else None
    if done is not None:
        result = StageOneResult(done["expert_state"], done["selected"], done["seconds"])
        model.experts.load_state_dict(result.expert_state)
        return result
    cached = cache.get(key) if cache is not None else None
    if not isinstance(cached, StageOneResult):
        L.seed_everything(_stage_seed(t.seed, 1), workers=True, verbose=False)
        stage = ExpertStage(model, splits.val, t.stage1.lr, t.stage1.weight_decay, stage_augment(t, "stage1"), task)
        loader = task.train_loader(splits.train, t.batch_size, seed=_stage_seed(t.seed, 1))
        epochs = stage_epochs(t.stage1.epochs, task.samples_per_epoch(splits), t)
        logger.info("  stage 1 (each expert alone): %d epochs", epochs)
        seconds = _fit(stage, loader, epochs, t, progress, store, "stage1")
        cached = StageOneResult(copy.deepcopy(model.experts.state_dict()), stage.selected(), seconds)
        if cache is not None:
            cache[key] = cached
        report: dict[str, Any] = {"stage1": cached.selected}
    else:
        model.experts.load_state_dict(cached.expert_state)
        logger.info("  stage 1: the same experts as a run before (reused, not retrained)")
        report = {"stage1_reused": True, "stage1": cached.selected}
    result = StageOneResult(cached.expert_state, report, cached.seconds)
    if store is not None:
        store.save_done("stage1", {"expert_state": result.expert_state, "selected": report, "seconds": result.seconds})
    return result
