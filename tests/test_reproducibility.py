"""Same seed, same weights; provenance in every summary; ``simmlm compare`` finds every changed metric."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from typer.testing import CliRunner

from conftest import synthetic_splits
from simmlm.cli import app
from simmlm.engine.config import RunConfig
from simmlm.engine.train import quiet_lightning, train
from simmlm.reproducibility import TRACKED_PACKAGES, provenance, source_state, summary_differences


def _weights(seed: int) -> dict[str, torch.Tensor]:
    quiet_lightning()
    cfg = RunConfig.model_validate(
        {
            "method": "simmlm",
            "model": {
                "expert": {"a": "lenet", "b": "mlp"},
                "expert_options": {"b": {"hidden": [8, 8], "dropout": 0.3}},
            },
            "train": {
                "seed": seed,
                "batch_size": 16,
                "stage1": {"epochs": 2},
                "stage2": {"epochs": 2},
                "augment": {"a": {"kind": "affine"}, "b": {"kind": "noise"}},
            },
        }
    )
    return train(cfg, synthetic_splits(48), progress=False).model.state_dict()


def test_same_seed_gives_identical_weights_and_another_seed_does_not() -> None:
    first, again, other = _weights(0), _weights(0), _weights(1)
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_provenance_names_commit_versions_threads_and_command() -> None:
    record = provenance(["/somewhere/bin/simmlm", "benchmark", "avmnist", "--set", "a=b c"])
    assert record["command"] == "simmlm benchmark avmnist --set 'a=b c'"
    assert set(TRACKED_PACKAGES) <= set(record["versions"])
    assert torch.__version__.startswith(record["versions"]["torch"].split("+")[0])
    assert record["threads"] == torch.get_num_threads()
    assert set(record) >= {"git_commit", "dirty", "machine"}


def test_source_state_outside_git_and_dirty_tree(tmp_path: Path) -> None:
    import subprocess

    assert source_state(tmp_path) == {"git_commit": None, "dirty": None}
    run = {"cwd": tmp_path, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)  # type: ignore[call-overload]
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "code.py"], **run)  # type: ignore[call-overload]
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"],
        **run,  # type: ignore[call-overload]
    )
    clean = source_state(tmp_path)
    assert len(clean["git_commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.json").write_text("{}")  # runs write here: not a source change
    assert source_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert source_state(tmp_path)["dirty"] is True


SUMMARY = {
    "dataset": "avmnist",
    "methods": {
        "simmlm": {
            "subsets": {"image": {"accuracy": [0.9, 0.8], "ece": [math.nan, 0.1]}},
            "gate_weights": {"image+audio": {"image": 0.5, "audio": 0.5}},
            "train_seconds": [10.0, 11.0],
        }
    },
    "provenance": {"git_commit": "a" * 40},
}


def test_summary_differences_ignores_timings_and_provenance_but_nothing_else() -> None:
    same = json.loads(json.dumps(SUMMARY))  # NaN survives the round trip and equals NaN
    same["methods"]["simmlm"]["train_seconds"] = [99.0, 98.0]
    same["provenance"] = {"git_commit": "b" * 40}
    assert summary_differences(SUMMARY, same) == []
    changed = json.loads(json.dumps(same))
    changed["methods"]["simmlm"]["subsets"]["image"]["accuracy"][1] = 0.8000000000000002  # one ulp counts
    changed["methods"]["simmlm"]["gate_weights"]["image+audio"]["extra"] = 0.0
    assert summary_differences(SUMMARY, changed) == [
        "methods.simmlm.gate_weights.image+audio.extra: not in the reference",
        "methods.simmlm.subsets.image.accuracy[1]: 0.8 -> 0.8000000000000002",
    ]


def test_compare_command_says_whether_a_rerun_reproduced(tmp_path: Path) -> None:
    reference, new = tmp_path / "ref.json", tmp_path / "new.json"
    reference.write_text(json.dumps(SUMMARY))
    new.write_text(json.dumps({**SUMMARY, "provenance": {"dirty": True}}))
    ok = CliRunner().invoke(app, ["compare", str(reference), str(new)])
    assert ok.exit_code == 0, ok.output
    assert "reproduced exactly" in ok.output
    new.write_text(json.dumps({**SUMMARY, "dataset": "other"}))
    bad = CliRunner().invoke(app, ["compare", str(reference), str(new)])
    assert bad.exit_code == 1
    assert "NOT reproduced" in bad.output and "dataset: 'avmnist' -> 'other'" in bad.output
    assert "note:" not in bad.output  # same (unrecorded) processor: no note
    cpu = {"cpu": "AMD EPYC", "cpu_capability": "AVX2"}
    new.write_text(json.dumps({**SUMMARY, "dataset": "other", "provenance": cpu}))
    other_cpu = CliRunner().invoke(app, ["compare", str(reference), str(new)])
    assert other_cpu.exit_code == 1 and "this run on AMD EPYC (AVX2)" in other_cpu.output
    missing = CliRunner().invoke(app, ["compare", str(reference), str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "cannot read a summary" in missing.output


def test_costs_measures_positive_ratios_for_every_subset() -> None:
    from simmlm.costs import measure

    costs = measure({"a": (1, 12, 12), "b": (6,), "c": (4,)}, "auto", batch=8, repeats=1)
    assert costs.subsets == 7 and costs.all_subsets_ratio > 0 and costs.mofe_step_ratio > 0
    result = CliRunner().invoke(app, ["costs", "--help"])
    assert result.exit_code == 0 and "full pass" in result.output
