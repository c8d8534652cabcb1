"""Gating networks of DMoME: zero-filled inputs of every modality -> one gate logit per modality (x channel)."""

from __future__ import annotations

import math

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
        base, change = self.first_layer_terms(inputs)
        return self._shape(self.head[1:](base + torch.einsum("sbm,bmh->sbh", subset_masks.to(change.dtype), change)))

    def first_layer_terms(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The head's first layer split by modality (see :meth:`subset_logits`): its output with every modality
        absent, ``b + sum_m W_m enc(0)`` (``[1, H]``), and what each present modality changes,
        ``W_m enc(x_m) - W_m enc(0)`` (``[B, M, H]``). A subset's output is the first plus its modalities' changes."""
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
        return off.sum(1) + first.bias, on - off

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


#: The per-expert reliability signals :func:`reliability_signals` computes, in order.
RELIABILITY_SIGNALS = ("normalised entropy", "max probability", "energy", "agreement")


def reliability_signals(expert_logits: Tensor, available: Tensor) -> Tensor:
    """How trustworthy each expert's output looks, ``[B, M, 4]``, from the outputs alone (no label, detached).

    Per expert ``m`` with class probabilities ``p^m = softmax(o^m)`` over ``T`` classes: the normalised predictive
    entropy ``H(p^m) / log T`` and the maximum probability (Hendrycks & Gimpel 2017; QMF, Zhang et al. 2023, weighs
    modalities by such uncertainty), the free energy ``-logsumexp(o^m) / log T`` (Liu et al. 2020: lower on
    in-distribution inputs), and the agreement ``1 - JS(p^m, p̄)`` with the mean ``p̄`` of the other available
    experts (Jensen-Shannon divergence in units of ``log 2``; 1 when the sample has no other expert). A corrupted
    modality tends to give a flat or an odd, disagreeing output: these are the gate's evidence that it has become
    unreliable. Missing modalities get zeros (their gate logit is ``-inf`` anyway). With one output (a regression's
    score) only the energy varies, and it is the score itself: the signals are built for class outputs.

    Args:
        expert_logits: ``[B, M, T]`` class logits of every expert.
        available: ``[B, M]`` which modalities each sample has.
    """
    logits = expert_logits.detach().float()
    num_classes = logits.shape[-1]
    log_t = math.log(max(num_classes, 2))
    log_p = logits.log_softmax(-1)
    p = log_p.exp()
    entropy = -(p * log_p).sum(-1) / log_t
    energy = -logits.logsumexp(-1) / log_t
    have = available.to(p.dtype).unsqueeze(-1)  # [B, M, 1]
    others = (p * have).sum(1, keepdim=True) - p * have  # [B, M, T]: the sum over the other available experts
    count = have.sum(1, keepdim=True) - have
    mean_others = others / count.clamp_min(1)
    mid = 0.5 * (p + mean_others)
    js = 0.5 * (_kl(p, mid) + _kl(mean_others, mid)) / math.log(2)
    agreement = torch.where(count.squeeze(-1) > 0, 1 - js, torch.ones_like(js))
    signals = torch.stack([entropy, p.amax(-1), energy, agreement], -1)
    return signals * have


def _kl(p: Tensor, q: Tensor) -> Tensor:
    """``KL(p || q)`` over the last axis, with ``0 log 0 = 0``."""
    return torch.where(p > 0, p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log()), p.new_zeros(())).sum(-1)


class ReliabilityHead(nn.Module):
    """A per-modality linear map of the reliability signals to an additive gate logit, ``r^m = a_m · s^m + c_m``.

    It starts at zero (the gate is then exactly the base gate) and learns, in stage 2, how much each modality's
    evidence of unreliability should lower its weight. Added to every subset's logits alike: the signals depend on
    the expert, not on the subset.
    """

    def __init__(self, num_modalities: int, num_signals: int = len(RELIABILITY_SIGNALS)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_modalities, num_signals))
        self.bias = nn.Parameter(torch.zeros(num_modalities))

    def forward(self, signals: Tensor) -> Tensor:
        """``[B, M, R]`` signals -> ``[B, M]`` logit offsets."""
        return (signals * self.weight).sum(-1) + self.bias
