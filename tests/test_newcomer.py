"""What a newcomer bringing their own data meets: messages, packaged configs, schedules for small data, timings.

Each test here failed on the code before it was written (issue: "Your own data, many modalities").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.datasets.folder.synthetic import write_example_dataset
from simmlm.engine.config import RunConfig, find_config, load_config
from simmlm.engine.runs import build_model, save_checkpoint
from simmlm.engine.schedule import schedule_warning, stage_epochs

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated")
TINY = ["--set", "train.stage1.epochs=1", "--set", "train.stage2.epochs=1", "--set", "train.min_steps=0"]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_dataset(tmp_path_factory.mktemp("newcomer") / "data", 3, 60)


def _fails(*args: str) -> str:
    """Run the CLI, expecting the one-line error exit (2) and no traceback; returns the output."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    return " ".join(result.output.split())  # rich may wrap long lines


def test_bad_seeds_are_one_clear_error_and_nothing_is_written(example: Path, tmp_path: Path) -> None:
    out = _fails("benchmark", "folder", "--data-dir", str(example), "--seeds", "0,x", "--out", str(tmp_path / "o"))
    assert "--seeds expects comma-separated integers such as 0,1,2; got '0,x'" in out
    assert "invalid literal" not in out and not (tmp_path / "o").exists()


def test_a_wrong_expert_kind_fails_before_anything_is_written(example: Path, tmp_path: Path) -> None:
    out = _fails(
        "train", "--set", "data.dataset=folder", "--data-dir", str(example), "--set", "model.expert=bogus",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert "model.expert: unknown expert kind 'bogus'; choose one of auto, lenet" in out
    assert not (tmp_path / "run").exists()


def test_expert_options_a_builder_rejects_leave_no_checkpoint_folder(example: Path, tmp_path: Path) -> None:
    out = _fails(
        "train", "--set", "data.dataset=folder", "--data-dir", str(example), "--set", "model.expert=mlp",
        "--set", "model.expert_options={width: 3}", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert "expert 'mlp' has no option 'width'; its options: ['hidden', 'dropout']" in out
    assert not (tmp_path / "run").exists()


def test_config_key_typos_on_the_command_line_suggest_the_key(example: Path) -> None:
    out = _fails("data", "folder", "--data-dir", str(example), "--set", "train.epoch=3")
    assert "unknown key train.epoch (did you mean train.stage1.epochs or train.stage2.epochs?)" in out
    assert "Extra inputs are not permitted" not in out


def test_predict_on_a_folder_without_model_pt_says_what_to_give(tmp_path: Path) -> None:
    out = _fails("predict", str(tmp_path), "--input", "image=x.npy")
    assert f"{tmp_path} holds no model.pt: give the folder of a finished run" in out and "Errno" not in out
    (tmp_path / "checkpoints").mkdir()
    out = _fails("predict", str(tmp_path), "--input", "image=x.npy")
    assert "an unfinished run; finish it with --resume" in out


def test_predict_lists_probabilities_by_class_name(tmp_path: Path) -> None:
    shapes = {"image": (1, 16, 16), "sensor1": (12,)}
    cfg = RunConfig.model_validate({"data": {"dataset": "folder"}})
    classes = ["cat", "dog", "owl"]
    preprocessing = {"dataset": "folder", "classes": classes, "shapes": {k: list(v) for k, v in shapes.items()}}
    save_checkpoint(
        tmp_path / "run" / "model.pt",
        build_model(cfg, shapes, 3),
        cfg,
        input_shapes={k: list(v) for k, v in shapes.items()},
        num_classes=3,
        modalities=list(shapes),
        preprocessing={**preprocessing, "standardize": {}},
    )
    np.save(tmp_path / "s.npy", np.zeros(12, np.float32))
    np.save(tmp_path / "flat.npy", np.zeros((16, 15), np.float32))
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "--input", f"sensor1={tmp_path / 's.npy'}"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("probabilities:"))
    assert [item.split(":")[0] for item in line.split()[1:]] == classes
    out = _fails("predict", str(tmp_path / "run"), "--input", f"image={tmp_path / 'flat.npy'}")
    assert "image has shape [16, 15], the model expects [1, 16, 16] (or a 2-D [16, 16] array" in out


def test_help_does_not_point_to_files_outside_the_package() -> None:
    for command in ("train", "benchmark", "data"):
        text = CliRunner().invoke(app, [command, "--help"]).output
        assert "DATA.md" not in text and "manifest.csv" in text, command


def test_methods_says_what_the_slow_ones_cost() -> None:
    text = CliRunner().invoke(app, ["methods"]).output
    lines = text.splitlines()
    for name in ("mmp", "dream"):
        after = lines[next(i for i, line in enumerate(lines) if line.strip().startswith(name)) + 1]
        assert "cost: about" in after and "with 6" in after, name


def test_benchmark_outside_the_repository_uses_the_packaged_config(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    out = CliRunner().invoke(app, ["data", "folder", "--data-dir", str(example)]).output
    assert "simmlm/configs/folder.yaml (simmlm's own for folder" in out
    assert load_config("folder").train.min_steps > 0  # a packaged config by name
    out = _fails("data", "folder", "--data-dir", str(example), "--config", "foldr")
    assert "config 'foldr' not found" in out and "folder" in out


def test_min_steps_raises_the_epochs_of_small_data_only() -> None:
    train = load_config(None, {"train.batch_size": 32, "train.min_steps": 300}).train
    assert stage_epochs(15, 36, train) == 150  # 2 steps per epoch
    assert stage_epochs(15, 48_000, train) == 15  # 1500 steps per epoch: as configured
    assert stage_epochs(0, 36, train) == 0  # a stage that is off stays off
    assert schedule_warning(36, train) is None
    assert "--set train.min_steps" in (schedule_warning(36, train.model_copy(update={"min_steps": 0})) or "")


def test_shared_stage_one_time_is_reported_apart_from_own_training(tmp_path: Path) -> None:
    from conftest import synthetic_splits
    from simmlm.engine.train import train
    from simmlm.reporting.summary import summary_markdown

    cache: dict = {}
    splits = synthetic_splits(24)
    runs = {}
    for method in ("simmlm", "dmome"):
        cfg = load_config(None, {"method": method, "train.stage1.epochs": 1, "train.stage2.epochs": 1})
        runs[method] = train(cfg, splits, progress=False, cache=cache)
    assert runs["simmlm"].shared_seconds == 0.0
    assert 0 < runs["dmome"].shared_seconds < runs["dmome"].train_seconds
    method = {
        "subsets": {"a": {"accuracy": [0.5], "ece": [0.1], "sce": [0.1]}},
        "average_accuracy": [0.5],
        "counterintuitive_rate": [0.0],
        "gate_weights": {},
        "train_seconds": [100.0],
        "shared_seconds": [95.0],
        "params": 1,
        "flops_full": 1,
        "mofe_lambda": 0.0,
        "mofe_hinge_mean": [0.0],
        "mofe_active_fraction": [0.0],
    }
    summary = {"dataset": "x", "seeds": [0], "protocol": "", "methods": {"dmome": method}}
    assert "| 5.0 (+95.0 reused) |" in summary_markdown(summary)


def test_train_piped_to_a_file_shows_one_line_per_epoch(example: Path, tmp_path: Path) -> None:
    """Piped (a file, `tee`, a pager), `train` has no progress bar to show: it prints flushed lines per epoch."""
    command = [sys.executable, "-m", "simmlm.cli", "train", "-c", "folder", "--data-dir", str(example)]
    command += ["--out", str(tmp_path / "run"), *TINY]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    lines = done.stdout.splitlines()
    assert lines[0] == f"config: {find_config('folder')}"
    assert any(line.strip().startswith("epoch 1/1: stage1/loss") for line in lines)
    assert any(line.strip().startswith("epoch 1/1: stage2/loss") for line in lines)
    assert "\r" not in done.stdout + done.stderr  # no progress bar redrawn in place
