"""``simmlm train --resume`` and ``simmlm benchmark --resume`` on synthetic data (the loader is patched)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from conftest import synthetic_splits
from simmlm.cli import app
from simmlm.engine.stages import CooperativeStage
from test_resume import Killed

CONFIG = """
model: {expert: {a: lenet, b: mlp}}
train:
  seed: 2
  batch_size: 8
  stage1: {epochs: 2}
  stage2: {epochs: 3}
  augment: {a: {kind: affine}}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    splits = synthetic_splits(36)
    monkeypatch.setattr("simmlm.engine.tasks.load_splits", lambda data: splits)  # simmlm train
    monkeypatch.setattr("simmlm.engine.tasks.ClassificationTask.load_splits", lambda self: splits)  # benchmark
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def _kill_stage2_at(monkeypatch: pytest.MonkeyPatch, runs: set[int], epoch: int = 1) -> None:
    """Kill stage 2 in epoch ``epoch`` of the stage-2 fits numbered ``runs`` (0 = the first one)."""
    count = {"fits": -1}

    def on_train_start(self: Any) -> None:
        count["fits"] += 1

    def on_train_batch_start(self: Any, batch: Any, batch_idx: int) -> None:
        if count["fits"] in runs and self.current_epoch == epoch and batch_idx == 1:
            raise Killed

    monkeypatch.setattr(CooperativeStage, "on_train_start", on_train_start)
    monkeypatch.setattr(CooperativeStage, "on_train_batch_start", on_train_batch_start)


def _metrics(run: Path) -> dict[str, Any]:
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("train_seconds")
    return metrics


def test_train_resume_ends_like_an_uninterrupted_run(
    tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    base = ["train", "--config", str(config)]
    assert runner.invoke(app, [*base, "--out", str(tmp_path / "ref")]).exit_code == 0
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill_stage2_at(patch, {0})
        killed = runner.invoke(app, [*base, "--out", str(run)])
    assert isinstance(killed.exception, Killed)
    assert (run / "checkpoints" / "stage2-last.ckpt").is_file() and not (run / "metrics.json").exists()
    resumed = runner.invoke(app, [*base, "--out", str(run), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert _metrics(run) == _metrics(tmp_path / "ref")
    reference = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["state_dict"]
    for key, value in torch.load(run / "model.pt", weights_only=True)["state_dict"].items():
        assert torch.equal(value, reference[key]), key
    assert not (run / "checkpoints").exists()  # removed once model.pt and metrics.json are written


def test_benchmark_resume_loads_finished_runs_and_continues_the_interrupted_one(
    tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    base = ["benchmark", "avmnist", "--methods", "simmlm", "--seeds", "0,1", "--config", str(config)]
    assert runner.invoke(app, [*base, "--out", str(tmp_path / "ref")]).exit_code == 0
    out = tmp_path / "bench"
    with monkeypatch.context() as patch:
        _kill_stage2_at(patch, {1})  # seed 0 finishes, seed 1 is killed in stage 2
        assert isinstance(runner.invoke(app, [*base, "--out", str(out)]).exception, Killed)
    assert (out / "runs" / "simmlm-seed0" / "metrics.json").is_file()
    assert (out / "runs" / "simmlm-seed1" / "checkpoints" / "stage1-done.pt").is_file()
    resumed = runner.invoke(app, [*base, "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "simmlm seed 0: finished before" in resumed.output
    for seed in (0, 1):
        assert _metrics(out / "runs" / f"simmlm-seed{seed}") == _metrics(
            tmp_path / "ref" / "runs" / f"simmlm-seed{seed}"
        )
    summary, reference = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "ref"))
    for s in (summary, reference):
        s["methods"]["simmlm"].pop("train_seconds")
    assert summary == reference
    # A finished run trained with another config is not silently reused.
    other = runner.invoke(app, [*base, "--out", str(out), "--resume", "--set", "train.stage2.epochs=1"])
    assert other.exit_code == 2 and "differs in train.stage2.epochs" in other.output


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_a_benchmark_with_its_status_one_line_and_the_resume_command(
    tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch, signum: int, status: int
) -> None:
    """A scheduler's SIGTERM (Lightning turns it into exit status 0) and Ctrl-C (1) end a benchmark with 143 / 130,
    one line naming what stopped and the command that continues it; that command ends like an uninterrupted run."""
    runner = CliRunner()
    base = ["benchmark", "avmnist", "--methods", "simmlm", "--seeds", "0", "--config", str(config)]
    out = tmp_path / "bench"

    def signal_in_stage2(self: Any, batch: Any, batch_idx: int) -> None:
        if self.current_epoch == 1 and batch_idx == 1:
            os.kill(os.getpid(), signum)

    with monkeypatch.context() as patch:
        patch.setattr(CooperativeStage, "on_train_batch_start", signal_in_stage2)
        patch.setattr("sys.argv", ["simmlm", *base, "--out", str(out)])
        killed = runner.invoke(app, [*base, "--out", str(out)])
    assert killed.exit_code == status, killed.output
    said = " ".join(killed.output.split())
    name = signal.Signals(signum).name
    assert f"interrupted ({name}): the benchmark in {out} stopped" in said
    assert f"--out {out} --resume" in said and not (out / "summary.json").exists()
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handlers are back
    resumed = runner.invoke(app, [*base, "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    reference = runner.invoke(app, [*base, "--out", str(tmp_path / "ref")])
    assert reference.exit_code == 0
    assert _metrics(out / "runs" / "simmlm-seed0") == _metrics(tmp_path / "ref" / "runs" / "simmlm-seed0")


def test_an_output_folder_is_owned_by_one_run_at_a_time(tmp_path: Path, config: Path) -> None:
    """A second benchmark on a folder another live run owns is refused at once (before, it deleted the first one's
    checkpoints); a lock left by a process that is gone is taken over; a finished run leaves no lock behind."""
    import subprocess
    import sys

    from simmlm.fileio import LOCK_NAME, folder_lock

    runner = CliRunner()
    out = tmp_path / "bench"
    base = ["benchmark", "avmnist", "--methods", "simmlm", "--seeds", "0", "--config", str(config), "--out", str(out)]
    with folder_lock(out, "a run that is still training"):
        refused = runner.invoke(app, base)
        assert refused.exit_code == 2
        said = " ".join(refused.output.split())
        assert f"{out} is in use by another simmlm run (a run that is still training: pid {os.getpid()}" in said
        assert not (out / "runs").exists()
        with pytest.raises(ValueError, match="is in use"), folder_lock(out, "a third"):
            pass
    assert not out.exists()  # the lock's folder was created for it and nothing was written: removed again
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(gone.stdout), "host": __import__("socket").gethostname()}))
    done = runner.invoke(app, base)  # stale: its process has exited
    assert done.exit_code == 0, done.output
    assert (out / "summary.json").is_file() and not (out / LOCK_NAME).exists()
