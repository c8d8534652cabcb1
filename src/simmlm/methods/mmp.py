"""Masked Modality Projection (MMP, Nezakati et al.): project the tokens of missing modalities from available ones.

Per modality, an encoder turns the input into tokens ``X_m`` ``[B, T_m, D]`` (for avMNIST: the convolutional
feature map of a LeNet-5 expert, one token per position, linearly mapped to a common ``D``, Sec. 3.3).

- Eq. 2: every modality has ``A = 8`` learnable aggregated tokens ``Z_m``; when ``m`` is available they are updated
  by multi-head cross-attention to its real tokens, ``Z_m <- Z_m + MHA(Z_m, X_m, X_m)``; otherwise left unchanged.
- Eqs. 3-6: for a missing modality ``j`` and every available ``i``: ``H_ji = MHA(Z_j, Z_i, Z_i)`` (relation),
  ``R_ji = MHA(H_ji, X_i, X_i)`` (refinement with ``i``'s real tokens); the ``R_ji`` of the available ``i`` are
  concatenated (those of unavailable ``i`` are zeroed by the mask, so the layout is fixed) and an MLP, with a
  linear layer over the token axis to reach ``T_j`` tokens (Sec. 3.3), gives the projected tokens ``P_j``.
- Eqs. 7-8: ``L = L_task + alpha * (1/K) sum_j SmoothL1(P_j, X_j)`` over the ``K`` modalities masked during training
  (available in the data but left out of the training subset). The real tokens are a stop-gradient target here
  (our choice: the paper is silent; without it the encoders can shrink their tokens to lower the loss).

The task head concatenates every modality's tokens (real, or projected when missing) and applies an MLP to the
flattened sequence (mean-pooling would discard the positions LeNet's classifier relies on). For 2-D segmentation
and BraTS volumes (``unet2d`` / ``unet3d`` experts: :class:`ImageTokenEncoder`, a token per position of a 1/4 grid)
the head is a decoder instead (:class:`DenseHead`): the tokens back on their grid, convolutions to logits, upsampled
to the input's size. The masking
distribution during training is the engine's: a random nested pair of subsets per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simmlm.methods.base import ModelOutput, on_present_rows, validate_inputs, validate_subsets, zero_fill
from simmlm.methods.registry import register_method
from simmlm.nn.encoders import EncoderExpert
from simmlm.nn.experts import BNConvNet, LeNet5, build_expert, expert_kinds, expert_options_for, resolve_expert_kind
from simmlm.nn.sequence import SEQUENCE_KINDS, FrameTokenEncoder


class ConvTokenEncoder(nn.Module):
    """A convolutional feature extractor ``[B, C_in, H, W] -> [B, C, h, w]`` read as ``h*w`` tokens of size ``D``."""

    def __init__(self, features: nn.Module, channels: int, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.features = features
        self.proj = nn.Linear(channels, dim)
        self.position = nn.Parameter(torch.zeros(num_tokens, dim))
        self.num_tokens = num_tokens

    def forward(self, x: Tensor) -> Tensor:
        fmap = self.features(x)
        return self.proj(fmap.flatten(2).transpose(1, 2)) + self.position


class ImageTokenEncoder(ConvTokenEncoder):
    """Tokens of an image or a volume for dense prediction (MMP for segmentation): a strided CNN down to
    ``1/downsample`` of each side, one token per position of that grid (``grid``), the input's size kept for the
    decoder (``size``); 2-D (``[C, H, W]``) or 3-D (``[C, D, H, W]``: BraTS crops)."""

    def __init__(self, in_channels: int, size: tuple[int, ...], dim: int, width: int = 32, downsample: int = 4):
        levels = int(math.log2(downsample))
        if 2**levels != downsample or levels < 1 or any(side % downsample for side in size):
            raise ValueError(
                f"downsample must be a power of 2 dividing the input's sides {list(size)}, got {downsample}"
            )
        conv = nn.Conv2d if len(size) == 2 else nn.Conv3d
        layers: list[nn.Module] = []
        for k in range(levels):
            layers += [conv(in_channels if k == 0 else width, width, 3, stride=2, padding=1), nn.GELU()]
        self.grid, self.size = tuple(side // downsample for side in size), tuple(size)
        super().__init__(nn.Sequential(*layers), width, math.prod(self.grid), dim)


class DenseHead(nn.Module):
    """MMP's segmentation decoder: every modality's tokens (real or projected) back on their grid, concatenated over
    modalities, a 3x3(x3) and a 1x1(x1) convolution to class logits, upsampled (bi- or trilinear) to the input's
    size."""

    def __init__(self, encoders: dict[str, ImageTokenEncoder], dim: int, num_classes: int) -> None:
        super().__init__()
        sizes = {e.size for e in encoders.values()}
        if len(sizes) != 1:
            raise ValueError(f"MMP segments aligned inputs: every modality needs one size, got {sorted(sizes)}")
        first = next(iter(encoders.values()))
        self.grid, self.size, self.dim = first.grid, first.size, dim
        conv = nn.Conv2d if len(self.size) == 2 else nn.Conv3d
        self.decode = nn.Sequential(
            conv(len(encoders) * dim, 2 * dim, 3, padding=1), nn.GELU(), conv(2 * dim, num_classes, 1)
        )

    def forward(self, tokens: Tensor) -> Tensor:
        b = len(tokens)
        maps = tokens.reshape(b, -1, math.prod(self.grid), self.dim)  # [B, M, grid, D]
        maps = maps.permute(0, 1, 3, 2).reshape(b, -1, *self.grid)  # [B, M*D, *grid]
        mode = "bilinear" if len(self.size) == 2 else "trilinear"
        return F.interpolate(self.decode(maps), size=self.size, mode=mode, align_corners=False)


class FlatTokenEncoder(nn.Module):
    """A feature vector (any shape, flattened) -> ``num_tokens`` tokens of size ``dim`` via one linear layer."""

    def __init__(self, in_features: int, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_tokens * dim), nn.GELU())
        self.num_tokens, self.dim = num_tokens, dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).reshape(len(x), self.num_tokens, self.dim)


class EncoderTokenEncoder(FlatTokenEncoder):
    """Tokens standing on a fine-tuned encoder (Food-101's image or text encoder, :class:`EncoderExpert`'s): its
    feature vector mapped to ``num_tokens`` tokens by one linear layer; the encoder trains with the method."""

    def __init__(self, encoder: nn.Module, num_tokens: int, dim: int) -> None:
        super().__init__(int(getattr(encoder, "out_features")), num_tokens, dim)  # noqa: B009 (a Module's int)
        self.features = encoder  # named as the convolutional encoders' extractor, so DREAM can warm-start it

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.features(x))


def build_token_encoder(kind: str, input_shape: tuple[int, ...], dim: int, **options: Any) -> nn.Module:
    """Token encoder for one modality: ``"lenet"`` / ``"bncnn"`` use the expert's convolutional feature map (one
    token per position), ``"mlp"`` a linear map, the sequence kinds one token per frame, ``"image_encoder"`` /
    ``"text_encoder"`` four tokens from the fine-tuned encoder's features (``"auto"`` picks one by shape, as for
    experts). Options that only shape an expert's classifier (``hidden``) do not apply here."""
    if kind in ("image_encoder", "text_encoder"):
        modality: Literal["image", "text"] = "image" if kind == "image_encoder" else "text"
        return EncoderTokenEncoder(EncoderExpert(1, modality, options.get("encoder")).encoder, num_tokens=4, dim=dim)
    kind = resolve_expert_kind(kind, input_shape)
    if kind in ("unet2d", "unet3d"):  # dense prediction: a token per position of a downsampled grid
        width = int(options.get("channels", [32])[0])
        return ImageTokenEncoder(input_shape[0], tuple(input_shape[1:]), dim, width)
    if kind in ("lenet", "bncnn"):
        options.pop("hidden", None)
        expert = build_expert(kind, input_shape, num_classes=1, **options)
        assert isinstance(expert, LeNet5 | BNConvNet)
        return ConvTokenEncoder(expert.features, expert.feature_channels, expert.num_positions, dim)
    if kind == "mlp":
        return FlatTokenEncoder(math.prod(input_shape), num_tokens=4, dim=dim)
    if kind in SEQUENCE_KINDS and len(input_shape) == 2:  # tokens = frames
        return FrameTokenEncoder(input_shape[1], num_tokens=input_shape[0], dim=dim)
    raise ValueError(
        f"no token encoder for expert kind {kind!r} on {list(input_shape)}; choose 'auto', 'lenet', 'bncnn', 'mlp', "
        f"image_encoder, text_encoder, or {', '.join(SEQUENCE_KINDS)} for [T, D] sequences"
    )


class MMP(nn.Module):
    """Masked Modality Projection over per-modality token encoders (see the module docstring for the equations).

    Args:
        encoders: modality name -> encoder returning ``[B, T_m, dim]`` with a ``num_tokens`` attribute.
        num_classes: output classes.
        dim: common token dimension ``D``.
        num_aggregated: aggregated tokens per modality (8 in the paper).
        heads: attention heads.
        alignment_weight: ``alpha`` of eq. 8.
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        num_classes: int,
        dim: int = 32,
        num_aggregated: int = 8,
        heads: int = 4,
        alignment_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if len(encoders) < 2:
            raise ValueError("MMP needs at least two modalities")
        self.encoders = nn.ModuleDict(encoders)
        names = list(encoders)
        others = len(names) - 1
        self.aggregated = nn.ParameterDict({m: nn.Parameter(torch.randn(num_aggregated, dim) * 0.02) for m in names})
        self.update = nn.ModuleDict({m: nn.MultiheadAttention(dim, heads, batch_first=True) for m in names})
        self.relate = nn.ModuleDict({m: nn.MultiheadAttention(dim, heads, batch_first=True) for m in names})
        self.refine = nn.ModuleDict({m: nn.MultiheadAttention(dim, heads, batch_first=True) for m in names})
        self.token_map = nn.ModuleDict(
            {m: nn.Linear(others * num_aggregated, int(e.num_tokens)) for m, e in encoders.items()}  # type: ignore[arg-type]
        )
        self.project = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)) for m in names}
        )
        total_tokens = sum(int(e.num_tokens) for e in encoders.values())  # type: ignore[misc, arg-type]
        self.dense = all(isinstance(e, ImageTokenEncoder) for e in encoders.values())  # segmentation
        self.head: nn.Module = (
            DenseHead(encoders, dim, num_classes)  # type: ignore[arg-type]
            if self.dense
            else nn.Sequential(
                nn.Flatten(), nn.Linear(total_tokens * dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, num_classes)
            )
        )
        self.alignment_weight = alignment_weight

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def tokens(self, inputs: dict[str, Tensor], available: Tensor, validate_args: bool = True) -> dict[str, Tensor]:
        """Real tokens ``X_m`` of every modality, computed on the zero-filled inputs (eq. 1)."""
        if validate_args:
            validate_inputs(inputs, available, self.modalities)
        filled = zero_fill(inputs, available, self.modalities)
        return {  # the rows of absent modalities are never read (projected tokens stand for them)
            name: on_present_rows(encoder, encoder, filled[name], available[:, m])
            for m, (name, encoder) in enumerate(self.encoders.items())
        }

    def _aggregated(self, tokens: dict[str, Tensor], subset: Tensor) -> dict[str, Tensor]:
        """Eq. 2: aggregated tokens, updated from real tokens for the samples where the modality is present."""
        out = {}
        for m, name in enumerate(self.modalities):
            base = self.aggregated[name].unsqueeze(0).expand(len(subset), -1, -1)
            updated = base + self.update[name](base, tokens[name], tokens[name], need_weights=False)[0]
            out[name] = torch.where(subset[:, m, None, None], updated, base)
        return out

    def _projected(self, name: str, tokens: dict[str, Tensor], aggregated: dict[str, Tensor], subset: Tensor) -> Tensor:
        """Eqs. 3-6: projected tokens ``P_j`` of modality ``name`` from the modalities present in ``subset``."""
        j = self.modalities.index(name)
        query = self.aggregated[name].unsqueeze(0).expand(len(subset), -1, -1)
        refined = []
        for i, other in enumerate(self.modalities):
            if i == j:
                continue
            relation = self.relate[name](query, aggregated[other], aggregated[other], need_weights=False)[0]
            ref = self.refine[name](relation, tokens[other], tokens[other], need_weights=False)[0]
            refined.append(torch.where(subset[:, i, None, None], ref, ref.new_zeros(())))
        stacked = torch.cat(refined, dim=1)  # [B, (M-1)*A, D]
        mapped = self.token_map[name](stacked.transpose(1, 2)).transpose(1, 2)  # [B, T_j, D]
        return self.project[name](mapped)

    def _outputs(self, tokens: dict[str, Tensor], available: Tensor, subset: Tensor) -> ModelOutput:
        aggregated = self._aggregated(tokens, subset)
        pooled, align_sum, align_count = [], tokens[self.modalities[0]].new_zeros(()), 0
        for m, name in enumerate(self.modalities):
            present = subset[:, m]
            if bool(present.all()):
                final = tokens[name]
            else:
                projected = self._projected(name, tokens, aggregated, subset)
                final = torch.where(present[:, None, None], tokens[name], projected)
                masked = available[:, m] & ~present  # masked during training: real tokens exist
                if bool(masked.any()):
                    loss = F.smooth_l1_loss(projected[masked], tokens[name][masked].detach(), reduction="none")
                    align_sum = align_sum + loss.mean(dim=(1, 2)).sum()
                    align_count += int(masked.sum())
            pooled.append(final)
        logits = self.head(torch.cat(pooled, dim=1))
        aux = {"alignment": self.alignment_weight * align_sum / align_count} if align_count else {}
        return ModelOutput(logits=logits, gate_weights=None, aux_losses=aux)

    def forward_subsets(
        self,
        inputs: dict[str, Tensor],
        available: Tensor,
        subset_masks: Sequence[Tensor],
        targets: Tensor | None = None,
        sample_index: Tensor | None = None,
        validate_args: bool = True,
    ) -> list[ModelOutput]:
        """Outputs for several subsets of ``available``; tokens are encoded once.

        ``targets`` and ``sample_index`` (training context of the protocol) are unused here.
        """
        if validate_args:
            validate_subsets(inputs, available, subset_masks, self.modalities)
        tokens = self.tokens(inputs, available, validate_args=False)
        return [self._outputs(tokens, available, subset & available) for subset in subset_masks]

    def forward(self, inputs: dict[str, Tensor], mask: Tensor) -> ModelOutput:
        return self.forward_subsets(inputs, mask, [mask])[0]


def token_encoders(
    input_shapes: dict[str, tuple[int, ...]],
    expert: str | dict[str, str],
    expert_options: dict[str, Any] | None,
    dim: int,
) -> dict[str, nn.Module]:
    """Token encoders built from the expert kinds (the experts' dropout applies to their classifiers only)."""
    kinds = expert_kinds(input_shapes, expert)
    encoders = {}
    for name, shape in input_shapes.items():
        options = expert_options_for(name, list(input_shapes), expert_options)
        options.pop("dropout", None)
        encoders[name] = build_token_encoder(kinds[name], tuple(shape), dim, **options)
    return encoders


def build_mmp(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str] = "lenet",
    expert_options: dict[str, Any] | None = None,
    dim: int = 32,
    num_aggregated: int = 8,
    heads: int = 4,
    alignment_weight: float = 1.0,
) -> MMP:
    """MMP whose token encoders are the experts' feature extractors."""
    encoders = token_encoders(input_shapes, expert, expert_options, dim)
    return MMP(encoders, num_classes, dim, num_aggregated, heads, alignment_weight)


register_method(
    "mmp",
    build_mmp,
    "masked modality projection: tokens of missing modalities projected from available ones (lambda 0)",
    cost="about 2x simmlm's training time with 2 modalities (avMNIST), about 45x with 6 (mvmnist: ~5 min a seed "
    "against 7 s on 2 CPU cores)",
    train_defaults={"mofe_lambda": 0.0},
    protocol="mmp (no per-modality experts) trains in one stage for the same total number of epochs",
    smoke_options={"dim": 8, "heads": 2},
)
