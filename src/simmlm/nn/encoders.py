"""Encoders that turn raw images and texts into feature vectors: what image-text experts stand on.

SimMLM's UPMC Food-101 experts are an Inception V3 over the image and a BERT over the title, each followed by a
classifier, with the gate reading their intermediate features. Here:

- :class:`ImageEncoder`: a small CNN (``"cnn"``) or MONAI's 2-D ResNet-18 (``"resnet18"``), globally pooled to
  ``[B, F]``; inputs ``[B, 3, S, S]`` in ``[0, 1]`` (or uint8), normalised with the ImageNet statistics. Pretrained
  weights come from a local state-dict file (``weights``); without one the weights are a seeded random draw.
- :class:`HashedNgramEncoder`: a tokenizer-free text encoder that needs no weights: word uni- and bigrams and
  character trigrams, hashed (CRC-32, stable across runs, unlike Python's ``hash``) into ``buckets`` rows of an
  ``nn.EmbeddingBag`` averaged per title (fastText-style).
- :class:`HFTextEncoder`: a HuggingFace encoder (BERT in the paper) and its tokenizer, loaded from a local folder
  only (never downloaded); the optional extra ``simmlm[text]`` installs ``transformers``.

A text encoder tokenises once (``tokenize(list[str]) -> LongTensor``, in the data layer) and encodes token
tensors (``forward``), so a missing title is never tokenised: it is an absent modality in the mask.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from simmlm.nn.specs import ImageEncoderSpec, TextEncoderSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _seeded(seed: int, build: Any) -> nn.Module:
    """``build()`` with its random initialisation drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _small_cnn(width: int) -> nn.Sequential:
    """Three 3x3 conv blocks (``width``, 2x, 4x channels) with ReLU and 2x2 pooling, then a global average."""
    layers: list[nn.Module] = []
    channels = 3
    for k, out in enumerate((width, 2 * width, 4 * width)):
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
        layers.append(nn.MaxPool2d(2) if k < 2 else nn.AdaptiveAvgPool2d(1))
        channels = out
    return nn.Sequential(*layers, nn.Flatten())


class ImageEncoder(nn.Module):
    """``[B, 3, S, S]`` images (float in ``[0, 1]`` or uint8) -> ``[B, out_features]`` pooled features."""

    mean: Tensor
    std: Tensor

    def __init__(self, spec: ImageEncoderSpec | None = None) -> None:
        super().__init__()
        spec = spec or ImageEncoderSpec()
        if spec.kind == "cnn":
            self.backbone: nn.Module = _seeded(spec.seed, lambda: _small_cnn(spec.width))
            self.out_features = 4 * spec.width
        else:
            from monai.networks.nets import resnet18

            self.backbone = _seeded(spec.seed, lambda: resnet18(spatial_dims=2, n_input_channels=3, feed_forward=False))
            self.out_features = 512
        if spec.weights is not None:
            load_weights(self.backbone, spec.weights)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return self.backbone((x - self.mean) / self.std)


def load_weights(module: nn.Module, path: Path) -> None:
    """Load a state dict (or ``{"state_dict": ...}``) from ``path`` into ``module``, with errors naming the file; a
    classifier head ``fc.*`` that the backbone lacks (an ImageNet checkpoint's) is left out."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and format errors alike: the file is not a state dict
        raise ValueError(f"{path}: not a PyTorch state-dict file ({err})") from err
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = module.state_dict()
    if isinstance(state, dict) and not any(k.startswith("fc.") for k in own):  # an ImageNet classifier's head
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{path}: weights do not fit the {type(module).__name__} backbone: {err}") from err


_WORD = re.compile(r"\w+")


def ngrams(text: str) -> list[str]:
    """Word unigrams, word bigrams and character trigrams (of ``<word>``), lower-cased, in reading order."""
    words = _WORD.findall(text.lower())
    grams = list(words) + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    for word in words:
        padded = f"<{word}>"
        grams += [f"#{padded[i : i + 3]}" for i in range(len(padded) - 2)]
    return grams


class HashedNgramEncoder(nn.Module):
    """Tokenizer-free text encoder: the mean of hashed n-gram embeddings (``nn.EmbeddingBag``; id 0 is padding).

    ``tokenize`` maps each title to ``max_tokens`` ids in ``1..buckets`` (0-padded); an all-padding row encodes to
    zeros.
    """

    def __init__(self, spec: TextEncoderSpec | None = None) -> None:
        super().__init__()
        spec = spec or TextEncoderSpec()
        self.buckets, self.max_tokens, self.out_features = spec.buckets, spec.max_tokens, spec.dim
        self.bag = _seeded(spec.seed, lambda: nn.EmbeddingBag(spec.buckets + 1, spec.dim, mode="mean", padding_idx=0))

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        ids = torch.zeros(len(texts), self.max_tokens, dtype=torch.long)
        for row, text in enumerate(texts):
            hashed = [zlib.crc32(g.encode()) % self.buckets + 1 for g in ngrams(text)[: self.max_tokens]]
            ids[row, : len(hashed)] = torch.tensor(hashed, dtype=torch.long)
        return ids

    def forward(self, tokens: Tensor) -> Tensor:
        return self.bag(tokens)


class HFTextEncoder(nn.Module):
    """A HuggingFace encoder and tokenizer from a local folder; tokens are ``[N, 2, L]`` (ids, attention mask)."""

    def __init__(self, spec: TextEncoderSpec) -> None:
        super().__init__()
        if spec.path is None or not Path(spec.path).is_dir():
            raise FileNotFoundError(f"text encoder 'huggingface' needs path: a local model folder, got {spec.path}")
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise ImportError("the huggingface text encoder needs transformers: pip install 'simmlm[text]'") from err
        self.tokenizer = AutoTokenizer.from_pretrained(str(spec.path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(spec.path), local_files_only=True)
        self.max_tokens, self.pooling = spec.max_tokens, spec.pooling
        self.out_features = int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        enc = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1)

    def forward(self, tokens: Tensor) -> Tensor:
        ids, attention = tokens[:, 0], tokens[:, 1]
        hidden = self.model(input_ids=ids, attention_mask=attention).last_hidden_state  # [B, L, H]
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = attention.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def build_text_encoder(spec: TextEncoderSpec) -> HashedNgramEncoder | HFTextEncoder:
    return HashedNgramEncoder(spec) if spec.kind == "hashed" else HFTextEncoder(spec)


def file_digest(paths: Sequence[Path]) -> str:
    """SHA-256 over the names and contents of ``paths`` (weights files, a model folder's files)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def encoder_identity(spec: ImageEncoderSpec | TextEncoderSpec) -> dict[str, Any]:
    """What determines an encoder's outputs: its spec, and the digest of its weights (file or model folder)."""
    identity: dict[str, Any] = spec.model_dump(mode="json")
    weights = getattr(spec, "weights", None) or getattr(spec, "path", None)
    if weights is not None and (spec.kind != "hashed"):
        root = Path(weights)
        files = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else [root]
        identity["digest"] = file_digest(files) if root.exists() else "missing"
    return identity


class EncoderExpert(nn.Module):
    """An expert standing on an encoder (fine-tuned with it): ``head(encode(x))``, an MLP head over the encoder's
    features; ``encode`` is what a gate over features reads (SimMLM's image-text experts: Inception V3 / BERT).

    Args:
        num_classes: outputs of the head.
        modality: ``"image"`` (an :class:`ImageEncoder`) or ``"text"`` (a text encoder over token tensors).
        encoder: the encoder's spec (:class:`ImageEncoderSpec` / :class:`TextEncoderSpec` fields).
        hidden: width of the head's hidden layer (0: a linear head).
        dropout: dropout on the features.
    """

    def __init__(
        self,
        num_classes: int,
        modality: Literal["image", "text"],
        encoder: dict[str, Any] | None = None,
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if modality == "image":
            self.encoder: nn.Module = ImageEncoder(ImageEncoderSpec.model_validate(encoder or {}))
        else:
            self.encoder = build_text_encoder(TextEncoderSpec.model_validate(encoder or {}))
        width = int(getattr(self.encoder, "out_features"))  # noqa: B009 (an int attribute of a Module)
        self.feature_size = width
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
        self.classifier = nn.Sequential(*layers, nn.Linear(hidden or width, num_classes))

    @property
    def features(self) -> nn.Module:
        """The encoder, under the name DREAM's warm start looks for (a token encoder's feature extractor)."""
        return self.encoder

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def head(self, features: Tensor) -> Tensor:
        return self.classifier(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encode(x))
