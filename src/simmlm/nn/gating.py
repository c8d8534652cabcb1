"""Gating networks of DMoME: zero-filled inputs of every modality -> one gate logit per modality (x channel)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from simmlm.nn.sequence import SequenceGateEncoder


class ConvGateEncoder(nn.Module):
    """Lightweight strided CNN with global average pooling: one modality -> a feature vector.

    Input-size independent, so the same gate serves inputs of any spatial size.
    """

    def __init__(self, in_channels: int = 1, width: int = 8, spatial_dims: int = 2) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
        pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[spatial_dims]
        self.net = nn.Sequential(
            conv(in_channels, width, 3, stride=2, padding=1),
            nn.ReLU(),
            conv(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            pool(1),
            nn.Flatten(),
        )
        self.out_features = 2 * width

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class FlatGateEncoder(nn.Module):
    """Linear projection of a flattened feature-vector modality."""

    def __init__(self, in_features: int, out_features: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features), nn.ReLU())
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class GatingNetwork(nn.Module):
    """``G(x; phi)`` of SimMLM: per-modality encoders, concatenation, MLP -> gate logits ``[B, M(, K)]``.

    Args:
        encoders: modality name -> encoder with an ``out_features`` attribute (dataset modality order).
        num_channels: ``K``; ``None`` gives one gate per modality (``[B, M]``), an integer one gate per
            modality and output channel (``[B, M, K]``, e.g. K = 3 tumour regions).
        hidden: width of the MLP head.
    """

    def __init__(self, encoders: dict[str, nn.Module], num_channels: int | None = None, hidden: int = 32) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.num_modalities = len(encoders)
        self.num_channels = num_channels
        in_features = sum(int(e.out_features) for e in encoders.values())  # type: ignore[misc, arg-type]
        self.head = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, self.num_modalities * (num_channels or 1)),
        )

    @torch.no_grad()
    def reset_to_uniform(self) -> None:
        """Zero the output layer: every gate logit is 0, so the weights start uniform over the present modalities."""
        last = self.head[-1]
        assert isinstance(last, nn.Linear)
        last.weight.zero_()
        last.bias.zero_()

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        features = torch.cat([encoder(inputs[name]) for name, encoder in self.encoders.items()], dim=1)
        return self._shape(self.head(features))

    def subset_logits(self, inputs: dict[str, Tensor], subset_masks: Tensor) -> Tensor:
        """Gate logits ``[S, B, M(, K)]`` for ``S`` subsets of one batch (``subset_masks``: ``[S, B, M]``).

        A modality outside a subset is zero-filled, so its encoding is ``enc(0)``, the same for every sample: each
        encoder runs once on the batch and once on a single zero input. The head's first layer is linear in the
        concatenated encodings, ``W [f_1; ...; f_M] + b = b + sum_m W_m f_m``, so each modality's term is computed
        once present (``W_m enc(x_m)``) and once absent (``W_m enc(0)``), and a subset's pre-activation is their
        masked sum; only the rest of the head runs per subset (all subsets in one call). Equal to :meth:`forward`
        on each subset's zero-filled inputs up to float rounding, when ``inputs`` are zero-filled for the
        modalities no subset has.
        """
        first = self.head[0]
        assert isinstance(first, nn.Linear)
        present, absent, start = [], [], 0
        for name, encoder in self.encoders.items():
            x, width = inputs[name], int(encoder.out_features)  # type: ignore[arg-type]
            weight = first.weight[:, start : start + width]  # W_m: [H, F_m]
            start += width
            present.append(encoder(x) @ weight.T)  # [B, H]
            absent.append(encoder(x.new_zeros(1, *x.shape[1:])) @ weight.T)  # [1, H]
        on, off = torch.stack(present, 1), torch.stack(absent, 1)  # [B, M, H], [1, M, H]
        hidden = off.sum(1) + first.bias + torch.einsum("sbm,bmh->sbh", subset_masks.to(on.dtype), on - off)
        return self._shape(self.head[1:](hidden))

    def _shape(self, logits: Tensor) -> Tensor:
        """``[..., M * K]`` head outputs as ``[..., M]`` or ``[..., M, K]``."""
        if self.num_channels is None:
            return logits
        return logits.reshape(*logits.shape[:-1], self.num_modalities, self.num_channels)


def build_gate_encoder(input_shape: tuple[int, ...], width: int = 8) -> nn.Module:
    """A gate encoder for one modality: strided CNN for ``[C, *spatial]`` (2-3 spatial dims), a per-frame linear
    map averaged over present frames for ``[T, D]`` sequences, else linear."""
    if len(input_shape) == 2:
        return SequenceGateEncoder(input_shape[1], 2 * width)
    if 3 <= len(input_shape) <= 4:
        return ConvGateEncoder(input_shape[0], width, spatial_dims=len(input_shape) - 1)
    in_features = 1
    for size in input_shape:
        in_features *= size
    return FlatGateEncoder(in_features, 2 * width)
