"""Bad input a user can cause: one line naming the file or option, exit status 2, nothing trained or written.

Each case here gave a traceback (or silently did the wrong thing) before; the messages are part of the contract.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simmlm.cli import app


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "ex"
    code, output = _run("example-data", str(root), "--modalities", "2", "--samples", "60")
    assert code == 0, output
    return root


def test_a_yaml_syntax_error_names_the_config_file(example: Path, tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("train:\n  seed: [1, 2\n")
    code, output = _run(
        "benchmark", "folder", "--data-dir", str(example), "-c", str(config), "--out", str(tmp_path / "o")
    )
    assert code == 2 and f"{config}: not a readable YAML file" in output and "Traceback" not in output
    assert not (tmp_path / "o").exists()


def test_a_set_value_that_is_not_yaml_is_one_line(example: Path, tmp_path: Path) -> None:
    code, output = _run(
        "benchmark", "folder", "--data-dir", str(example), "--set", "train.seed=[1,", "--out", str(tmp_path / "o")
    )
    assert code == 2 and "--set 'train.seed=[1,': the value is not YAML" in output and "Traceback" not in output


def test_out_naming_a_file_is_refused(example: Path, tmp_path: Path) -> None:
    out = tmp_path / "a-file"
    out.write_text("keep me")
    code, output = _run("benchmark", "folder", "--data-dir", str(example), "--seeds", "0", "--out", str(out))
    assert code == 2 and f"{out} is a file, not a folder" in output and out.read_text() == "keep me"


def test_repeated_seeds_are_refused(example: Path, tmp_path: Path) -> None:
    code, output = _run("benchmark", "folder", "--data-dir", str(example), "--seeds", "0,1,0", "--out", str(tmp_path))
    assert code == 2 and "repeats 0; give each seed once" in output


def test_a_truncated_summary_is_named_by_report(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{\n  "dataset": "folder",\n')
    code, output = _run("report", str(tmp_path))
    assert code == 2 and f"{tmp_path / 'summary.json'} is not readable JSON" in output and "Traceback" not in output


def test_a_failed_checkpoint_write_is_an_os_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's zip writer reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc]``."""
    import torch

    from simmlm.fileio import torch_save_atomic

    def full_disk(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"could not write .*model\.pt \(is the disk full"):
        torch_save_atomic({"a": 1}, tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []  # no half-written file left behind


def test_help_shows_the_default_output_folders() -> None:
    """Square brackets in help texts are rich markup: "[default: …]" vanished from --help before."""
    for command, default in (("benchmark", "results/folder-NAME"), ("robustness", "results/folder-NAME-robustness")):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert default in result.output, command


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model.expert={imag: mlp}", "model.expert names modalities the data does not have: ['imag']"),
        ("model.expert=gru", "modality 'image': expert 'gru' needs a [T, D] feature sequence, got [1, 16, 16]"),
        ("model.expert_options={widht: 3}", "modality 'image': expert 'lenet' has no option 'widht'"),
    ],
)
def test_an_expert_that_cannot_read_the_data_is_refused_before_training(
    example: Path, tmp_path: Path, setting: str, message: str
) -> None:
    out = tmp_path / "o"
    code, output = _run(
        "benchmark", "folder", "--data-dir", str(example), "--seeds", "0", "--out", str(out), "--set", setting
    )
    assert code == 2 and message in output and "training" not in output and not out.exists()


def test_a_finished_benchmark_with_another_config_is_not_overwritten(example: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    quick = ["benchmark", "folder", "--data-dir", str(example), "--methods", "late_fusion", "--seeds", "0"]
    quick += ["--out", str(out), "--set", "train.stage1.epochs=1", "--set", "train.stage2.epochs=1"]
    assert _run(*quick)[0] == 0
    model = (out / "runs" / "late_fusion-seed0" / "model.pt").read_bytes()
    code, output = _run(*quick, "--set", "train.stage1.epochs=2")
    assert code == 2 and "holds a finished run late_fusion-seed0 made with another config" in output
    assert "differs in train.stage1.epochs" in output and "--overwrite" in output
    assert (out / "runs" / "late_fusion-seed0" / "model.pt").read_bytes() == model
    other = tmp_path / "other"  # a copy of the data in another folder: another experiment
    shutil.copytree(example, other)
    code, output = _run(*[str(other) if a == str(example) else a for a in quick])
    assert code == 2 and "holds a benchmark of another data folder" in output
    assert _run(*quick)[0] == 0  # the same config again: rerun in place
    assert _run(*quick, "--set", "train.stage1.epochs=2", "--overwrite")[0] == 0


def test_predictions_name_their_test_samples(example: Path, tmp_path: Path) -> None:
    """``predictions.npz`` holds the manifest's sample ids, so a prediction is checked without assuming an order."""
    import csv

    import numpy as np

    out = tmp_path / "o"
    quick = [
        "--methods",
        "late_fusion",
        "--seeds",
        "0",
        "--set",
        "train.stage1.epochs=1",
        "--set",
        "train.stage2.epochs=1",
    ]
    code, output = _run("benchmark", "folder", "--data-dir", str(example), "--out", str(out), *quick)
    assert code == 0, output
    with (example / "manifest.csv").open() as fh:
        test_ids = [row["sample_id"] for row in csv.DictReader(fh) if row["split"] == "test"]
    with np.load(out / "runs" / "late_fusion-seed0" / "predictions.npz") as arrays:
        assert arrays["sample_ids"].tolist() == test_ids and arrays["probs"].shape[1] == len(test_ids)


def test_a_single_class_split_is_warned_about(example: Path, tmp_path: Path) -> None:
    data = tmp_path / "one-class-val"
    shutil.copytree(example, data)
    manifest = data / "manifest.csv"
    lines = manifest.read_text().splitlines()
    head, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    label, split = head.index("label"), head.index("split")
    first_val = next(r[label] for r in rows if r[split] == "val")
    kept = [r for r in rows if r[split] != "val" or r[label] == first_val]
    manifest.write_text("\n".join(",".join(r) for r in [head, *kept]) + "\n")
    result = CliRunner().invoke(app, ["data", "folder", "--data-dir", str(data)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0 and "warning: every val sample has the same class" in output
    result = CliRunner().invoke(app, ["data", "folder", "--data-dir", str(example)])
    assert result.exit_code == 0 and "same class" not in result.output


# ---------------------------------------------------------------- a tour of about 200 bad inputs, its findings


def _copy(example: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(example, data)
    return data


def _manifest_rows(data: Path) -> tuple[list[str], list[list[str]]]:
    lines = (data / "manifest.csv").read_text().splitlines()
    return lines[0].split(","), [line.split(",") for line in lines[1:]]


def _write_manifest(data: Path, head: list[str], rows: list[list[str]]) -> None:
    (data / "manifest.csv").write_text("\n".join(",".join(r) for r in [head, *rows]) + "\n")


def test_a_symlink_loop_in_the_data_folder_is_one_line(example: Path, tmp_path: Path) -> None:
    data = _copy(example, tmp_path)
    head, rows = _manifest_rows(data)
    cell = rows[0][head.index("image")] or next(r[head.index("image")] for r in rows if r[head.index("image")])
    (data / cell).unlink()
    (data / cell).symlink_to((data / cell).name)
    code, output = _run("data", "folder", "--data-dir", str(data))
    assert code == 2 and "a symlink loop, not a file" in output and "Traceback" not in output


def test_a_class_alone_or_an_array_of_no_values_is_refused(example: Path, tmp_path: Path) -> None:
    import numpy as np

    data = _copy(example, tmp_path)
    head, rows = _manifest_rows(data)
    _write_manifest(data, head, [[*r[:1], "0", *r[2:]] for r in rows])
    code, output = _run("data", "folder", "--data-dir", str(data))
    assert code == 2 and "every sample has the class '0'; a classifier needs two or more" in output
    _write_manifest(data, head, rows)
    cells = [r[head.index("sensor1")] for r in rows if r[head.index("sensor1")]]
    for cell in cells:
        np.save(data / cell, np.zeros((0,), np.float32))
    code, output = _run("data", "folder", "--data-dir", str(data))
    assert code == 2 and "an array of no values (shape [0])" in output


def test_the_odd_shape_out_is_named_not_the_first_sample(example: Path, tmp_path: Path) -> None:
    import numpy as np

    data = _copy(example, tmp_path)
    head, rows = _manifest_rows(data)
    column = head.index("sensor1")
    first = next(r for r in rows if r[column])
    np.save(data / first[column], np.zeros((5,), np.float32))
    code, output = _run("data", "folder", "--data-dir", str(data))
    assert code == 2 and f"(sample {first[0]!r}, modality 'sensor1')" in output and "has shape [5], but" in output


def test_values_near_float32s_limits(example: Path, tmp_path: Path) -> None:
    """Large finite float32 values are standardised without overflow; a float64 beyond float32's range is named as
    such (it is not NaN)."""
    import numpy as np

    from simmlm.datasets.folder.loader import load_folder

    data = _copy(example, tmp_path)
    head, rows = _manifest_rows(data)
    cells = [r[head.index("sensor1")] for r in rows if r[head.index("sensor1")]]
    for cell in cells:
        np.save(data / cell, np.load(data / cell) * np.float32(1e37))
    splits = load_folder(data)
    assert torch_finite(splits.train.inputs["sensor1"]) and float(splits.train.inputs["sensor1"].abs().max()) < 100
    np.save(data / cells[0], np.full((12,), 1e300))
    code, output = _run("data", "folder", "--data-dir", str(data))
    assert code == 2 and "values beyond float32's range" in output and "NaN" not in output


def torch_finite(tensor: object) -> bool:
    import torch

    return bool(torch.isfinite(tensor).all())  # type: ignore[arg-type]


def test_a_modality_no_test_sample_has_is_warned_about(example: Path, tmp_path: Path) -> None:
    data = _copy(example, tmp_path)
    head, rows = _manifest_rows(data)
    column, split = head.index("sensor1"), head.index("split")
    kept = [r for r in rows if r[split] != "test" or any(r[c] for c in range(3, len(head)) if c != column)]
    _write_manifest(
        data, head, [[*r[:column], "" if r[split] == "test" else r[column], *r[column + 1 :]] for r in kept]
    )
    code, output = _run("data", "folder", "--data-dir", str(data))
    assert code == 0 and "warning: no test sample has sensor1" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["benchmark", "folder", "--methods", ""], "--methods is empty; give one or more of"),
        (["benchmark", "folder", "--methods", ","], "--methods is empty"),
        (["robustness", "folder", "--methods", ""], "--methods is empty"),
        (["benchmark", "folder", "--seeds=-1"], "--seeds: a seed is an integer from 0 to 4294967295, got -1"),
        (["benchmark", "folder", "--seeds", "99999999999"], "got 99999999999"),
        (
            ["benchmark", "folder", "--out", "/proc/simmlm-cannot"],
            "cannot create the output folder /proc/simmlm-cannot",
        ),
        (["benchmark", "folder", "--config", "/tmp"], "config /tmp: a folder, not a file"),
    ],
)
def test_bad_options_are_one_line(example: Path, tmp_path: Path, args: list[str], message: str) -> None:
    args = [*args, "--data-dir", str(example)] + ([] if "--out" in args else ["--out", str(tmp_path / "o")])
    code, output = _run(*args)
    assert code == 2 and message in output and "Traceback" not in output
    assert not (tmp_path / "o").exists()


def test_the_data_folder_being_a_file_is_said(example: Path) -> None:
    code, output = _run("data", "folder", "--data-dir", str(example / "manifest.csv"))
    assert code == 2 and "is a file, not a folder" in output


def test_costs_needs_a_batch_and_a_repeat() -> None:
    for option in ("--repeats", "--batch"):
        code, output = _run("costs", option, "0")
        assert code == 2 and "Traceback" not in output


def test_a_bad_robustness_suite_is_refused_before_training(example: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    for text, message in [
        ("train_missing: [unclosed\n", "not a readable YAML file"),
        ("train_missing:\n  fractions: [7]\n", "train_missing.fractions.0: Input should be less than or equal to 1"),
    ]:
        suite = tmp_path / "suite.yaml"
        suite.write_text(text)
        code, output = _run(
            "robustness", "folder", "--data-dir", str(example), "--out", str(out), "--suite", str(suite)
        )
        assert code == 2 and message in output and "Traceback" not in output and not out.exists()


def test_training_that_diverges_says_so(example: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    quick = ["--methods", "late_fusion", "--seeds", "0", "--set", "train.stage1.epochs=2", "--set", "train.min_steps=0"]
    code, output = _run(
        "benchmark", "folder", "--data-dir", str(example), "--out", str(out), *quick, "--set", "train.stage1.lr=1e30"
    )
    assert code == 2 and "training diverged: stage1/loss is nan after epoch 1" in output
    assert not (out / "summary.json").exists()


def test_report_given_the_summary_file_reports_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mvmnist"
    shutil.copytree(Path(__file__).parents[1] / "results" / "mvmnist", folder, ignore=shutil.ignore_patterns("runs"))
    code, output = _run("report", str(folder / "summary.json"))
    assert code == 0 and (folder / "report.html").is_file()
