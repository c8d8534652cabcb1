"""Expert networks: each maps one modality to task logits."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from simmlm.nn.encoders import EncoderExpert
from simmlm.nn.sequence import SEQUENCE_KINDS, SequenceExpert


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) for one-channel square inputs (28x28 images, 20x20 MFCC maps).

    Two 5x5 convolutions (6 and 16 channels, "same" padding for the first) with ReLU and 2x2 max-pooling,
    then fully connected layers 120 -> 84 -> ``num_classes``. ``width`` scales the channel counts and
    ``dropout`` acts before the last two linear layers.
    """

    def __init__(
        self,
        num_classes: int,
        input_size: int = 28,
        in_channels: int = 1,
        width: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c1, c2 = 6 * width, 16 * width
        self.feature_channels = c2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = (input_size // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for LeNet-5 (need >= 12)")
        self.num_positions = side * side
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * side * side, 120),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class BNConvNet(nn.Module):
    """The small batch-normalised CNN of SMIL's avMNIST code (its audio network), for ``[C, S, S]`` maps.

    Three 2x2 convolutions without padding (32, 48, 20 channels), each followed by batch norm and ReLU, a 4x4
    max pool of stride 4, dropout, then fully connected layers 160 -> 32 -> ``num_classes`` with ReLU. On a
    20x20 MFCC map the pooled feature map is 20x4x4 = 320 values (SMIL's 320 -> 160 -> 32 -> 10).
    """

    def __init__(
        self,
        num_classes: int,
        input_size: int = 20,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 48, 20),
        hidden: Sequence[int] = (160, 32),
        pool: int = 4,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += [nn.Conv2d(previous, width, 2), nn.BatchNorm2d(width), nn.ReLU()]
            previous = width
        side = (input_size - len(channels)) // pool
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for bncnn with pool {pool}")
        self.features = nn.Sequential(*layers, nn.MaxPool2d(pool))
        self.feature_channels = previous
        self.num_positions = side * side
        self.classifier = nn.Sequential(nn.Dropout(dropout), _mlp(previous * side * side, hidden, num_classes, 0.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _mlp(in_features: int, hidden: Sequence[int], num_classes: int, dropout: float) -> nn.Sequential:
    """Flatten, then ``Linear -> ReLU -> Dropout`` per hidden width, then a linear output layer."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
        in_features = width
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


class MLPExpert(nn.Module):
    """A multilayer perceptron over flattened inputs (``hidden``: one width or one per hidden layer)."""

    def __init__(
        self, in_features: int, num_classes: int, hidden: int | Sequence[int] = 128, dropout: float = 0.0
    ) -> None:
        super().__init__()
        widths = [hidden] if isinstance(hidden, int) else list(hidden)
        self.net = _mlp(in_features, widths, num_classes, dropout)
        self.feature_size = widths[-1] if widths else in_features

    def forward(self, x: Tensor) -> Tensor:
        return self.net(torch.flatten(x, 1))

    def encode(self, x: Tensor) -> Tensor:
        """The last hidden layer's activations ``[B, feature_size]`` (what a gate over features reads)."""
        return self.net[:-1](torch.flatten(x, 1))

    def head(self, features: Tensor) -> Tensor:
        """The output layer: ``forward(x) == head(encode(x))``."""
        return self.net[-1](features)


def unet3d(
    in_channels: int,
    out_channels: int,
    channels: tuple[int, ...] = (16, 32, 64, 128),
    strides: tuple[int, ...] = (2, 2, 2),
    num_res_units: int = 1,
    norm: str = "instance",
    dropout: float = 0.0,
    spatial_dims: int = 3,
) -> nn.Module:
    """A MONAI U-Net mapping ``[B, C, D, H, W]`` to ``[B, T, D, H, W]`` logits (sides divisible by prod(strides));
    with ``spatial_dims=2`` (the ``unet2d`` expert) ``[B, C, H, W]`` images to ``[B, T, H, W]``."""
    from monai.networks.nets import UNet

    if len(strides) != len(channels) - 1:
        raise ValueError(f"a U-Net needs len(strides) == len(channels) - 1, got {list(strides)} and {list(channels)}")
    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=tuple(strides),
        num_res_units=num_res_units,
        norm=norm,
        dropout=dropout,
    )


EXPERT_KINDS = (
    "auto", "lenet", "bncnn", "mlp", "unet3d", "unet2d", *SEQUENCE_KINDS, "image_encoder", "text_encoder"
)  # fmt: skip
#: Arguments of the expert builders that come from the data or the kind, not from ``expert_options``.
_SET_FROM_THE_DATA = (
    "num_classes", "input_size", "in_channels", "in_features", "out_channels", "kind", "spatial_dims"
)  # fmt: skip


def resolve_expert_kind(kind: str, input_shape: tuple[int, ...]) -> str:
    """``"auto"`` -> ``"lenet"`` for square ``[C, S, S]`` inputs with ``S >= 12``, ``"gru"`` for ``[T, D]`` feature
    sequences (2-D inputs: only sequence datasets give them; the folder dataset reads 2-D arrays as images),
    ``"unet3d"`` for ``[C, D, H, W]`` volumes (only segmentation datasets give them), else ``"mlp"``; others
    unchanged."""
    if kind != "auto":
        return kind
    square = len(input_shape) == 3 and input_shape[1] == input_shape[2] and input_shape[1] >= 12
    return "lenet" if square else "gru" if len(input_shape) == 2 else "unet3d" if len(input_shape) == 4 else "mlp"


def explain_expert(name: str, kind: str, input_shape: tuple[int, ...]) -> tuple[str, str]:
    """The expert modality ``name`` gets (:func:`resolve_expert_kind`) and one line saying why, with a hint when an
    input read as a one-channel image looks like a series of many steps of a few channels (e.g. a ``[100, 3]``
    accelerometer array in a folder dataset): then a sequence expert is usually the better reader."""
    resolved = resolve_expert_kind(kind, input_shape)
    try:
        check_expert_input(resolved, input_shape)
    except ValueError as err:
        raise ValueError(f"modality {name!r}: {err}") from None
    shape = "×".join(map(str, input_shape))
    if kind != "auto":
        why = f"{resolved} (set by model.expert) for input {shape}"
    elif resolved == "lenet":
        why = f"lenet (auto: a square {shape} image, at least 12 px)"
    elif resolved == "gru":
        why = f"gru (auto: a [T, D] = {shape} feature sequence)"
    elif resolved == "unet3d":
        why = f"unet3d (auto: a [C, D, H, W] = {shape} volume)"
    else:
        why = (
            f"mlp (auto: input {shape} is neither a square image of at least 12 px nor a sequence, so it is flattened)"
        )
    if resolved in ("lenet", "bncnn", "mlp") and len(input_shape) == 3 and input_shape[0] == 1:
        steps, channels = input_shape[1], input_shape[2]
        if steps >= 16 and steps >= 4 * channels and channels <= 64:
            why += (
                f"; it looks like a series of {steps} steps of {channels} channels: `--set 'data.sequences=[{name}]'`"
                " reads it as a [T, D] sequence for a sequence expert (gru by default)"
            )
    return resolved, why


def build_expert(kind: str, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    """An expert by name: ``"lenet"`` or ``"bncnn"`` for ``[C, S, S]`` inputs, ``"mlp"`` for any shape (flattened),
    ``"unet3d"`` for ``[C, D, H, W]`` volumes (``num_classes`` output channels per voxel); ``"auto"`` picks lenet
    or mlp from the shape (:func:`resolve_expert_kind`). Unknown options are a ``ValueError`` naming the known ones."""
    kind = resolve_expert_kind(kind, input_shape)
    check_expert_input(kind, input_shape)
    check_expert_options(kind, options)
    if kind == "lenet":
        return LeNet5(num_classes, input_size=input_shape[1], in_channels=input_shape[0], **options)
    if kind == "bncnn":
        return BNConvNet(num_classes, input_size=input_shape[1], in_channels=input_shape[0], **options)
    if kind == "mlp":
        in_features = 1
        for size in input_shape:
            in_features *= size
        return MLPExpert(in_features, num_classes, **options)
    if kind in SEQUENCE_KINDS:
        return SequenceExpert(input_shape[1], num_classes, kind, **options)  # type: ignore[arg-type]
    if kind in ("image_encoder", "text_encoder"):  # raw images / token tensors: the encoder is fine-tuned
        return EncoderExpert(num_classes, "image" if kind == "image_encoder" else "text", **options)
    if kind == "unet2d":
        return unet3d(input_shape[0], num_classes, **options, spatial_dims=2)
    return unet3d(input_shape[0], num_classes, **options)


def check_expert_options(kind: str, options: dict[str, Any]) -> None:
    """A ``ValueError`` naming the known options when ``options`` has one expert ``kind`` (resolved) does not take."""
    builders: dict[str, Any] = {
        "lenet": LeNet5,
        "bncnn": BNConvNet,
        "mlp": MLPExpert,
        "unet3d": unet3d,
        "unet2d": unet3d,
    }
    builders.update(dict.fromkeys(SEQUENCE_KINDS, SequenceExpert))
    builders.update(dict.fromkeys(("image_encoder", "text_encoder"), EncoderExpert))
    own = [p for p in inspect.signature(builders[kind]).parameters if p not in (*_SET_FROM_THE_DATA, "modality")]
    unknown = sorted(set(options) - set(own))
    if unknown:
        raise ValueError(f"expert {kind!r} has no option {', '.join(map(repr, unknown))}; its options: {own}")


#: The input each shape-bound expert kind needs: (in words, test on the per-sample shape).
_NEEDS: dict[str, tuple[str, Any]] = {
    "lenet": ("a [C, S, S] input", lambda s: len(s) == 3 and s[1] == s[2]),
    "bncnn": ("a [C, S, S] input", lambda s: len(s) == 3 and s[1] == s[2]),
    "unet3d": ("a [C, D, H, W] input", lambda s: len(s) == 4),
    "unet2d": ("a [C, H, W] image", lambda s: len(s) == 3),
    **dict.fromkeys(SEQUENCE_KINDS, ("a [T, D] feature sequence", lambda s: len(s) == 2)),
}


def check_expert_input(kind: str, input_shape: tuple[int, ...]) -> None:
    """A ``ValueError`` when expert ``kind`` (resolved) is unknown or cannot read inputs of ``input_shape``; called
    before anything trains (by :func:`explain_expert`) and again when the expert is built."""
    if kind not in EXPERT_KINDS or kind == "auto":
        raise ValueError(f"unknown expert kind {kind!r}; choose one of {', '.join(map(repr, EXPERT_KINDS))}")
    needs, fits = _NEEDS.get(kind, ("", lambda s: True))
    if not fits(tuple(input_shape)):
        raise ValueError(f"expert {kind!r} needs {needs}, got {list(input_shape)}")


def expert_kinds(input_shapes: dict[str, tuple[int, ...]], expert: str | dict[str, str]) -> dict[str, str]:
    """The expert kind of every modality (``expert``: one kind for all, or one per modality)."""
    kinds = expert if isinstance(expert, dict) else dict.fromkeys(input_shapes, expert)
    unknown = sorted(set(kinds) - set(input_shapes))
    if unknown:
        raise ValueError(
            f"model.expert names modalities the data does not have: {unknown}; it has {list(input_shapes)}"
        )
    missing = [name for name in input_shapes if name not in kinds]
    if missing:
        raise ValueError(f"no expert kind given for modalities {missing}")
    return kinds


def expert_options_for(name: str, modalities: Sequence[str], expert_options: dict[str, Any] | None) -> dict[str, Any]:
    """The options of modality ``name``'s expert: ``expert_options`` is either one set of options for every
    expert, or (when every key is a modality name) one set per modality, e.g. ``{image: {width: 2}, audio: {}}``."""
    options = expert_options or {}
    if options and set(options) <= set(modalities):
        own = options.get(name, {})
        if not isinstance(own, dict):
            raise ValueError(f"expert_options[{name!r}] must be a mapping of options, got {own!r}")
        return dict(own)
    return dict(options)


def build_experts(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str],
    expert_options: dict[str, Any] | None,
) -> dict[str, nn.Module]:
    """One expert per modality: ``expert`` is one kind for all or one per modality, options as in
    :func:`expert_options_for`."""
    kinds = expert_kinds(input_shapes, expert)
    return {
        name: build_expert(
            kinds[name], tuple(shape), num_classes, **expert_options_for(name, list(input_shapes), expert_options)
        )
        for name, shape in input_shapes.items()
    }
