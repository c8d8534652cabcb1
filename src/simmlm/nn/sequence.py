"""Modules for ``[T, D]`` feature sequences (one row of ``D`` features per frame), e.g. CMU-MOSI / MOSEI.

A frame whose features are all zero is absent: zero padding, a frame dropped by intra-modal missingness
(:mod:`simmlm.datasets.seqfeatures.loader` zero-fills those), or every frame of a missing modality. Pooling and the
Transformer's attention ignore absent frames (so trailing padding changes nothing there); the GRU and the
convolutions still run over them.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

SEQUENCE_KINDS = ("gru", "transformer", "conv1d")


def present_frames(x: Tensor) -> Tensor:
    """``[B, T]``: True where frame ``t`` of ``x`` ``[B, T, D]`` has a non-zero feature."""
    return x.ne(0).any(-1)


def masked_mean(h: Tensor, keep: Tensor) -> Tensor:
    """Mean of ``h`` ``[B, T, H]`` over the frames where ``keep`` ``[B, T]`` (0 for a row with none)."""
    weights = keep.to(h.dtype).unsqueeze(-1)
    return (h * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class SequenceExpert(nn.Module):
    """A sequence classifier: per-frame projection, a GRU / Transformer encoder / 1-D convolutions over the frames,
    pooling over the present frames (mean, or attention) and a linear classifier.

    Args:
        in_features: ``D``, features per frame.
        num_classes: output classes.
        kind: ``"gru"``, ``"transformer"`` or ``"conv1d"``.
        hidden: width of every layer.
        layers: recurrent / Transformer / convolutional layers.
        heads: attention heads (``"transformer"``).
        pool: ``"mean"`` over present frames or ``"attention"`` (a learned score per frame, softmax over present
            frames).
        dropout: before the classifier (and inside the Transformer layers).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        kind: Literal["gru", "transformer", "conv1d"] = "gru",
        hidden: int = 64,
        layers: int = 1,
        heads: int = 4,
        pool: Literal["mean", "attention"] = "mean",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in SEQUENCE_KINDS:
            raise ValueError(f"kind must be one of {SEQUENCE_KINDS}, got {kind!r}")
        if pool not in ("mean", "attention"):
            raise ValueError(f"pool must be 'mean' or 'attention', got {pool!r}")
        self.kind = kind
        self.project = nn.Linear(in_features, hidden)
        self.body: nn.Module
        if kind == "gru":
            self.body = nn.GRU(hidden, hidden, layers, batch_first=True)
        elif kind == "transformer":
            layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout, batch_first=True)
            self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        else:
            convs: list[nn.Module] = []
            for _ in range(layers):
                convs += [nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU()]
            self.body = nn.Sequential(*convs)
        self.score = nn.Linear(hidden, 1) if pool == "attention" else None
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        keep = present_frames(x)
        h = self.project(x)
        if self.kind == "gru":
            h = self.body(h)[0]
        elif self.kind == "transformer":
            # a row without any present frame (a missing modality) attends to its zeros rather than to nothing
            padding = ~keep & keep.any(1, keepdim=True)
            h = self.body(h, src_key_padding_mask=padding)
        else:
            h = self.body(h.transpose(1, 2)).transpose(1, 2)
        if self.score is None:
            return self.head(masked_mean(h, keep))
        scores = self.score(h).squeeze(-1).masked_fill(~keep, float("-inf"))
        scores = torch.where(keep.any(1, keepdim=True), scores, torch.zeros_like(scores))
        return self.head((scores.softmax(1).unsqueeze(-1) * h).sum(1))


class SequenceGateEncoder(nn.Module):
    """The gate's view of a ``[T, D]`` sequence: a per-frame linear map and ReLU, averaged over present frames."""

    def __init__(self, in_features: int, out_features: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, out_features), nn.ReLU())
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        return masked_mean(self.net(x), present_frames(x))


class FrameTokenEncoder(nn.Module):
    """Tokens = frames: each frame of a ``[T, D]`` sequence mapped to ``dim`` (plus a learned position), for MMP
    and DREAM."""

    def __init__(self, in_features: int, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, dim)
        self.position = nn.Parameter(torch.zeros(num_tokens, dim))
        self.num_tokens = num_tokens

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x) + self.position
