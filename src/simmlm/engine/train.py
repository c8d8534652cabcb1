"""Train one run: data -> model -> stage 1 -> stage 2, with seeds, on Lightning."""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from torch import nn

from simmlm.data.base import Splits, make_loader
from simmlm.engine.config import DataConfig, RunConfig
from simmlm.engine.stages import CooperativeStage, ExpertStage
from simmlm.methods import create_method, get_method


def resolve_data_dir(data_dir: Path | None) -> Path:
    """The data directory: the config/option value, else ``$SIMMLM_DATA_DIR``; a clear error otherwise."""
    if data_dir is None:
        env = os.environ.get("SIMMLM_DATA_DIR")
        if not env:
            raise FileNotFoundError("no data directory given: pass --data-dir DIR or set SIMMLM_DATA_DIR")
        data_dir = Path(env)
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    return Path(data_dir)


def load_splits(data: DataConfig) -> Splits:
    """Train / validation / test splits of the configured dataset."""
    if data.dataset == "avmnist":
        from simmlm.data.avmnist import load_avmnist

        return load_avmnist(resolve_data_dir(data.data_dir), data.val_fraction, data.audio_scaling)
    raise ValueError(f"unknown dataset {data.dataset!r}")  # pragma: no cover - pydantic rejects it first


def resolve_config(cfg: RunConfig) -> RunConfig:
    """Fill what the method defines (e.g. its MoFe lambda) where the config left it open."""
    entry = get_method(cfg.method)
    train = cfg.train.model_copy(
        update={k: v for k, v in entry.train_defaults.items() if getattr(cfg.train, k) is None}
    )
    if train.mofe_lambda is None:
        train = train.model_copy(update={"mofe_lambda": 0.0})
    return cfg.model_copy(update={"train": train})


def build_model(cfg: RunConfig, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> nn.Module:
    """Instantiate the configured method for inputs of the given shapes."""
    m = cfg.model
    return create_method(
        cfg.method,
        input_shapes=input_shapes,
        num_classes=num_classes,
        expert=m.expert,
        expert_options=m.expert_options,
        gate_width=m.gate_width,
        gate_hidden=m.gate_hidden,
        gate_channels=m.gate_channels,
    )


@dataclass
class RunResult:
    """A trained model and what its training measured."""

    model: nn.Module
    config: RunConfig
    train_seconds: float
    selected: dict[str, Any] = field(default_factory=dict)
    mofe: dict[str, float] = field(default_factory=dict)


def _trainer(epochs: int, accelerator: str, progress: bool) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
    )


def quiet_lightning() -> None:
    """Silence Lightning's start-up banners (device summaries, tips) for batch runs."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")


def train(cfg: RunConfig, splits: Splits, progress: bool = True) -> RunResult:
    """Two-stage training of ``cfg.method`` on ``splits`` (test split untouched)."""
    cfg = resolve_config(cfg)
    t = cfg.train
    L.seed_everything(t.seed, workers=True, verbose=False)
    shapes = {name: tuple(x.shape[1:]) for name, x in splits.train.inputs.items()}
    model = build_model(cfg, shapes, splits.num_classes)
    unknown = sorted(set(t.augment) - set(splits.modalities))
    if unknown:
        raise ValueError(f"augment names unknown modalities {unknown}; known: {splits.modalities}")
    loader = make_loader(splits.train, t.batch_size, shuffle=True, seed=t.seed)
    start = time.perf_counter()
    selected: dict[str, Any] = {}
    if t.stage1.epochs > 0 and hasattr(model, "experts"):
        stage1 = ExpertStage(model, splits.val, t.stage1.lr, t.stage1.weight_decay, t.augment)  # type: ignore[arg-type]
        _trainer(t.stage1.epochs, t.accelerator, progress).fit(stage1, loader)
        selected["stage1"] = stage1.selected()
    stage2 = CooperativeStage(
        model, splits.val, t.stage2.lr, t.stage2.weight_decay, t.augment, float(t.mofe_lambda or 0.0), t.mofe_views
    )
    if t.stage2.epochs > 0:
        _trainer(t.stage2.epochs, t.accelerator, progress).fit(stage2, loader)
        selected["stage2"] = stage2.selected()
    model.cpu().eval()
    return RunResult(model, cfg, time.perf_counter() - start, selected, stage2.mofe_stats())
