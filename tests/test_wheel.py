"""The wheel works outside the repository: built from the checkout, installed into a folder of its own, and run
from elsewhere through its own ``simmlm`` script (example data, a benchmark, a report, a prediction), with its
package data (the shipped configs, the checksums) inside."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    dist, site, work, source = (tmp_path / name for name in ("dist", "site", "elsewhere", "source"))
    # built from a copy: building writes build/ and *.egg-info beside the sources, never into the checkout
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(dist)], check=True)
    (wheel,) = dist.glob("simmlm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "simmlm/configs/avmnist.yaml",
        "simmlm/configs/folder.yaml",
        "simmlm/datasets/avmnist/avmnist.sha256",
    } <= names
    assert "simmlm/datasets/registry.py" in names and not any(n.startswith(("tests/", "results/")) for n in names)
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy, not the checkout's

    def simmlm(*args: str) -> str:
        done = subprocess.run(
            [str(site / "bin" / "simmlm"), *args], cwd=work, env=env, text=True, capture_output=True, timeout=600
        )
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        return done.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import simmlm; print(simmlm.__file__)"],
        cwd=work,
        env=env,
        text=True,
        capture_output=True,
    )
    assert where.stdout.strip().startswith(str(site)), where
    simmlm("example-data", "data", "--samples", "120")
    tiny = ["--set", "train.stage1.epochs=1", "--set", "train.stage2.epochs=1", "--set", "train.gate_shrinkage=0"]
    simmlm("benchmark", "folder", "--data-dir", "data", "--methods", "simmlm", "--seeds", "0", "--out", "out", *tiny)
    simmlm("report", "out")
    assert (work / "out" / "report.html").is_file()
    with (work / "data" / "manifest.csv").open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["split"] == "test")
    inputs = [f"{k}=data/{v}" for k, v in row.items() if k not in ("sample_id", "label", "split") and v]
    assert '"prediction"' in simmlm(
        "predict", "out/runs/simmlm-seed0", "--json", *[a for i in inputs for a in ("-i", i)]
    )
