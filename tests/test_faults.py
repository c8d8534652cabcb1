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
