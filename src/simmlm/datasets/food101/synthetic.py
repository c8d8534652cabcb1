"""A tiny learnable stand-in for UPMC Food-101 in its real layout (:func:`write_example_food101`, read by
:mod:`simmlm.datasets.food101.loader`): coloured shapes with template titles; and a tiny random BERT over its words
(:func:`write_tiny_bert`) for the HuggingFace text-encoder path."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from simmlm.datasets.food101.loader import titles_csv
from simmlm.fileio import check_new_folder, new_folder

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
