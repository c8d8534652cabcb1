"""Which encoder an image-text expert stands on, as pydantic models with no torch import (a dataset section holds
them; :mod:`simmlm.nn.encoders` builds the encoders)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ImageEncoderSpec(BaseModel):
    """Which image encoder: its kind, width (``cnn``), local weights file and the seed of a random draw."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["cnn", "resnet18"] = "cnn"
    width: int = Field(32, ge=4, description="cnn: channels of the first block (features: 4 x width)")
    weights: Path | None = Field(None, description="a local state-dict file (.pt / .pth) of the backbone")
    seed: int = Field(0, description="seed of the random initialisation (used when no weights are given)")


class TextEncoderSpec(BaseModel):
    """Which text encoder: ``hashed`` (built in, no weights) or ``huggingface`` (a local folder)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["hashed", "huggingface"] = "hashed"
    dim: int = Field(256, ge=8, description="hashed: embedding width")
    buckets: int = Field(1 << 15, ge=16, description="hashed: hash buckets (rows of the embedding table)")
    max_tokens: int = Field(64, ge=1, description="n-grams (hashed) or tokens (huggingface) kept per title")
    path: Path | None = Field(None, description="huggingface: folder with config, weights and tokenizer files")
    pooling: Literal["cls", "mean"] = Field("cls", description="huggingface: first token or mean over tokens")
    seed: int = Field(0, description="hashed: seed of the random embedding table")
