"""Same seed, same weights; provenance in every summary; ``simmlm compare`` finds every changed metric."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from typer.testing import CliRunner, Result

from conftest import synthetic_splits
from simmlm.cli import app
from simmlm.engine.config import RunConfig
from simmlm.engine.train import quiet_lightning, train
from simmlm.experiments.reproducibility import (
    TRACKED_PACKAGES,
    machine_note,
    provenance,
    source_state,
    summary_differences,
)
from test_end_to_end import DATA_DIR, needs_data


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


def _bench(accuracies: list[float], seeds: list[int] | None = None, **provenance: object) -> dict[str, object]:
    """A one-method summary whose image and average accuracy per seed are ``accuracies``."""
    return {
        "dataset": "avmnist",
        "seeds": seeds if seeds is not None else list(range(len(accuracies))),
        "methods": {
            "simmlm": {
                "subsets": {"image": {"accuracy": accuracies, "ece": [0.1] * len(accuracies)}},
                "average_accuracy": accuracies,
                "gate_weights": {"image": {"image": 1.0}},
                "params": 10,
            }
        },
        "provenance": provenance,
    }


def _compare(tmp_path: Path, reference: dict[str, object], new: dict[str, object]) -> Result:
    (tmp_path / "ref.json").write_text(json.dumps(reference))
    (tmp_path / "new.json").write_text(json.dumps(new))
    return CliRunner().invoke(app, ["compare", str(tmp_path / "ref.json"), str(tmp_path / "new.json")])


COMMITTED = [0.90, 0.92, 0.91, 0.93, 0.89, 0.91, 0.90, 0.92]  # mean 0.91, sd 0.0131


def test_compare_exact_also_on_some_of_the_reference_seeds(tmp_path: Path) -> None:
    ok = _compare(tmp_path, _bench(COMMITTED), _bench(COMMITTED, dirty=True))
    assert ok.exit_code == 0 and ok.output.startswith("reproduced exactly"), ok.output
    some = _compare(tmp_path, _bench(COMMITTED), _bench([0.92, 0.93], seeds=[1, 3]))
    assert some.exit_code == 0 and "reproduced exactly: every metric of seeds 1, 3" in some.output, some.output
    assert "note:" not in some.output
    unknown = _compare(tmp_path, _bench(COMMITTED), _bench([0.9], seeds=[8]))
    assert unknown.exit_code == 1 and "no run of seeds [8]" in unknown.output


def test_compare_within_noise_uses_the_reference_spread(tmp_path: Path) -> None:
    # 3 new seeds, 8 reference seeds, 2 checks: allowed t(0.9875, 7) * 0.0131 * sqrt(1/8 + 1/3) = 0.0252
    near = _compare(tmp_path, _bench(COMMITTED), _bench([0.92, 0.93, 0.90], cpu="AMD EPYC", cpu_instruction_set="AVX2"))
    assert near.exit_code == 0 and near.output.startswith("reproduced within noise"), near.output
    assert "largest deviation: simmlm image: 91.67 against 91.00 (deviation 0.67 points, allowed 2.52)" in near.output
    assert "this run on AMD EPYC (AVX2)" in near.output
    far = _compare(tmp_path, _bench(COMMITTED), _bench([0.95, 0.94, 0.93]))
    assert far.exit_code == 1 and far.output.startswith("NOT reproduced: 2 headline means"), far.output
    assert "simmlm average: 94.00 against 91.00" in far.output


def test_compare_never_excuses_other_text_or_structure(tmp_path: Path) -> None:
    other = {**_bench(COMMITTED), "dataset": "other"}
    bad = _compare(tmp_path, _bench(COMMITTED), other)
    assert bad.exit_code == 1 and "NOT reproduced" in bad.output and "dataset: 'avmnist' -> 'other'" in bad.output
    methods = _compare(tmp_path, _bench(COMMITTED), {**_bench(COMMITTED), "methods": {}})
    assert methods.exit_code == 1 and "the reference ran simmlm, the rerun none" in methods.output
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "ref.json"), str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "cannot read the summary" in missing.output and "none.json" in missing.output


def test_machine_note_names_mode_threads_and_processor() -> None:
    portable = {"reproducibility": {"mode": "portable"}, "threads": 2, "cpu": "Intel", "cpu_capability": "AVX2"}
    same = {"provenance": portable}
    assert machine_note(same, same) is None
    native = {"provenance": {**portable, "reproducibility": {"mode": "native"}, "threads": 16}}
    note = machine_note(same, native) or ""
    assert "portable mode, this run in native mode" in note and "2 threads, this run 16" in note
    other_cpu = {"provenance": {**portable, "cpu": "AMD"}}
    assert "evidence that it does not" in (machine_note(same, other_cpu) or "")
    recorded = {"provenance": {**portable, "cpu_instruction_set": "AVX-512"}}  # the kernels are not the processor
    assert machine_note(same, recorded) is None
    wider = {"provenance": {**portable, "cpu_instruction_set": "AVX2"}}
    assert "Intel (AVX2), this run on Intel (AVX-512)" in (machine_note(wider, recorded) or "")


def test_costs_measures_positive_ratios_for_every_subset() -> None:
    from simmlm.experiments.costs import measure

    costs = measure({"a": (1, 12, 12), "b": (6,), "c": (4,)}, "auto", batch=8, repeats=1)
    assert costs.subsets == 7 and costs.all_subsets_ratio > 0 and costs.mofe_step_ratio > 0
    result = CliRunner().invoke(app, ["costs", "--help"])
    assert result.exit_code == 0 and "full pass" in result.output


def test_subset_layout_script_computes_what_the_library_does() -> None:
    """scripts/subset_layout.py's matrix layout (cited on the performance page) gives every subset's logits as
    forward_subsets does, up to float rounding, also for samples that lack modalities."""
    import runpy

    from simmlm.methods import create_method
    from simmlm.subsets import all_subsets, bits_to_mask

    script = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "subset_layout.py"))
    torch.manual_seed(0)
    shapes = {"a": (5,), "b": (3,), "c": (4,)}
    model = create_method("simmlm", input_shapes=shapes, num_classes=4, expert="mlp").eval()
    for parameter in model.parameters():  # away from the uniform gate it starts with
        torch.nn.init.normal_(parameter, std=0.5)
    inputs = {name: torch.randn(6, *shape) for name, shape in shapes.items()}
    available = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=torch.bool)
    masks = [bits_to_mask(torch.full((6,), code, dtype=torch.long), 3) for code in all_subsets(3)]
    codes = torch.stack([m[0] for m in masks]).float()
    with torch.no_grad():
        expected = [out.logits for out in model.forward_subsets(inputs, available, masks, validate_args=False)]
        got = script["matrix_layout"](model, inputs, available, codes)
    for k, mask in enumerate(masks):
        rows = (mask & available).any(1)  # a subset a sample has none of is not evaluated on it
        torch.testing.assert_close(got[k][rows], expected[k][rows])


@needs_data
def test_costs_times_the_engine_against_a_bare_loop_on_the_same_work() -> None:
    from simmlm.experiments.costs import engine_overhead

    engine, bare = engine_overhead(str(DATA_DIR), epochs=1)
    assert engine > 0 and bare > 0 and engine / bare < 20  # both ran the epoch (the ratio itself: `simmlm costs`)


def test_compare_skips_what_only_a_newer_version_writes_but_not_what_the_rerun_lacks(tmp_path: Path) -> None:
    """`make demo` failed once because the rerun's summary named its experts and the committed one did not."""
    newer = _bench(COMMITTED)
    newer["experts"] = {"image": {"kind": "lenet", "why": "auto"}}
    newer["methods"]["simmlm"]["gate_shrinkage"] = {"chosen": [1.0] * len(COMMITTED)}  # type: ignore[index]
    ok = _compare(tmp_path, _bench(COMMITTED), newer)
    assert ok.exit_code == 0 and ok.output.startswith("reproduced exactly"), ok.output
    assert "not compared, not in the reference (a newer simmlm writes them): experts, methods.*.gate_shrinkage" in (
        " ".join(ok.output.split())
    )
    older = _compare(tmp_path, newer, _bench(COMMITTED))  # the rerun lacks what the reference has: not excused
    assert older.exit_code == 1 and "experts: missing from the new summary" in older.output
