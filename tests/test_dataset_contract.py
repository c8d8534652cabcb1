"""Every registered dataset meets one contract, on the small dataset its own example writer makes (in the spirit of
scikit-learn's ``parametrize_with_checks``): it loads, trains a tiny run, is tested under every non-empty subset of
its modalities, predicts one sample from files (where it has a single-file reader) and renders a report. Also: the
registry is what the config union and the help texts are built from, and listing it loads no torch."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import create_model
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.datasets import DatasetSpec, get_dataset, list_datasets, register_dataset
from simmlm.datasets.folder import FolderData
from simmlm.engine.config import default_config, load_config
from simmlm.engine.runs import predict_files
from simmlm.engine.train import quiet_lightning
from simmlm.experiments.benchmark import run_benchmark

TINY = {"train.stage1.epochs": 1, "train.stage2.epochs": 1, "train.batch_size": 8, "train.min_steps": 0}


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_loads_trains_tests_every_subset_predicts_and_reports(name: str, tmp_path: Path) -> None:
    spec = get_dataset(name)
    assert spec.example is not None, f"dataset {name!r} has no example writer: the contract cannot run on it"
    example = spec.example(tmp_path / "data")
    overrides = {"data.dataset": name, "data.data_dir": str(tmp_path / "data"), **TINY}
    overrides |= {f"data.{key}": value for key, value in example.data.items()} | example.config
    quiet_lightning()
    out = tmp_path / "bench"
    summary = run_benchmark(["simmlm"], [0], out, default_config(name), overrides)

    modalities = summary["modalities"]
    subsets = {"+".join(c) for k in range(1, len(modalities) + 1) for c in itertools.combinations(modalities, k)}
    assert set(summary["methods"]["simmlm"]["subsets"]) == subsets
    run = out / "runs" / "simmlm-seed0"
    if example.inputs is None:  # no reader of single files: one clear error
        with pytest.raises(ValueError, match="reads no single files"):
            predict_files(run, {modalities[0]: tmp_path / "any.npy"})
    else:
        output = tmp_path / example.output if example.output else None
        result = predict_files(run, dict(example.inputs), output=output)
        assert result["modalities"] == [m for m in modalities if m in example.inputs]
        assert output is None or output.is_file()
    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    assert (out / "report.html").stat().st_size > 0


def test_the_registry_builds_the_config_union_and_the_help_texts() -> None:
    for name in list_datasets():
        assert type(load_config(None, {"data.dataset": name}).data) is get_dataset(name).config
    with pytest.raises(ValueError, match=f"unknown dataset 'cifar'; choose one of {', '.join(list_datasets())}"):
        load_config(None, {"data.dataset": "cifar"})
    text = _help("benchmark")
    assert all(f"{name} ({get_dataset(name).summary})" in text for name in list_datasets())
    listed = _help("robustness").split("Classification dataset, one of:", 1)[1].split(".", 1)[0]
    assert [n.strip() for n in listed.split(",")] == list_datasets("classification") and "brats" not in listed


def _help(command: str) -> str:
    """A command's ``--help`` as one line of words (rich's box drawing and line breaks removed)."""
    return re.sub(r"[│╭╮╰╯─\s]+", " ", CliRunner().invoke(app, [command, "--help"]).output)


def test_a_spec_is_checked_when_it_registers() -> None:
    with pytest.raises(ValueError, match="registered already"):
        register_dataset(get_dataset("folder"))
    with pytest.raises(ValueError, match="defaults to 'folder', not to its name"):
        register_dataset(DatasetSpec("folder2", FolderData, get_dataset("folder").task, "x", "y"))
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        get_dataset("nope")
    section = create_model("ToyData", __base__=FolderData, dataset=(Literal["toy"], "toy"))
    toy = DatasetSpec("toy", section, get_dataset("folder").task, "x", "y")
    with pytest.raises(RuntimeError, match="registers after simmlm.engine.config was imported"):
        register_dataset(toy)  # the config union would not know it: said, not silently ignored
    assert "toy" not in list_datasets()


def test_listing_the_datasets_and_the_cli_help_load_no_torch() -> None:
    code = (
        "import sys, simmlm.datasets, simmlm.cli\n"
        "assert 'torch' not in sys.modules, 'importing the dataset registry or the CLI loaded torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_new_dataset_is_one_module_and_one_import_line(tmp_path: Path) -> None:
    """tests/data/toy_dataset.py copied into a copy of the package as datasets/toy.py, one import line added: the
    help, the config and the contract see it (in a fresh process, as a user's checkout would)."""
    import shutil

    package = tmp_path / "src" / "simmlm"
    shutil.copytree(Path(__file__).resolve().parents[1] / "src" / "simmlm", package)
    shutil.copy(Path(__file__).parent / "data" / "toy_dataset.py", package / "datasets" / "toy.py")
    init = package / "datasets" / "__init__.py"
    init.write_text(init.read_text() + "from simmlm.datasets import toy  # noqa: E402, F401\n")
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import test_dataset_contract as contract\n"
        "assert 'toy (two noisy views)' in contract._help('benchmark')\n"
        "from simmlm.engine.config import load_config\n"
        "assert type(load_config(None, {'data.dataset': 'toy'}).data).__name__ == 'ToyData'\n"
        "from pathlib import Path\n"
        "contract.test_every_dataset_loads_trains_tests_every_subset_predicts_and_reports('toy', Path(sys.argv[2]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(work)], env=env, text=True, capture_output=True
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("name", ["brats", "mvmnist"])
def test_example_data_writes_a_registered_dataset_and_prints_a_command_that_reads_it(name: str, tmp_path: Path) -> None:
    """``simmlm example-data DIR --layout NAME`` for the datasets whose example is their registered writer."""
    import shlex

    written = CliRunner().invoke(app, ["example-data", str(tmp_path / "d"), "--layout", name])
    assert written.exit_code == 0, written.output
    command = shlex.split(written.output.splitlines()[-1])
    assert command[:3] == ["simmlm", "benchmark", name]
    checked = CliRunner().invoke(app, ["data", *command[2:]])
    assert checked.exit_code == 0, checked.output
    assert ("train 2 " if name == "brats" else "train 60 ") in checked.output, checked.output
    again = CliRunner().invoke(app, ["example-data", str(tmp_path / "d"), "--layout", name])
    assert again.exit_code == 2 and "already exists and is not empty" in again.output
