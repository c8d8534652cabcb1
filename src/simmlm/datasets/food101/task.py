"""UPMC Food-101 as a task: frozen encoders, their embedding cache, the missing-rate protocol, predict's reader.

The SimMLM paper's image-text benchmark: experts stand on an image encoder and a text encoder
(:mod:`simmlm.nn.encoders`). In the frozen-encoder mode built here every image and title is encoded once; the
embeddings are cached under ``$SIMMLM_CACHE_DIR/food101/`` (default ``~/.cache/simmlm``), keyed by the encoders
(their settings and the digest of their weights) and the data (each CSV's contents, each image's path, size and
modification time), and DMoME / MoFe and the peers train on them (MLP experts, fast on CPU). A title that is absent
(an image without a CSV row, or an empty title) is never tokenised or encoded: the modality is absent in the mask.

The missing-rate protocol of MAP / MMP (``data.missing``: η % of the texts, the images or both, drawn with a seed)
applies on top of what the data lacks, at training (training and validation samples), at test, or both. A sample
the protocol would leave with nothing keeps what the data gave it; the splits' description counts them. The
protocol acts on the mask, after the cache: a title or image that it drops *has* been encoded (once, so that one
cache serves every rate, kind and seed), and its row is then zeroed, so no model, gate or statistic sees it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from simmlm.data.base import Splits, TensorMultimodalDataset
from simmlm.data.rows import RowFile, write_rows
from simmlm.datasets.food101 import MODALITIES, Food101Data, MissingProtocol
from simmlm.datasets.food101.loader import (
    Food101Item,
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
from simmlm.progress import progress

logger = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the encoding itself changes
MODES = {"frozen": "frozen", "finetune": "fine-tuned"}
WHAT = {"text": "text", "image": "image", "both": "image or text (half each)"}
WHERE = {"train": "training and validation", "test": "test", "both": "training, validation and test"}


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


def _encode(inputs: list[Any], batch: int, encode: Any, what: str, label: str) -> list[Tensor]:
    """Run ``encode(chunk)`` over ``inputs`` in chunks (images decoded and encoded, titles tokenised and encoded),
    showing the progress (:mod:`simmlm.progress`)."""
    out: list[Tensor] = []
    with progress(f"{label}: encoding the {what}s", len(inputs), f"{what}s") as bar:
        for k in range(0, len(inputs), batch):
            out.append(encode(inputs[k : k + batch]))
            bar.advance(len(inputs[k : k + batch]))
    return out


def _codecs(data: Food101Data) -> dict[str, tuple[Any, Any]]:
    """Per modality: what the cache key holds of the encoding, and ``encode(list of paths / titles) -> Tensor``.

    Frozen: the encoders' features. Fine-tuning: the model's raw inputs, uint8 images and token ids (the encoders
    are part of the experts then, :class:`~simmlm.nn.encoders.EncoderExpert`).
    """
    image_json, text_json = data.image_encoder.model_dump_json(), data.text_encoder.model_dump_json()

    def pixels(paths: list[Path]) -> Tensor:
        return torch.stack([load_image(path, data.image_size) for path in paths])

    def tokens(texts: list[str]) -> Tensor:
        return encoders(text_json, "text").tokenize(texts)

    if data.mode == "finetune":
        tokenizer = data.text_encoder.model_dump(mode="json", include={"kind", "buckets", "max_tokens", "path"})
        return {
            "image": ("uint8 pixels, read lazily", lambda paths: pixels(paths).mul(255).round().to(torch.uint8)),
            "text": ({**tokenizer, **encoder_identity(data.text_encoder)}, tokens),
        }
    return {
        "image": (encoder_identity(data.image_encoder), lambda paths: encoders(image_json, "image")(pixels(paths))),
        "text": (encoder_identity(data.text_encoder), lambda texts: encoders(text_json, "text")(tokens(texts))),
    }


def embed_split(root: Path, split: Split, data: Food101Data) -> dict[str, Any]:
    """The split's items encoded once: ``image`` / ``text`` features ``[N, F]`` (fine-tuning: uint8 images
    ``[N, 3, S, S]`` and token ids), zero where absent, ``present`` ``[N, 2]`` and ``classes`` (each item's class
    name); loaded from the cache when the encoding and the data match."""
    items = _subsample(read_food101(root, split, data.allow_missing_images), data.max_per_class, data.split_seed)
    codecs = _codecs(data)
    identity = {
        "version": CACHE_VERSION,
        "image_size": data.image_size,
        **{name: spec for name, (spec, _) in codecs.items()},
        "data": data_fingerprint(root, split, items),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / "food101" / f"{split}-{data.mode}-{key[:20]}.pt"
    pixel_file = path.with_suffix(".images.npy")  # fine-tuning: the raw images, read a batch at a time
    if path.is_file() and (data.mode == "frozen" or pixel_file.is_file()):
        cached = dict(torch.load(path, map_location="cpu", weights_only=True))
        return {**cached, "image": RowFile(pixel_file)} if data.mode == "finetune" else cached
    label = f"food101 {split}"
    logger.info("%s: encoding %d samples once (%s; cached in %s)", label, len(items), data.mode, path)
    present = torch.tensor([[it.image is not None, it.title is not None] for it in items], dtype=torch.bool)
    blob: dict[str, Any] = {"present": present, "classes": [it.class_name for it in items], "identity": identity}
    values: dict[str, list[Any]] = {"image": [it.image for it in items], "text": [it.title for it in items]}
    for m, (name, (_, encode)) in enumerate(codecs.items()):
        rows = (
            present[:, m].nonzero().flatten().tolist()
        )  # what the data lacks is never encoded (the protocol's drops are)
        if not rows:
            raise ValueError(f"{root}: no {split} sample has {'an image' if m == 0 else 'a title'}")
        if data.mode == "finetune" and name == "image":  # written to a file, never held whole in memory
            blocks = _blocks([values[name][i] for i in rows], rows, data.encode_batch, encode, label)
            row_shape = (3, data.image_size, data.image_size)
            blob[name] = write_rows(pixel_file, len(items), blocks, row_shape, np.dtype(np.uint8))
            continue
        with torch.no_grad():
            parts = _encode([values[name][i] for i in rows], data.encode_batch, encode, name, label)
        blob[name] = torch.zeros(len(items), *parts[0].shape[1:], dtype=parts[0].dtype)
        blob[name][rows] = torch.cat(parts)
    torch_save_atomic({k: v for k, v in blob.items() if not getattr(v, "lazy", False)}, path)
    return blob


def _blocks(
    inputs: list[Any], rows: list[int], batch: int, encode: Any, label: str
) -> Iterator[tuple[list[int], Tensor]]:
    """``(rows, encode(their inputs))`` a block of ``batch`` at a time, showing the progress."""
    with progress(f"{label}: decoding the images", len(inputs), "images") as bar:
        for k in range(0, len(inputs), batch):
            yield rows[k : k + batch], encode(inputs[k : k + batch])
            bar.advance(len(inputs[k : k + batch]))


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
    inputs = {
        name: (blob[name][rows] - stats[name][0]) / stats[name][1]
        if stats
        else blob[name].take(rows)
        if getattr(blob[name], "lazy", False)
        else blob[name][rows]
        for name in MODALITIES
    }
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
    for m, name in enumerate(MODALITIES if data.mode == "frozen" else ()):  # fitted on training rows with it
        rows = [r for r in train_rows if train_mask[r, m]]
        features = train[name][rows] if rows else train[name][:1] * 0
        stats[name] = (features.mean(0), features.std(0, unbiased=False) + 1e-6)
    protocol = (
        f"; missing protocol: {p.rate:.0%} {WHAT[p.kind]} missing in {WHERE[p.at]} (seed {p.seed}"
        f"{f', {spared_train + spared_test} samples kept their only modality' if spared_train + spared_test else ''})"
        if p.rate > 0
        else ""
    )
    counts = Counter(train["classes"])
    description = (
        f"UPMC Food-101 layout at {root}: {len(classes)} classes, {len(train_rows)} train / {len(val_rows)} val / "
        f"{len(test_labels)} test samples (median {sorted(counts.values())[len(counts) // 2]} training samples a "
        f"class); {MODES[data.mode]} encoders: image {data.image_encoder.kind} at {data.image_size} px, text "
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
        "mode": data.mode,
        "mean": {name: stats[name][0].tolist() for name in stats},
        "std": {name: stats[name][1].tolist() for name in stats},
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
    """``simmlm predict``: an image file, or a title (a string, or a text file), as the model's input: the
    standardised embedding ``[F]`` (frozen encoders) or the raw pixels / token ids (fine-tuned)."""
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; this model takes {list(MODALITIES)}")
    data = Food101Data.model_validate(
        {key: preprocessing[key] for key in ("image_size", "image_encoder", "text_encoder", "mode")}
    )
    if name == "text":
        value = (Path(value).read_text(encoding="utf-8") if isinstance(value, Path) else value).strip()
        if not value:
            raise ValueError("the title is empty: leave the text out instead (a missing modality)")
    encoded = _codecs(data)[name][1]([value])[0]
    if data.mode != "frozen":
        return encoded
    mean, std = torch.tensor(preprocessing["mean"][name]), torch.tensor(preprocessing["std"][name])
    return (encoded.float() - mean) / std
