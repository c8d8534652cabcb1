"""A small synthetic, learnable dataset in the folder layout (:mod:`simmlm.data.folder`), for walkthroughs and tests.

Modality ``image`` is a one-channel ``16x16`` picture (saved as ``[16, 16]``), the others (``sensor1``, ...) are
12-dimensional vectors. Each class has a random prototype per modality; a sample is its class prototype plus
Gaussian noise, noisier for later modalities, so every modality alone is informative but imperfect and
together they are better. Each modality is missing from a sample with probability ``missing`` (never all of them),
in every split.

Also a tiny stand-in for UPMC Food-101 in its real layout (:func:`write_example_food101`, read by
:mod:`simmlm.data.food101`).
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from simmlm.data.food101 import titles_csv

IMAGE_SIDE = 16
VECTOR_SIZE = 12


def check_new_folder(directory: Path) -> None:
    """``ValueError`` unless ``directory`` is new or an empty folder."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(f"{directory} already exists and is not empty; choose a new folder")


@contextmanager
def new_folder(directory: Path) -> Iterator[Path]:
    """A temporary folder beside ``directory`` that becomes ``directory`` when the block ends (and is removed if it
    raises), so an interrupted writer leaves nothing half written."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        yield tmp
        if directory.exists():
            directory.rmdir()
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def example_modalities(num_modalities: int) -> list[str]:
    """Modality names of the example data: ``image``, ``sensor1``, ``sensor2``, ..."""
    return ["image"] + [f"sensor{m}" for m in range(1, num_modalities)]


def write_example_dataset(
    directory: str | Path,
    num_modalities: int = 3,
    num_samples: int = 600,
    num_classes: int = 4,
    missing: float = 0.25,
    seed: int = 0,
) -> Path:
    """Write ``manifest.csv`` and ``<modality>/<sample_id>.npy`` files into a new folder ``directory``.

    The folder is filled under a temporary name and renamed at the end: an error leaves nothing half written.
    Splits: 60 % train, 20 % val, 20 % test. Raises ``ValueError`` if ``directory`` exists and is not empty.
    """
    directory = Path(directory)
    if num_modalities < 2:
        raise ValueError(f"the example needs at least 2 modalities, got {num_modalities}")
    if num_classes < 2 or num_samples < 5 * num_classes:
        raise ValueError(
            f"need >= 2 classes and >= 5 samples per class, got {num_samples} samples and {num_classes} classes"
        )
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"missing must be in [0, 1), got {missing}")
    check_new_folder(directory)
    rng = np.random.default_rng(seed)
    names = example_modalities(num_modalities)
    shapes = {name: (IMAGE_SIDE, IMAGE_SIDE) if name == "image" else (VECTOR_SIZE,) for name in names}
    # Images: coarse 4x4 block patterns upsampled to 16x16; vectors: random directions.
    block = IMAGE_SIDE // 4
    prototypes = {
        name: np.kron(rng.choice([-1.0, 1.0], size=(num_classes, 4, 4)), np.ones((1, block, block)))
        if name == "image"
        else rng.normal(size=(num_classes, VECTOR_SIZE))
        for name in names
    }
    noise = {name: 4.5 if name == "image" else 1.0 + 0.3 * m for m, name in enumerate(names)}
    labels = np.arange(num_samples) % num_classes
    rng.shuffle(labels)
    split = np.where(np.arange(num_samples) < 0.6 * num_samples, "train", "val")
    split[np.arange(num_samples) >= 0.8 * num_samples] = "test"
    present = rng.random((num_samples, num_modalities)) >= missing
    for row in np.flatnonzero(~present.any(1)):
        present[row, rng.integers(num_modalities)] = True
    with new_folder(directory) as tmp:
        for name in names:
            (tmp / name).mkdir()
        rows = []
        for i in range(num_samples):
            sample_id = f"s{i:05d}"
            cells = []
            for m, name in enumerate(names):
                if not present[i, m]:
                    cells.append("")
                    continue
                value = prototypes[name][labels[i]] + noise[name] * rng.normal(size=shapes[name])
                np.save(tmp / name / f"{sample_id}.npy", value.astype(np.float32))
                cells.append(f"{name}/{sample_id}.npy")
            rows.append([sample_id, int(labels[i]), split[i], *cells])
        with (tmp / "manifest.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sample_id", "label", "split", *names])
            writer.writerows(rows)
    return directory


#: Feature sizes and sequence lengths of the example pickle: unaligned, like MulT's ``*_noalign.pkl`` files.
SEQUENCE_SHAPES = {"text": (20, 16), "audio": (30, 8), "vision": (25, 6)}
EXAMPLE_PICKLE = "mosi_example.pkl"


def write_example_sequences(directory: str | Path, num_samples: int = 600, seed: int = 0) -> Path:
    """Write ``directory/mosi_example.pkl``: a small learnable dataset in the MulT pickle layout
    (:mod:`simmlm.data.seqfeatures`), so the sequence path runs before one has the real CMU-MOSI files.

    Splits ``train`` / ``valid`` / ``test`` (60 / 20 / 20 %), each with ``text`` / ``audio`` / ``vision`` arrays
    ``[N, T, D]`` (:data:`SEQUENCE_SHAPES`) and ``regression_labels`` ``[N]``, sentiment scores in [-3, 3]. Every
    frame of a modality carries ``score / 3`` along a direction of its own plus noise (text the clearest, vision the
    noisiest), and each sequence has a random length, zero-padded at the end as in the real files. Raises
    ``ValueError`` if ``directory`` exists and is not empty.
    """
    import pickle

    from simmlm.fileio import atomic_path

    directory = Path(directory)
    if num_samples < 20:
        raise ValueError(f"the example needs at least 20 samples, got {num_samples}")
    check_new_folder(directory)
    rng = np.random.default_rng(seed)
    scores = np.round(rng.uniform(-3, 3, num_samples) * 3) / 3  # some exactly 0, as in MOSI
    arrays = {}
    for m, (name, (frames, features)) in enumerate(SEQUENCE_SHAPES.items()):
        direction = rng.normal(size=features)
        values = scores[:, None, None] / 3 * direction + (0.8 + 0.4 * m) * rng.normal(
            size=(num_samples, frames, features)
        )
        lengths = rng.integers(frames // 2, frames + 1, num_samples)
        values[np.arange(frames)[None, :] >= lengths[:, None]] = 0.0  # padding
        arrays[name] = values.astype(np.float32)
    cut = [int(0.6 * num_samples), int(0.8 * num_samples)]
    parts = zip(("train", "valid", "test"), np.split(np.arange(num_samples), cut), strict=True)
    data = {
        split: {**{k: v[rows] for k, v in arrays.items()}, "regression_labels": scores[rows].astype(np.float32)}
        for split, rows in parts
    }
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / EXAMPLE_PICKLE) as tmp, tmp.open("wb") as handle:
        pickle.dump(data, handle)
    return directory / EXAMPLE_PICKLE


# UPMC Food-101 (simmlm.data.food101): coloured shapes with template titles, in the real layout.

_DISHES = (
    "apple_pie",
    "baklava",
    "caesar_salad",
    "donuts",
    "edamame",
    "falafel",
    "gnocchi",
    "hummus",
    "lasagna",
    "macarons",
    "nachos",
    "pizza",
    "ramen",
    "sushi",
    "tacos",
    "waffles",
)
_SHAPES = ("circle", "square", "triangle", "ring")
#: The example's classes: a Food-101 class name, the shape and the colour its pictures show.
EXAMPLE_CLASSES: tuple[tuple[str, str, str], ...] = tuple(
    (dish, _SHAPES[k % 4], ("red", "green", "blue", "yellow")[(k + k // 4) % 4]) for k, dish in enumerate(_DISHES)
)
_COLOURS = {
    "red": (0.85, 0.12, 0.1),
    "green": (0.15, 0.7, 0.2),
    "blue": (0.15, 0.25, 0.85),
    "yellow": (0.9, 0.8, 0.15),
}
_INFORMATIVE = (
    "{dish} recipe",
    "easy homemade {dish}",
    "the best {dish} in town - {site}",
    "how to make {dish}, step by step",
    "{dish} with {extra} | {site}",
    "quick and easy {dish} for {meal}",
)
_GENERIC = (
    "recipe of the day | {site}",
    "what we ate for {meal}",
    "weekend cooking, part {n}",
    "{site} - food blog",
    "my favourite {meal} ideas",
    "photo {n} | {site}",
)
_FILLERS = {
    "site": ("foodie daily", "kitchen stories", "yummly", "chef at home", "taste of home"),
    "meal": ("dinner", "lunch", "brunch", "a party", "the family"),
    "extra": ("fresh herbs", "a green side", "lemon", "extra cheese", "spices"),
}
#: Shares of the example's uninformative titles and of its images showing another class (e.g. a side dish).
EXAMPLE_GENERIC_TITLES = 0.3
EXAMPLE_MISLEADING_IMAGES = 0.15


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Bool ``[size, size]``: a shape of random position and size."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    cy, cx = rng.uniform(0.38, 0.62, 2) * size
    radius = rng.uniform(0.22, 0.32) * size
    dy, dx = yy - cy, xx - cx
    distance = np.hypot(dy, dx)
    if shape == "circle":
        return distance <= radius
    if shape == "square":
        return np.maximum(np.abs(dy), np.abs(dx)) <= 0.8 * radius
    if shape == "triangle":
        return (np.abs(dy) <= radius) & (np.abs(dx) <= (dy + radius) / 2)
    return (distance <= radius) & (distance >= 0.55 * radius)  # ring


def _example_picture(shape: str, colour: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Uint8 ``[size, size, 3]``: a coloured shape on a grey background, with colour jitter and pixel noise."""
    picture = np.empty((size, size, 3))
    picture[:] = rng.uniform(0.35, 0.75)  # background grey
    tint = np.clip(np.asarray(_COLOURS[colour]) + rng.normal(0, 0.06, 3), 0, 1)
    picture[_shape_mask(shape, size, rng)] = tint
    picture += rng.normal(0, 0.1, picture.shape)
    return (np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8)


def _example_title(dish: str, rng: np.random.Generator) -> str:
    """A web-page-like title: names the dish, or (share :data:`EXAMPLE_GENERIC_TITLES`) only generic words."""
    generic = rng.random() < EXAMPLE_GENERIC_TITLES
    template = str(rng.choice(_GENERIC if generic else _INFORMATIVE))
    fillers = {key: str(rng.choice(options)) for key, options in _FILLERS.items()}
    return template.format(dish=dish.replace("_", " "), n=int(rng.integers(1, 100)), **fillers)


def write_example_food101(
    directory: str | Path, classes: int = 4, per_class: int = 30, size: int = 32, seed: int = 0
) -> Path:
    """Write a tiny learnable stand-in for UPMC Food-101 into a new folder, in exactly the real layout.

    Class ``k`` is the ``k``-th of :data:`EXAMPLE_CLASSES`: a dish name, shown as a shape of one colour (red
    circle, green square, blue triangle, yellow ring, ...). Each split has ``per_class`` (train) or
    ``max(2, per_class // 3)`` (test) pairs per class, files ``images/<split>/<dish>/<dish>_<n>.jpg`` (JPEG,
    ``size x size``, with jitter and noise) and CSV rows ``file, title, class`` without a header. About 30 % of
    the titles are generic (no dish word) and about 15 % of the images show another class's shape and colour, so
    neither modality alone classifies perfectly but together they nearly do. The folder is filled under a
    temporary name and renamed at the end, so an error leaves nothing half written.

    Args:
        directory: the new dataset folder; it must not exist or be empty.
        classes: number of classes, 2 to ``len(EXAMPLE_CLASSES)``.
        per_class: training pairs per class, >= 2.
        size: image side in pixels, >= 8.
        seed: seed of everything drawn.

    Returns:
        ``directory``.

    Raises:
        ValueError: an argument out of range, or ``directory`` exists and is not an empty folder.
    """
    from PIL import Image

    directory = Path(directory)
    if not 2 <= classes <= len(EXAMPLE_CLASSES):
        raise ValueError(f"classes must be in 2..{len(EXAMPLE_CLASSES)}, got {classes}")
    if per_class < 2 or size < 8:
        raise ValueError(f"need per_class >= 2 and size >= 8, got per_class={per_class}, size={size}")
    check_new_folder(directory)
    rng = np.random.default_rng(seed)
    chosen = EXAMPLE_CLASSES[:classes]
    counts = {"train": per_class, "test": max(2, per_class // 3)}
    with new_folder(directory) as tmp:
        (tmp / "texts").mkdir()
        for split, count in counts.items():
            rows = []
            for k, (dish, *_) in enumerate(chosen):
                folder = tmp / "images" / split / dish
                folder.mkdir(parents=True)
                for n in range(count):
                    misleading = rng.random() < EXAMPLE_MISLEADING_IMAGES
                    shown = (k + int(rng.integers(1, classes))) % classes if misleading else k
                    picture = _example_picture(*chosen[shown][1:], size, rng)
                    Image.fromarray(picture).save(folder / f"{dish}_{n}.jpg", format="JPEG", quality=90)
                    rows.append([f"{dish}_{n}.jpg", _example_title(dish, rng), dish])
            order = rng.permutation(len(rows))  # the real CSVs are not grouped by class either
            with titles_csv(tmp, split).open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows(rows[i] for i in order)
    return directory


def write_tiny_bert(directory: str | Path, texts: list[str], seed: int = 0) -> Path:
    """A randomly initialised two-layer BERT (hidden size 32) and a WordPiece tokenizer whose vocabulary is the words
    of ``texts``, saved with ``save_pretrained`` into the new folder ``directory``: the HuggingFace text-encoder path
    (``data.text_encoder.kind: huggingface``) end to end without a download. Needs ``simmlm[text]``."""
    try:
        import torch
        import transformers
    except ImportError as err:
        raise ImportError("writing a tiny BERT needs transformers: pip install 'simmlm[text]'") from err
    from simmlm.nn.encoders import ngrams

    directory = Path(directory)
    check_new_folder(directory)
    words = sorted({g for text in texts for g in ngrams(text) if " " not in g and not g.startswith("#")})
    with new_folder(directory) as tmp:
        (tmp / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
        transformers.BertTokenizer(str(tmp / "vocab.txt")).save_pretrained(tmp)  # the vocabulary file: v4 and v5
        config = transformers.BertConfig(
            vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            transformers.BertModel(config).save_pretrained(tmp)
    return directory
