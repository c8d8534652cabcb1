"""Checkpoints: ``state_dict`` + the resolved config, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simmlm.engine.config import RunConfig
from simmlm.engine.train import build_model


def save_checkpoint(path: str | Path, model: nn.Module, cfg: RunConfig, **meta: Any) -> None:
    """Write ``{"state_dict", "config", **meta}`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": model.state_dict(), "config": cfg.model_dump(mode="json"), **meta}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """Rebuild the model of a checkpoint written by :func:`save_checkpoint`; returns (model, config, meta)."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    cfg = RunConfig.model_validate(blob.pop("config"))
    state = blob.pop("state_dict")
    model = build_model(cfg, {k: tuple(v) for k, v in blob["input_shapes"].items()}, blob["num_classes"])
    model.load_state_dict(state)
    return model.eval(), cfg, blob
