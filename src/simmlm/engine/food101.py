"""UPMC Food-101 as a task: frozen encoders, their embedding cache, the missing-rate protocol, predict's reader.

The SimMLM paper's image-text benchmark: experts stand on an image encoder and a text encoder
(:mod:`simmlm.nn.encoders`). In the frozen-encoder mode built here every image and title is encoded once; the
embeddings are cached under ``$SIMMLM_CACHE_DIR/food101/`` (default ``~/.cache/simmlm``), keyed by the encoders
(their settings and the digest of their weights) and the data (each CSV's contents, each image's path, size and
modification time), and DMoME / MoFe and the peers train on them (MLP experts, fast on CPU). A title that is absent
(an image without a CSV row, or an empty title) is never tokenised or encoded: the modality is absent in the mask.

The missing-rate protocol of MAP / MMP (``data.missing``: η % of the texts, the images or both, drawn with a seed)
applies on top of what the data lacks, at training (training and validation samples), at test, or both. A sample
the protocol would leave with nothing keeps what the data gave it; the splits' description counts them.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from simmlm.data.base import Splits, TensorMultimodalDataset
from simmlm.data.food101 import (
    Food101Item,
    MissingKind,
    Split,
    load_image,
    missing_pattern,
    read_food101,
    stratified_split,
)
from simmlm.fileio import cache_dir, torch_save_atomic
from simmlm.nn.encoders import (
    ImageEncoder,
    ImageEncoderSpec,
    TextEncoderSpec,
    build_text_encoder,
    encoder_identity,
)

MODALITIES = ("image", "text")
CACHE_VERSION = 1  # bump when the encoding itself changes


class MissingProtocol(BaseModel):
    """The literature's missing-modality protocol: ``rate`` of the samples lose their ``kind`` modality."""

    model_config = ConfigDict(extra="forbid")
    rate: float = Field(0.0, ge=0, le=1, description="share of samples that lose a modality (eta)")
    kind: MissingKind = Field("text", description="text, image, or both (half of the affected lose each)")
    at: Literal["train", "test", "both"] = Field("both", description="train (with validation), test, or both")
    seed: int = Field(0, description="seed of the draw")


class Food101Data(BaseModel):
    """UPMC Food-101 (``simmlm.engine.food101``): images and titles, frozen encoders, the missing-rate protocol."""

    model_config = ConfigDict(extra="forbid")
    dataset: Literal["food101"] = "food101"
    data_dir: Path | None = Field(None, description="default: $SIMMLM_DATA_DIR, then ../shared/data")
    image_size: int = Field(224, ge=8, description="images are resized (shorter side) and centre-cropped to this")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of each training class kept for validation")
    split_seed: int = Field(0, description="seed of the validation split and of max_per_class")
    max_per_class: int | None = Field(None, ge=2, description="use at most this many samples per class and split")
    allow_missing_images: bool = Field(False, description="keep CSV rows whose image file is absent (text only)")
    image_encoder: ImageEncoderSpec = ImageEncoderSpec()
    text_encoder: TextEncoderSpec = TextEncoderSpec()
    missing: MissingProtocol = MissingProtocol()
    encode_batch: int = Field(64, ge=1, description="images / titles per encoder call while caching")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _subsample(items: list[Food101Item], limit: int | None, seed: int) -> list[Food101Item]:
    """At most ``limit`` items per class (a seeded choice, kept in file order)."""
    if limit is None:
        return items
    generator = torch.Generator().manual_seed(seed)
    keep: list[int] = []
    for name in sorted({item.class_name for item in items}):
        members = [i for i, item in enumerate(items) if item.class_name == name]
        keep += [members[int(j)] for j in torch.randperm(len(members), generator=generator)[:limit]]
    return [items[i] for i in sorted(keep)]


def data_fingerprint(root: Path, split: str, items: list[Food101Item]) -> str:
    """SHA-256 over the split's CSV and each item's image path, size and modification time, and title."""
    digest = hashlib.sha256((root / "texts" / f"{split}_titles.csv").read_bytes())
    for item in items:
        stat = item.image.stat() if item.image is not None else None
        where = "-" if item.image is None else str(item.image.relative_to(root))
        digest.update(f"{where}|{stat and (stat.st_size, stat.st_mtime_ns)}|{item.title}|{item.class_name}".encode())
    return digest.hexdigest()


@torch.no_grad()
def _encode(rows: list[int], batch: int, encode: Any, what: str, label: str) -> tuple[list[int], list[Tensor]]:
    """Run ``encode(chunk)`` over ``rows`` in chunks, with a progress line about every 10 s."""
    out: list[Tensor] = []
    start = last = time.monotonic()
    for k in range(0, len(rows), batch):
        out.append(encode(rows[k : k + batch]))
        if time.monotonic() - last > 10:
            last = time.monotonic()
            _say(f"{label}: encoded {k + batch}/{len(rows)} {what} ({last - start:.0f} s)")
    return rows, out


def embed_split(root: Path, split: Split, data: Food101Data) -> dict[str, Any]:
    """The split's items encoded once: ``image`` / ``text`` features ``[N, F]`` (zero where absent), ``present``
    ``[N, 2]`` and ``classes`` (each item's class name), loaded from the cache when the encoders and data match."""
    items = _subsample(read_food101(root, split, data.allow_missing_images), data.max_per_class, data.split_seed)
    identity = {
        "version": CACHE_VERSION,
        "image_size": data.image_size,
        "image": encoder_identity(data.image_encoder),
        "text": encoder_identity(data.text_encoder),
        "data": data_fingerprint(root, split, items),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / "food101" / f"{split}-{key[:20]}.pt"
    if path.is_file():
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    label = f"food101 {split}"
    _say(f"{label}: encoding {len(items)} samples once (cached in {path})")
    image_encoder = encoders(data.image_encoder.model_dump_json(), "image")
    text_encoder = encoders(data.text_encoder.model_dump_json(), "text")
    present = torch.tensor([[it.image is not None, bool(it.title)] for it in items], dtype=torch.bool)
    blob: dict[str, Any] = {"present": present, "classes": [it.class_name for it in items], "identity": identity}

    def images(chunk: list[int]) -> Tensor:
        return image_encoder(torch.stack([load_image(items[i].image, data.image_size) for i in chunk]))  # type: ignore[arg-type]

    def titles(chunk: list[int]) -> Tensor:
        return text_encoder(text_encoder.tokenize([str(items[i].title) for i in chunk]))

    for m, (name, encode) in enumerate({"image": images, "text": titles}.items()):
        rows, parts = _encode(present[:, m].nonzero().flatten().tolist(), data.encode_batch, encode, name, label)
        width = int((image_encoder if m == 0 else text_encoder).out_features)
        features = torch.zeros(len(items), width)
        if rows:
            features[rows] = torch.cat(parts).float()
        blob[name] = features
    torch_save_atomic(blob, path)
    return blob


@lru_cache(maxsize=4)
def encoders(spec_json: str, modality: str) -> Any:
    """The frozen encoder of a spec (``model_dump_json()``), built once per process (predict reuses it)."""
    if modality == "image":
        return ImageEncoder(ImageEncoderSpec.model_validate_json(spec_json)).eval()
    return build_text_encoder(TextEncoderSpec.model_validate_json(spec_json)).eval()


def _protocol(present: Tensor, missing: MissingProtocol, seed: int) -> tuple[Tensor, int]:
    """``present`` with the protocol's draw removed; a row left with nothing keeps ``present`` (counted)."""
    mask = present & missing_pattern(len(present), missing.rate, missing.kind, seed)
    empty = ~mask.any(1)
    mask[empty] = present[empty]
    return mask, int(empty.sum())


def _dataset(blob: dict[str, Any], rows: list[int], mask: Tensor, labels: Tensor, stats: dict[str, Any]) -> Any:
    inputs = {name: (blob[name][rows] - stats[name][0]) / stats[name][1] for name in MODALITIES}
    return TensorMultimodalDataset(inputs, mask[rows], labels[rows])


def load_food101(data: Food101Data, root: Path) -> Splits:
    """Train / validation / test splits of cached embeddings, standardised with training statistics."""
    train, test = embed_split(root, "train", data), embed_split(root, "test", data)
    classes = sorted(set(train["classes"]))
    unknown = sorted(set(test["classes"]) - set(classes))
    if unknown:
        raise ValueError(f"{root}: test classes without training samples: {unknown[:5]}")
    index = {name: k for k, name in enumerate(classes)}
    train_labels = torch.tensor([index[c] for c in train["classes"]])
    test_labels = torch.tensor([index[c] for c in test["classes"]])
    train_rows, val_rows = stratified_split(train_labels.tolist(), data.val_fraction, data.split_seed)
    p = data.missing
    train_mask, spared_train = (
        _protocol(train["present"], p, p.seed) if p.at != "test" else (train["present"].clone(), 0)
    )
    test_mask, spared_test = _protocol(test["present"], p, p.seed + 1) if p.at != "train" else (test["present"], 0)
    stats = {}
    for m, name in enumerate(MODALITIES):  # fitted on the training rows that have the modality
        rows = [r for r in train_rows if train_mask[r, m]]
        features = train[name][rows] if rows else train[name][:1] * 0
        stats[name] = (features.mean(0), features.std(0, unbiased=False) + 1e-6)
    protocol = (
        f"; missing protocol: {p.rate:.0%} {p.kind} missing at {p.at} (seed {p.seed}"
        f"{f', {spared_train + spared_test} samples kept their only modality' if spared_train + spared_test else ''})"
        if p.rate > 0
        else ""
    )
    counts = Counter(train["classes"])
    description = (
        f"UPMC Food-101 layout at {root}: {len(classes)} classes, {len(train_rows)} train / {len(val_rows)} val / "
        f"{len(test_labels)} test samples (median {sorted(counts.values())[len(counts) // 2]} training samples a "
        f"class); frozen encoders: image {data.image_encoder.kind} at {data.image_size} px, text "
        f"{data.text_encoder.kind}; images missing in {int((~train_mask[:, 0]).sum())} train+val / "
        f"{int((~test_mask[:, 0]).sum())} test, texts missing in {int((~train_mask[:, 1]).sum())} / "
        f"{int((~test_mask[:, 1]).sum())}{protocol}."
    )
    preprocessing = {
        "dataset": "food101",
        "classes": classes,
        "image_size": data.image_size,
        "image_encoder": data.image_encoder.model_dump(mode="json"),
        "text_encoder": data.text_encoder.model_dump(mode="json"),
        "mean": {name: stats[name][0].tolist() for name in MODALITIES},
        "std": {name: stats[name][1].tolist() for name in MODALITIES},
    }
    all_test = list(range(len(test_labels)))
    return Splits(
        _dataset(train, train_rows, train_mask, train_labels, stats),
        _dataset(train, val_rows, train_mask, train_labels, stats),
        _dataset(test, all_test, test_mask, test_labels, stats),
        len(classes),
        description,
        preprocessing,
    )


@torch.no_grad()
def read_input(name: str, value: Path | str, preprocessing: dict[str, Any]) -> Tensor:
    """``simmlm predict``: an image file, or a title (a string, or a ``.txt`` file), as the model's standardised
    embedding ``[F]``."""
    if name == "image":
        spec = ImageEncoderSpec.model_validate(preprocessing["image_encoder"])
        image = load_image(Path(value), int(preprocessing["image_size"])).unsqueeze(0)
        features = encoders(spec.model_dump_json(), "image")(image)[0]
    elif name == "text":
        text = Path(value).read_text(encoding="utf-8") if isinstance(value, Path) else value
        if not text.strip():
            raise ValueError("the title is empty: leave the text out instead (a missing modality)")
        text_spec = TextEncoderSpec.model_validate(preprocessing["text_encoder"])
        encoder = encoders(text_spec.model_dump_json(), "text")
        features = encoder(encoder.tokenize([text.strip()]))[0]
    else:
        raise ValueError(f"unknown modality {name!r}; this model takes {list(MODALITIES)}")
    mean, std = torch.tensor(preprocessing["mean"][name]), torch.tensor(preprocessing["std"][name])
    return (features.float() - mean) / std
