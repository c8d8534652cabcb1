"""UPMC Food-101 data layer: the example in the real layout, the reader and its errors, image decoding, the
missing-rate protocol and the stratified validation split."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from simmlm.datasets.food101.loader import load_image, missing_pattern, read_food101, stratified_split
from simmlm.datasets.food101.synthetic import EXAMPLE_CLASSES, write_example_food101


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A tiny example: 2 classes, 4 training and 2 test pairs per class, 16x16 images."""
    return write_example_food101(tmp_path / "food", classes=2, per_class=4, size=16)


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def write_rows(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def save_image(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array.astype(np.uint8)).save(path)


def test_example_writes_the_real_layout_and_reads_back(tmp_path: Path) -> None:
    root = write_example_food101(tmp_path / "food", classes=3, per_class=6, size=16, seed=1)
    dishes = [dish for dish, _, _ in EXAMPLE_CLASSES[:3]]
    counts = {"train": 6, "test": 2}
    expected = {"texts/train_titles.csv", "texts/test_titles.csv"} | {
        f"images/{split}/{dish}/{dish}_{n}.jpg"
        for split, count in counts.items()
        for dish in dishes
        for n in range(count)
    }
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == expected
    for split, count in counts.items():
        rows = read_rows(root / "texts" / f"{split}_titles.csv")
        assert len(rows) == 3 * count and all(len(r) == 3 for r in rows)
        assert rows[0][0].endswith(".jpg")  # no header row
        items = read_food101(root, split)  # type: ignore[arg-type]
        assert len(items) == len(rows)
        for item, (file, title, dish) in zip(items, rows, strict=True):
            assert item.image is not None and item.image.name == file
            assert item.class_name == dish == item.image.parent.name and file.startswith(dish)
            assert item.image.parent.parent == root / "images" / split
            assert item.title == title
        assert sorted(i.line for i in items if i.line is not None) == list(range(1, len(rows) + 1))
        assert {(i.class_name, i.image.name) for i in items if i.image} == {
            (p.parent.name, p.name) for p in (root / "images" / split).rglob("*.jpg")
        }


def test_example_refuses_a_non_empty_folder_and_is_seeded(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        write_example_food101(tmp_path / "busy", classes=2, per_class=2, size=8)
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["keep.txt"]
    first = write_example_food101(tmp_path / "a", classes=2, per_class=3, size=8, seed=5)
    second = write_example_food101(tmp_path / "b", classes=2, per_class=3, size=8, seed=5)
    for name in ("train_titles.csv", "test_titles.csv"):
        assert (first / "texts" / name).read_bytes() == (second / "texts" / name).read_bytes()


def test_example_is_learnable_but_titles_are_not_enough(tmp_path: Path) -> None:
    root = write_example_food101(tmp_path / "food", seed=0)  # the defaults: 4 classes, 30 + 10 pairs a class
    train, test = read_food101(root, "train"), read_food101(root, "test")
    titles = [(i.title or "", i.class_name) for i in train + test]
    naming = np.mean([dish.replace("_", " ") in title for title, dish in titles])
    assert 0.55 < naming < 0.85  # about 30 % of the titles are generic
    classes = sorted({i.class_name for i in train})

    def features(items: list) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([load_image(i.image, 8) for i in items]).flatten(1)
        return images, torch.tensor([classes.index(i.class_name) for i in items])

    x, y = features(train)
    centroids = torch.stack([x[y == c].mean(0) for c in range(len(classes))])
    x_test, y_test = features(test)
    accuracy = (torch.cdist(x_test, centroids).argmin(1) == y_test).float().mean().item()
    assert accuracy > 0.6  # the pictures tell the class (chance: 0.25)


@pytest.mark.parametrize("folder", ["texts", "images"])
def test_missing_folder_is_named(small: Path, folder: str) -> None:
    shutil.rmtree(small / folder)
    with pytest.raises(FileNotFoundError, match=re.escape(str(small / folder))):
        read_food101(small, "train")


def test_missing_csv_and_split_folder_are_named(small: Path) -> None:
    (small / "texts" / "test_titles.csv").unlink()
    with pytest.raises(FileNotFoundError, match="test_titles.csv"):
        read_food101(small, "test")
    with pytest.raises(ValueError, match="split must be one of"):
        read_food101(small, "val")  # type: ignore[arg-type]


def test_row_without_image_file_errors_or_becomes_text_only(small: Path) -> None:
    csv_path = small / "texts" / "train_titles.csv"
    file, title, dish = read_rows(csv_path)[2]
    (small / "images" / "train" / dish / file).unlink()
    with pytest.raises(ValueError, match=rf"train_titles\.csv: 1 of 8 rows .*line 3: images/train/{dish}/{file}"):
        read_food101(small, "train")
    items = read_food101(small, "train", allow_missing_images=True)
    assert len(items) == 8
    assert items[2].image is None and items[2].title == title and items[2].class_name == dish and items[2].line == 3
    assert all(i.image is not None for k, i in enumerate(items) if k != 2)


def test_missing_images_error_lists_the_first_few_and_the_count(small: Path) -> None:
    for path in sorted((small / "images" / "train").rglob("*.jpg"))[:7]:
        path.unlink()
    with pytest.raises(ValueError, match=r"7 of 8 rows name an image file .* and 2 more\)") as caught:
        read_food101(small, "train")
    assert caught.value.args[0].count("line ") == 5


def test_class_without_image_folder_is_named(small: Path) -> None:
    csv_path = small / "texts" / "train_titles.csv"
    rows = read_rows(csv_path)
    rows[4][2] = "pizza_typo"
    write_rows(csv_path, rows)
    with pytest.raises(
        ValueError, match=r"train_titles\.csv: 1 class\(es\) have no image folder .*line 5: 'pizza_typo'"
    ):
        read_food101(small, "train")


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ('only_two.jpg,"a title"', "2 cell"),
        ("a.jpg,title,apple_pie,extra", "4 cell"),
        ("a.jpg,title,", "class name '' is empty"),
        ("../x.jpg,title,apple_pie", "not a plain name"),
        ('a.jpg,"unterminated title,apple_pie', "not a readable CSV row"),
    ],
)
def test_malformed_row_names_file_and_line(small: Path, bad_row: str, message: str) -> None:
    csv_path = small / "texts" / "train_titles.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    lines.insert(2, bad_row)
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"train_titles\.csv line 3\b.*{re.escape(message)}"):
        read_food101(small, "train")


def test_undecodable_bytes_name_the_line(small: Path) -> None:
    csv_path = small / "texts" / "train_titles.csv"
    csv_path.write_bytes(csv_path.read_bytes() + b"x.jpg,caf\xe9,apple_pie\n")
    with pytest.raises(ValueError, match=r"train_titles\.csv line 9: not UTF-8"):
        read_food101(small, "train")


def test_optional_header_row_names_the_columns(small: Path) -> None:
    csv_path = small / "texts" / "train_titles.csv"
    before = read_food101(small, "train")
    rows = read_rows(csv_path)
    write_rows(csv_path, [["Class_Name", "text", "filename"]] + [[c, t, f] for f, t, c in rows])
    after = read_food101(small, "train")
    assert [(i.class_name, i.image, i.title) for i in after] == [(i.class_name, i.image, i.title) for i in before]
    assert [i.line for i in after] == [i.line + 1 for i in before if i.line is not None]


def test_images_without_a_row_become_image_only_items(small: Path) -> None:
    dish = EXAMPLE_CLASSES[1][0]
    folder = small / "images" / "train" / dish
    save_image(folder / "zz_extra.jpg", np.full((16, 16, 3), 200))
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "notes.txt").write_text("not an image")
    csv_path = small / "texts" / "train_titles.csv"
    rows = read_rows(csv_path)
    rows[0][1] = "   "  # an empty title: that pair has no text
    write_rows(csv_path, rows)
    items = read_food101(small, "train")
    assert len(items) == 9
    assert items[0].title is None and items[0].image is not None
    extra = items[-1]
    assert (extra.class_name, extra.image, extra.title, extra.line) == (dish, folder / "zz_extra.jpg", None, None)


def test_load_image_shape_and_range(small: Path) -> None:
    path = next((small / "images" / "train").rglob("*.jpg"))
    image = load_image(path, 12)
    assert image.shape == (3, 12, 12) and image.dtype == torch.float32
    assert image.min().item() >= 0.0 and image.max().item() <= 1.0 and image.max().item() > 0.5
    assert load_image(path, 16).shape == (3, 16, 16)


def test_load_image_resizes_the_shorter_side_and_crops_the_centre(tmp_path: Path) -> None:
    # A tall picture in thirds, red / green / blue from top to bottom: the centre crop keeps only green.
    tall = np.zeros((96, 32, 3))
    tall[:32, :, 0], tall[32:64, :, 1], tall[64:, :, 2] = 255, 255, 255
    save_image(tmp_path / "tall.png", tall)
    exact = load_image(tmp_path / "tall.png", 32)  # no resize: rows 32..63 exactly
    assert torch.equal(exact, torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1).expand(3, 32, 32))
    half = load_image(tmp_path / "tall.png", 16)  # resized to 16 x 48, rows 16..31
    assert torch.allclose(half[:, 8, 8], torch.tensor([0.0, 1.0, 0.0]), atol=0.01)
    assert half[1].mean() > 0.9 and half[0].max() < 0.5 and half[2].max() < 0.5
    # A wide picture with a known pixel: its centre stays at the centre of the crop.
    wide = np.zeros((33, 50, 3))
    wide[10:24, 18:33] = (255, 255, 0)
    save_image(tmp_path / "wide.png", wide)
    crop = load_image(tmp_path / "wide.png", 16)  # 50 x 33 -> 24 x 16, columns 4..19
    assert crop.shape == (3, 16, 16)
    assert crop[0, 8, 8] > 0.8 and crop[1, 8, 8] > 0.8 and crop[2, 8, 8] < 0.05
    assert crop[:, 0, 0].max() < 0.05 and crop[:, 15, 15].max() < 0.05


@pytest.mark.parametrize("content", ["garbage", "truncated"])
def test_load_image_rejects_a_corrupt_jpeg_naming_it(small: Path, content: str) -> None:
    good = next((small / "images" / "train").rglob("*.jpg"))
    bad = good.with_name("broken_7.jpg")
    data = good.read_bytes()
    bad.write_bytes(b"this is not a JPEG" * 10 if content == "garbage" else data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"broken_7\.jpg: not a readable image"):
        load_image(bad, 16)
    with pytest.raises(FileNotFoundError, match="nothing.jpg"):
        load_image(bad.with_name("nothing.jpg"), 16)


@pytest.mark.parametrize(
    ("num_samples", "rate", "kind", "lose_image", "lose_text"),
    [
        (10, 0.25, "text", 0, 3),  # 2.5 rounds half up to 3 (round() would give 2)
        (10, 0.25, "image", 3, 0),
        (10, 0.25, "both", 1, 2),
        (20, 0.7, "both", 7, 7),
        (7, 1.0, "both", 3, 4),
        (9, 0.0, "both", 0, 0),
        (0, 0.5, "text", 0, 0),
    ],
)
def test_missing_pattern_counts(num_samples: int, rate: float, kind: str, lose_image: int, lose_text: int) -> None:
    present = missing_pattern(num_samples, rate, kind, seed=3)  # type: ignore[arg-type]
    assert present.dtype == torch.bool and present.shape == (num_samples, 2)
    assert (~present).sum(0).tolist() == [lose_image, lose_text]
    assert not (~present).all(1).any()  # no sample loses both


def test_missing_pattern_is_seeded_and_checked() -> None:
    first = missing_pattern(50, 0.4, "both", seed=1)
    assert torch.equal(first, missing_pattern(50, 0.4, "both", seed=1))
    assert not torch.equal(first, missing_pattern(50, 0.4, "both", seed=2))
    # The same seed picks the same samples whatever modality they lose.
    assert torch.equal(missing_pattern(50, 0.4, "text", seed=1)[:, 1], missing_pattern(50, 0.4, "image", seed=1)[:, 0])
    for args in [(10, 1.5, "text"), (10, -0.1, "image"), (10, 0.5, "audio"), (-1, 0.5, "text")]:
        with pytest.raises(ValueError):
            missing_pattern(*args)  # type: ignore[arg-type]


def test_stratified_split_keeps_every_class_in_train_and_val_and_is_seeded() -> None:
    labels = [0] * 10 + [1] * 5 + [2] * 2 + [3] * 1 + [4] * 4
    order = np.random.default_rng(0).permutation(len(labels))
    labels = [labels[i] for i in order]
    train, val = stratified_split(labels, 0.2, seed=0)
    assert sorted(train + val) == list(range(len(labels))) and not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)
    val_counts = {c: sum(labels[i] == c for i in val) for c in range(5)}
    assert val_counts == {0: 2, 1: 1, 2: 1, 3: 0, 4: 1}  # 0.4 -> at least one; a class of one stays in train
    assert {labels[i] for i in train} == {0, 1, 2, 3, 4}
    assert (train, val) == stratified_split(labels, 0.2, seed=0)
    assert val != stratified_split(labels, 0.2, seed=1)[1]
    assert len(stratified_split([0, 0, 1, 1], 0.9, seed=0)[0]) == 2  # never a whole class in validation
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(labels, 1.0)
