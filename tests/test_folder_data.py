"""Folder datasets (your own data): layout, labels, standardisation, and one clear error per kind of bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.datasets.folder.loader import apply_standardization, load_folder

SHAPES: dict[str, tuple[int, ...]] = {"vec": (4,), "img": (12, 12)}


def write_folder(
    root: Path,
    shapes: dict[str, tuple[int, ...]] | None = None,
    splits: tuple[int, int, int] = (8, 4, 4),
    num_classes: int = 2,
    missing: dict[int, list[str]] | None = None,
    seed: int = 0,
) -> Path:
    """A small folder dataset: samples ``s0..``; ``missing`` maps a row to the modalities it lacks.

    Values are ``label + noise`` so the data is learnable.
    """
    shapes = shapes or SHAPES
    missing = missing or {}
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    names = [s for s, n in zip(("train", "val", "test"), splits, strict=True) for _ in range(n)]
    for i, split in enumerate(names):
        label = i % num_classes
        cells = []
        for name, shape in shapes.items():
            if name in missing.get(i, []):
                cells.append("")
                continue
            (root / name).mkdir(exist_ok=True)
            np.save(root / name / f"s{i}.npy", (label + 0.3 * rng.normal(size=shape)).astype(np.float32))
            cells.append(f"{name}/s{i}.npy")
        rows.append([f"s{i}", label, split, *cells])
    write_manifest(root, ["sample_id", "label", "split", *shapes], rows)
    return root


def write_manifest(root: Path, header: list[str], rows: list[list[object]]) -> None:
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def read_manifest(root: Path) -> list[list[str]]:
    with (root / "manifest.csv").open(newline="") as handle:
        return list(csv.reader(handle))


def edit_manifest(root: Path, row: int, column: str, value: str) -> None:
    """Set one cell (``row`` counts data rows from 0)."""
    table = read_manifest(root)
    table[row + 1][table[0].index(column)] = value
    write_manifest(root, table[0], table[1:])


# -- what a good folder gives ------------------------------------------------------------------------------------


def test_load_folder_splits_shapes_masks_and_labels(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", missing={0: ["img"], 9: ["vec"]})
    splits = load_folder(root, standardize=False)
    assert splits.modalities == ["vec", "img"]  # manifest column order
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 4, 4)
    assert splits.num_classes == 2
    assert splits.train.inputs["img"].shape == (8, 1, 12, 12)  # [H, W] -> one-channel image
    assert splits.train.inputs["vec"].shape == (8, 4)
    assert splits.train.mask[0].tolist() == [True, False]
    assert splits.val.mask[1].tolist() == [False, True]  # row 9 is the second val row
    assert torch.all(splits.train.inputs["img"][0] == 0)  # missing -> zeros (the mask is the truth)
    assert splits.train.targets.tolist() == [i % 2 for i in range(8)]
    raw = np.load(root / "vec" / "s3.npy")
    assert np.array_equal(splits.train.inputs["vec"][3].numpy(), raw)
    assert splits.preprocessing["classes"] == ["0", "1"]
    assert splits.preprocessing["standardize"] == {}
    assert "16 samples" in splits.description


def test_standardisation_is_fitted_on_present_training_samples_only(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", missing={1: ["vec"], 2: ["img"]})
    splits = load_folder(root)
    present = [np.load(root / "vec" / f"s{i}.npy") for i in range(8) if i != 1]
    mean, std = np.mean(present, axis=0), np.std(present, axis=0)
    stats = splits.preprocessing["standardize"]["vec"]
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(stats["std"], std, rtol=1e-5)
    expected = (np.load(root / "vec" / "s14.npy") - mean) / std  # a test sample, scaled with training statistics
    np.testing.assert_allclose(splits.test.inputs["vec"][2].numpy(), expected, rtol=1e-4, atol=1e-5)
    assert torch.all(splits.train.inputs["vec"][1] == 0)  # missing stays zero after scaling
    img_stats = splits.preprocessing["standardize"]["img"]
    assert np.asarray(img_stats["mean"]).shape == (1, 1, 1)  # per channel for [C, H, W]
    images = [np.load(root / "img" / f"s{i}.npy") for i in range(8) if i != 2]
    assert img_stats["mean"][0][0][0] == pytest.approx(float(np.mean(images)), rel=1e-5)
    scaled = apply_standardization(np.load(root / "img" / "s0.npy")[None], img_stats)
    np.testing.assert_allclose(splits.train.inputs["img"][0].numpy(), scaled, rtol=1e-5, atol=1e-5)


def test_string_labels_map_to_sorted_indices(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", num_classes=3)
    names = {0: "zebra", 1: "cat", 2: "dog"}
    table = read_manifest(root)
    for row in table[1:]:
        row[1] = names[int(row[1])]
    write_manifest(root, table[0], table[1:])
    splits = load_folder(root)
    assert splits.preprocessing["classes"] == ["cat", "dog", "zebra"]
    assert splits.num_classes == 3
    assert splits.train.targets[:3].tolist() == [2, 0, 1]  # zebra, cat, dog


def test_num_classes_option_and_npz_archives(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    arrays = {f"s{i}": np.load(root / "vec" / f"s{i}.npy") for i in range(16)}
    np.savez(root / "vec.npz", **arrays)
    table = read_manifest(root)
    for row in table[1:]:
        row[3] = "vec.npz"
    write_manifest(root, table[0], table[1:])
    splits = load_folder(root, standardize=False, num_classes=5)
    assert splits.num_classes == 5
    assert np.array_equal(splits.test.inputs["vec"][0].numpy(), arrays["s12"])
    edit_manifest(root, 3, "vec", "")  # npz rows may be missing too
    assert not load_folder(root).train.mask[3, 0]


def test_manifest_may_have_a_bom_and_blank_lines(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    text = (root / "manifest.csv").read_text()
    (root / "manifest.csv").write_text("\ufeff" + text + "\n\n", encoding="utf-8")
    assert len(load_folder(root).train) == 8


# -- bad input: one clear error, naming the line / sample / file ---------------------------------------------------


def test_missing_manifest(tmp_path: Path) -> None:
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(FileNotFoundError, match="manifest .*manifest.csv: file not found"):
        load_folder(tmp_path / "empty")


def test_manifest_that_is_not_utf8_csv(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    (root / "manifest.csv").write_bytes(b"sample_id,label,split,vec,img\n\xff\xfe,0,train,,\n")
    with pytest.raises(ValueError, match="manifest.csv: not a readable UTF-8 CSV"):
        load_folder(root)


@pytest.mark.parametrize("column", ["sample_id", "label", "split"])
def test_missing_required_column(tmp_path: Path, column: str) -> None:
    root = write_folder(tmp_path / "d")
    table = read_manifest(root)
    k = table[0].index(column)
    write_manifest(root, [c for i, c in enumerate(table[0]) if i != k], [r[:k] + r[k + 1 :] for r in table[1:]])
    with pytest.raises(ValueError, match=rf"missing column\(s\) \['{column}'\]"):
        load_folder(root)


def test_fewer_than_two_modalities_and_bad_names(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", shapes={"vec": (4,)})
    with pytest.raises(ValueError, match="at least 2 modality columns"):
        load_folder(root)
    root = write_folder(tmp_path / "e", shapes={"vec": (4,), "my.img": (3,)})
    with pytest.raises(ValueError, match=r"my\.img"):
        load_folder(root)


def test_duplicate_column(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    table = read_manifest(root)
    write_manifest(root, [*table[0], "vec"], [[*r, r[3]] for r in table[1:]])
    with pytest.raises(ValueError, match=r"duplicate column\(s\) \['vec'\]"):
        load_folder(root)


def test_unknown_split_name(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    edit_manifest(root, 5, "split", "validation")
    with pytest.raises(ValueError, match=r"line 7 \(sample 's5'\): unknown split 'validation'"):
        load_folder(root)


def test_empty_split(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", splits=(8, 0, 4))
    with pytest.raises(ValueError, match="the 'val' split has no rows"):
        load_folder(root)


def test_duplicate_sample_id(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    edit_manifest(root, 4, "sample_id", "s1")
    with pytest.raises(ValueError, match=r"line 6 \(sample 's1'\): duplicate sample_id, first used on line 3"):
        load_folder(root)


def test_wrong_cell_count(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    (root / "manifest.csv").write_text((root / "manifest.csv").read_text() + "s99,1,train\n")
    with pytest.raises(ValueError, match="line 18: 3 cells, the header has 5"):
        load_folder(root)


def test_sample_with_every_modality_missing(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", missing={3: ["vec", "img"]})
    with pytest.raises(ValueError, match=r"sample 's3'\): every modality is missing"):
        load_folder(root)


def test_modality_missing_from_every_training_sample(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", missing={i: ["img"] for i in range(8)})
    with pytest.raises(ValueError, match="modality 'img' is missing for every training sample"):
        load_folder(root)


@pytest.mark.parametrize(("label", "message"), [("-1", "label -1 outside the classes >= 0"), ("", "empty label")])
def test_negative_or_empty_label(tmp_path: Path, label: str, message: str) -> None:
    root = write_folder(tmp_path / "d")
    edit_manifest(root, 2, "label", label)
    with pytest.raises(ValueError, match=rf"sample 's2'\): {message}"):
        load_folder(root)


def test_label_outside_configured_classes(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    edit_manifest(root, 2, "label", "7")
    with pytest.raises(ValueError, match=r"sample 's2'\): label 7 outside the classes 0..2"):
        load_folder(root, num_classes=3)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        load_folder(root, num_classes=1)


def test_more_class_names_than_classes(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", num_classes=3)
    table = read_manifest(root)
    column = table[0].index("label")
    write_manifest(root, table[0], [[*r[:column], "abc"[int(r[column])], *r[column + 1 :]] for r in table[1:]])
    with pytest.raises(ValueError, match="3 class names .* but num_classes is 2"):
        load_folder(root, num_classes=2)


@pytest.mark.parametrize("typo", ["l", "1.0", "one"])
def test_a_label_typo_among_integers_names_the_rows_instead_of_adding_a_class(tmp_path: Path, typo: str) -> None:
    root = write_folder(tmp_path / "d")
    edit_manifest(root, 4, "label", typo)
    with pytest.raises(ValueError, match="labels are integers and 1 are not") as caught:
        load_folder(root)
    assert f"line 6 (sample 's4'): {typo!r}" in str(caught.value)


def test_2d_shape_errors_quote_the_files_shape(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    good = np.load(root / "img" / "s0.npy")
    np.save(root / "img" / "s3.npy", np.zeros((good.shape[0], good.shape[1] + 1), np.float32))
    with pytest.raises(ValueError, match="modality 'img'") as caught:
        load_folder(root)
    wrong, right = [good.shape[0], good.shape[1] + 1], list(good.shape)
    assert f"has shape {wrong}, but 15 other samples (e.g. 's0') have {right}" in str(caught.value)


def test_listed_file_is_missing(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    (root / "img" / "s6.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"line 8 \(sample 's6', modality 'img'\): .*s6.npy: file not found"):
        load_folder(root)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"0.5, 1.5, 2.5, 3.5\n", "not a NumPy .npy file (it does not start with the .npy header; it looks like text"),
        (b"\x00\xff\xfe binary", "not a NumPy .npy file (it does not start with the .npy header)"),
        (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", "not a readable numeric"),
    ],
    ids=["text", "binary", "truncated"],
)
def test_corrupt_or_truncated_npy(tmp_path: Path, content: bytes, message: str) -> None:
    root = write_folder(tmp_path / "d")
    (root / "vec" / "s2.npy").write_bytes(content)
    with pytest.raises(ValueError, match=r"sample 's2', modality 'vec'\): .*s2.npy: ") as caught:
        load_folder(root)
    assert message in str(caught.value) and "allow_pickle" not in str(caught.value)


def test_truncated_npy_data(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    path = root / "img" / "s4.npy"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"sample 's4', modality 'img'\): .*holds 566: truncated or damaged"):
        load_folder(root)


def test_inconsistent_shape(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    np.save(root / "vec" / "s5.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(
        ValueError,
        match=r"sample 's5', modality 'vec'\): vec/s5.npy has shape \[5\], but 15 other samples \(e.g. 's0'\)",
    ):
        load_folder(root)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array(["a", "b", "c", "d"]), "dtype <U1 is not numeric"),
        (np.array([1, None, 2, 3], dtype=object), r"holds Python objects \(a pickled object array\), not numbers"),
        (np.array([1.0, np.nan, 0.0, 0.0]), "1 NaN or infinite"),
        (np.array([np.inf, 0.0, -np.inf, 0.0]), "2 NaN or infinite"),
        (np.array(3.0), "a scalar"),
    ],
    ids=["strings", "objects", "nan", "inf", "scalar"],
)
def test_non_numeric_or_non_finite_values(tmp_path: Path, array: np.ndarray, message: str) -> None:
    root = write_folder(tmp_path / "d")
    np.save(root / "vec" / "s13.npy", array, allow_pickle=True)
    with pytest.raises(ValueError, match=rf"sample 's13', modality 'vec'\): .*{message}"):
        load_folder(root)


def test_unsupported_file_type_and_npz_without_the_sample(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    edit_manifest(root, 1, "vec", "vec/s1.txt")
    with pytest.raises(ValueError, match=r"sample 's1', modality 'vec'\): .*unsupported file type '.txt'"):
        load_folder(root)
    np.savez(root / "vec.npz", s0=np.zeros(4))
    edit_manifest(root, 1, "vec", "vec.npz")
    with pytest.raises(ValueError, match=r"sample 's1', modality 'vec'\): .*vec.npz: no array named 's1'"):
        load_folder(root)
    (root / "vec.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"vec.npz: not a readable .npz archive"):
        load_folder(root)


def test_cli_reports_bad_data_and_writes_nothing(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d")
    np.save(root / "vec" / "s5.npy", np.full(4, np.nan))
    runner = CliRunner()
    result = runner.invoke(app, ["data", "folder", "--data-dir", str(root)])
    assert result.exit_code == 2
    assert "sample 's5'" in result.output and "NaN" in result.output
    out = tmp_path / "bench"
    result = runner.invoke(app, ["benchmark", "folder", "--data-dir", str(root), "--seeds", "0", "--out", str(out)])
    assert result.exit_code == 2 and "sample 's5'" in result.output
    assert "simmlm/configs/folder.yaml (simmlm's own for folder" in result.output  # says which config it uses
    assert not out.exists()
    result = runner.invoke(app, ["train", "--set", "data.dataset=folder", "--data-dir", str(root), "--out", str(out)])
    assert result.exit_code == 2 and not out.exists()


def test_cli_data_folder_prints_the_splits(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", missing={0: ["img"]})
    result = CliRunner().invoke(app, ["data", "folder", "--data-dir", str(root), "--set", "data.standardize=false"])
    assert result.exit_code == 0, result.output
    assert "train 8  val 4  test 4" in result.output
    assert "vec [4], img [1, 12, 12]" in result.output and "not standardised" in result.output
    assert "simmlm/configs/folder.yaml (simmlm's own for folder" in result.output
    assert "warning" not in result.output  # min_steps: 300 steps per stage, whatever the size
    result = CliRunner().invoke(app, ["data", "folder", "--data-dir", str(root), "--set", "train.min_steps=0"])
    # 8 training samples, batch 32, 15 stage-1 epochs: 15 optimiser steps, far too few
    assert (
        "warning: 8 training samples with batch 32 make 1 optimiser step(s) per epoch, 15 in stage 1" in result.output
    )
    fine = CliRunner().invoke(
        app,
        [
            "data",
            "folder",
            "--data-dir",
            str(root),
            "--set",
            "train.batch_size=2",
            "--set",
            "train.stage1.epochs=25",
            "--set",
            "train.min_steps=0",
        ],
    )
    assert fine.exit_code == 0 and "warning" not in fine.output  # 4 steps x 25 epochs = 100


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_manifest_paths_outside_the_data_folder_are_refused_unless_allowed(tmp_path: Path, kind: str) -> None:
    """A ``..`` path, an absolute path and a symlink to a file outside the data folder were read silently before."""
    root = write_folder(tmp_path / "d")
    outside = tmp_path / "elsewhere.npy"
    np.save(outside, np.load(root / "vec" / "s1.npy"))
    cell = {"dotdot": "../elsewhere.npy", "absolute": str(outside), "symlink": "vec/link.npy"}[kind]
    if kind == "symlink":
        (root / "vec" / "link.npy").symlink_to(outside)
    edit_manifest(root, 1, "vec", cell)
    with pytest.raises(ValueError, match=r"line 3 \(sample 's1', modality 'vec'\): .* leads outside the data folder"):
        load_folder(root)
    load_folder(root, outside_paths=True)  # the setting reads it


def test_an_npy_header_claiming_more_than_the_file_holds_is_one_error(tmp_path: Path) -> None:
    """A header claiming 1e11 floats asked for 373 GiB (a MemoryError traceback) before; now one line."""
    root = write_folder(tmp_path / "d")
    path = root / "vec" / "s2.npy"
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (10**11,)})
        handle.write(b"\0" * 64)
    with pytest.raises(ValueError, match=r"header claims an array of shape \[100000000000\] .* truncated or damaged"):
        load_folder(root)


def test_class_names_that_differ_only_in_case_or_spaces_are_refused(tmp_path: Path) -> None:
    """``Dog`` among ``dog`` silently became a new class before."""
    root = write_folder(tmp_path / "d")
    table = read_manifest(root)
    for row in table[1:]:
        row[1] = "dog" if row[1] == "0" else "cat"
    table[3][1] = "Dog"
    write_manifest(root, table[0], table[1:])
    with pytest.raises(ValueError, match=r"class names 'Dog', 'dog' differ only in case or spaces \(e.g. line 4\)"):
        load_folder(root)


def test_a_class_without_training_samples_is_refused_and_counts_are_described(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", num_classes=2)
    splits = load_folder(root)
    assert "samples per class (train/val/test): 0 4/2/2, 1 4/2/2" in splits.description
    edit_manifest(root, 12, "label", "2")  # a test sample of a class no training sample has
    with pytest.raises(
        ValueError, match=r"line 14 \(sample 's12'\): class '2' is in the test split but in no training"
    ):
        load_folder(root)
