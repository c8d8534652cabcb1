"""`simmlm robustness`: the plan of cells, the scenario config, the JSON schema, resuming, the report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.data.base import Splits, TensorMultimodalDataset
from simmlm.datasets.folder.synthetic import write_example_dataset
from simmlm.engine.config import load_config
from simmlm.engine.runs import load_checkpoint
from simmlm.engine.tasks import task_for
from simmlm.experiments.robustness import assemble
from simmlm.experiments.suite import CLEAN, SuiteConfig, load_suite, plan

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated")
TINY = ["--set", "train.stage1.epochs=1", "--set", "train.stage2.epochs=1", "--set", "train.min_steps=0"]
SUITE = """
train_missing: {fractions: [0.5]}
train_corruption: {modalities: [image], fractions: [0.5], severity: 2.0}
test_corruptions:
  - {kind: noise, modalities: [image], severities: [1.0]}
  - {kind: zeros, severities: [1.0]}
lambdas: [0.1, 0.5]
variants: {reliable: {method_options: {reliability: true}, stage2_augment: {kind: corrupt, prob: 0.5}}}
bootstrap_draws: 20
"""


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robust") / "example"
    write_example_dataset(root, 3, 120, 4, 0.25, 0)
    return root


def _splits(shapes: dict[str, tuple[int, ...]]) -> Splits:
    n = 8
    data = TensorMultimodalDataset(
        {k: torch.randn(n, *s) for k, s in shapes.items()},
        torch.ones(n, len(shapes), dtype=torch.bool),
        torch.arange(n),
    )
    return Splits(data, data, data, 8, "toy")


def test_the_plan_trains_clean_then_each_share_and_tests_every_corruption_of_the_right_modalities() -> None:
    cells = plan(SuiteConfig(), _splits({"image": (1, 8, 8), "vector": (6,)}))
    assert [c.name for c in cells] == [
        "clean",
        "train-missing-image-0.5",
        "train-missing-image-0.9",
        "train-noise-image-0.5",
        "train-noise-vector-0.5",
    ]  # fmt: skip  (training corruption: each modality in turn)
    assert cells[0].scenario is None
    assert cells[1].scenario == {"kind": "missing", "modality": "image", "fraction": 0.5, "seed": 0}
    clean = {(c.scenario, c.severity): c.corruption for c in cells[0].conditions}
    assert clean[(CLEAN, 0.0)] is None
    assert clean[("test noise: vector", 2.0)] == ("vector", "noise", 2.0, 1.0)
    assert clean[("test zeros: image", 0.5)] == ("image", "zeros", 1.0, 0.5)  # zeros: the severity is a share
    assert ("test occlude: image", 0.25) in clean and not any(s == "test occlude: vector" for s, _ in clean)
    assert ("test band: vector", 0.25) not in clean  # occlusion and bands need 2-D content
    assert clean[("train noise 2: image, corrupted test", 0.0)] == ("image", "noise", 2.0, 1.0)
    assert clean[("train noise 2: vector, corrupted test", 0.0)] == ("vector", "noise", 2.0, 1.0)
    assert [c.scenario for c in cells[-1].conditions] == [
        "train noise 2: vector, clean test",
        "train noise 2: vector, corrupted test",
    ]
    only_tests = SuiteConfig.model_validate({"train_missing": {"fractions": []}, "train_corruption": {"fractions": []}})
    cells = plan(only_tests, _splits({"image": (1, 8, 8), "vector": (6,)}))
    assert [c.name for c in cells] == ["clean"]  # a suite of test conditions only
    assert not any(c.scenario.startswith("train") for c in cells[0].conditions)
    with pytest.raises(ValueError, match="names modality 'sound'"):
        plan(
            SuiteConfig.model_validate({"train_missing": {"modality": "sound", "fractions": [0.5]}}),
            _splits({"a": (3,)}),
        )


def test_assemble_puts_the_clean_models_at_severity_zero_of_every_scenario() -> None:
    def entry(value: float) -> dict:
        return {"methods": {"simmlm": {"average_accuracy": [value]}}, "comparisons": {}}

    def condition(scenario: str, severity: float, value: float) -> dict:
        return {"scenario": scenario, "severity": severity, **entry(value)}

    cells = [
        {"conditions": [condition(CLEAN, 0.0, 0.9), condition("t", 1.0, 0.5)]},
        {"conditions": [condition("m", 0.5, 0.8), condition("m", 0.25, 0.85)]},
    ]
    result = assemble(cells)
    assert result["clean"] == entry(0.9)
    assert list(result["scenarios"]["t"]) == ["0", "1"] and result["scenarios"]["t"]["0"] == entry(0.9)
    assert list(result["scenarios"]["m"]) == ["0", "0.25", "0.5"]


def test_a_data_scenario_in_the_config_changes_only_the_splits_it_names(example: Path) -> None:
    base = {"data.dataset": "folder", "data.data_dir": str(example)}
    clean = task_for(load_config(None, base)).load_splits()
    spec = {"kind": "missing", "modality": "image", "fraction": 1.0}
    dropped = task_for(load_config(None, {**base, "data.scenario": spec})).load_splits()
    image = clean.modalities.index("image")
    has_other = clean.train.mask.sum(1) > 1
    assert not dropped.train.mask[has_other, image].any()  # every sample that can lose the image lost it
    assert dropped.train.mask[~has_other, image].equal(clean.train.mask[~has_other, image])
    assert dropped.test.mask.equal(clean.test.mask) and dropped.test.inputs["image"].equal(clean.test.inputs["image"])
    assert "Scenario: 100% of the train/val samples having image lack it" in dropped.description
    noisy = task_for(load_config(None, {**base, "data.scenario": {**spec, "kind": "noise"}})).load_splits()
    assert noisy.train.mask.equal(clean.train.mask)  # a corruption never changes the mask
    present = clean.train.mask[:, image]
    assert not noisy.train.inputs["image"][present].equal(clean.train.inputs["image"][present])
    assert noisy.train.inputs["image"][~present].abs().sum() == 0  # missing stays missing
    with pytest.raises(ValueError, match="data.scenario.modality: 'sound'"):
        task_for(load_config(None, {**base, "data.scenario": {**spec, "modality": "sound"}})).load_splits()


def test_bad_suites_fail_with_the_key_named(tmp_path: Path) -> None:
    bad = tmp_path / "suite.yaml"
    bad.write_text("train_missing: {fractions: [0.5]}\ntest_corruption: []\n")
    with pytest.raises(ValueError, match="test_corruption"):
        load_suite(bad)
    bad.write_text("test_corruptions: [{kind: blur, severities: [1]}]\n")
    result = CliRunner().invoke(app, ["robustness", "folder", "--suite", str(bad), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "test_corruptions.0.kind" in result.output
    bad.write_text("variants: {mmp: {method_options: {reliability: true}}}\n")
    result = CliRunner().invoke(app, ["robustness", "folder", "--suite", str(bad), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "suite variant 'mmp' has the name of a method" in result.output


@pytest.mark.slow
def test_the_suite_writes_its_schema_resumes_and_reports(example: Path, tmp_path: Path) -> None:
    suite, out = tmp_path / "suite.yaml", tmp_path / "out"
    suite.write_text(SUITE)
    args = ["robustness", "folder", "--data-dir", str(example), "--methods", "simmlm,dmome", "--seeds", "0"]
    args += ["--suite", str(suite), "--out", str(out), *TINY]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "cell 1/3 (clean training data)" in first.output and "cell 3/3" in first.output
    r = json.loads((out / "robustness.json").read_text())
    assert r["methods"] == ["simmlm", "dmome", "simmlm_val", "reliable"] and r["seeds"] == [0]
    assert list(r["cells"]) == ["clean", "train-missing-image-0.5", "train-noise-image-0.5"]
    assert all(c["lambda_chosen"]["0"] in (0.1, 0.5) for c in r["cells"].values())
    assert set(r["scenarios"]) == {
        "test noise: image", "test zeros: image", "test zeros: sensor1", "test zeros: sensor2",
        "train missing: image", "train noise 2: image, clean test", "train noise 2: image, corrupted test",
    }  # fmt: skip
    for scenario, severities in r["scenarios"].items():
        assert list(severities)[0] == "0", scenario
        for entry in severities.values():
            assert set(entry["comparisons"]) == {"dmome − simmlm", "simmlm_val − simmlm", "reliable − simmlm"}
            for row in entry["comparisons"].values():
                for metric in ("average_accuracy", "counterintuitive_rate", "ece"):
                    c = row[metric]
                    assert c["low"] <= c["high"]
                    assert c["significant"] == (c["low"] > 0 or c["high"] < 0)
                    assert not c["significant_holm"] or c["significant"]  # Holm confirms, never adds
            for m in entry["methods"].values():
                assert len(m["subsets"]) == 7 and all(len(v["accuracy"]) == 1 for v in m["subsets"].values())
                assert len(m["average_accuracy"]) == len(m["counterintuitive_rate"]) == len(m["ece"]) == 1
                assert set(m["shapley"]) == {"probability", "correctness"}
                assert set(m["shapley"]["probability"]) == {"image", "sensor1", "sensor2"}
    zeros = r["scenarios"]["test zeros: image"]
    # zeroing the image content of every test sample marked present changes what the models see
    assert zeros["1"]["methods"]["simmlm"]["subsets"]["image"] != zeros["0"]["methods"]["simmlm"]["subsets"]["image"]
    md = (out / "robustness.md").read_text()
    assert "## train missing: image" in md and "| severity | comparison |" in md and "simmlm_val is simmlm" in md
    assert "reliable is a variant of simmlm: method options {'reliability': True}; stage 2 augments every" in md
    _, variant, _ = load_checkpoint(
        out / "cells" / "clean" / "variants" / "reliable" / "runs" / "simmlm-seed0" / "model.pt"
    )
    assert variant.model.method_options == {"reliability": True}
    augment = variant.train.stage2.augment or {}
    assert {m: (a.kind, a.prob) for m, a in augment.items()} == dict.fromkeys(r["modalities"], ("corrupt", 0.5))
    assert "reliable (a variant of simmlm" in first.output
    assert len(list((out / "robustness").glob("*.png"))) == len(r["scenarios"]) + 1  # curves + Shapley

    # A rerun loads every finished cell; an interrupted cell resumes (its finished runs are loaded).
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0 and second.output.count("finished before, loaded from") == 3, second.output
    assert json.loads((out / "robustness.json").read_text())["scenarios"] == r["scenarios"]
    cell = out / "cells" / "train-missing-image-0.5"
    (cell / "cell.json").unlink()
    shutil.rmtree(cell / "runs" / "dmome-seed0")
    third = CliRunner().invoke(app, args)
    assert third.exit_code == 0, third.output
    assert "simmlm seed 0: finished before" in third.output and "dmome seed 0: training" in third.output
    assert json.loads((out / "robustness.json").read_text())["scenarios"] == r["scenarios"]  # runs are deterministic

    # Another reference re-evaluates the trained cells (nothing trains again) and keeps the earlier rows.
    cells = json.loads((out / "robustness.json").read_text())["cells"]
    suite.write_text(SUITE + "references: [simmlm, reliable]\n")
    fourth = CliRunner().invoke(app, args)
    assert fourth.exit_code == 0, fourth.output
    assert fourth.output.count("trained before, evaluating it again") == 3 and ": training" not in fourth.output
    again = json.loads((out / "robustness.json").read_text())
    assert again["cells"] == cells  # a cell's cost stays its training's
    for scenario, severities in again["scenarios"].items():
        for severity, entry in severities.items():
            rows = entry["comparisons"]
            assert list(rows) == [
                "dmome − simmlm", "simmlm_val − simmlm", "reliable − simmlm",
                "dmome − reliable", "simmlm_val − reliable",
            ]  # fmt: skip
            before = r["scenarios"][scenario][severity]["comparisons"]["dmome − simmlm"]["average_accuracy"]
            assert rows["dmome − simmlm"]["average_accuracy"]["difference"] == before["difference"]
    assert "| 1 | dmome − reliable |" in (out / "robustness.md").read_text()

    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    page = (out / "report.html").read_text()
    assert "robustness/shapley.png" in page and "train missing: image: average accuracy and CR" in page


def test_a_cell_saved_before_a_setting_existed_still_matches() -> None:
    """Settings added to the suite or the run config since a cell ran take their defaults when it is read again, so
    a finished suite is loaded, not trained again."""
    from simmlm.experiments.robustness import _normalised, cell_config

    config = cell_config(load_config("avmnist", {"data.data_dir": "/nowhere"}))
    suite = SuiteConfig().model_dump(mode="json")
    old_suite = {k: v for k, v in suite.items() if k != "references"}
    old_config = json.loads(json.dumps(config))
    for spec in old_config["train"]["augment"].values():
        spec.pop("band_share", None)
    saved = _normalised({"suite": old_suite, "config": old_config, "methods": ["simmlm"]})
    assert saved["suite"] == suite and saved["config"] == config and saved["methods"] == ["simmlm"]


@pytest.mark.slow
def test_workers_train_the_seeds_side_by_side_and_give_the_numbers_of_one_process(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Two worker processes of one thread each (the tests' thread count) train the seeds of every cell; the suite
    then equals the one trained in this process, bit for bit, and says how it ran."""
    monkeypatch.setenv("SIMMLM_THREADS", "1")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "train_missing: {fractions: [0.5]}\ntrain_corruption: {fractions: []}\n"
        "test_corruptions: [{kind: zeros, modalities: [image], severities: [1.0]}]\nvariants: {}\n"
        "bootstrap_draws: 20\n"
    )
    args = ["robustness", "folder", "--data-dir", str(example), "--methods", "simmlm,late_fusion", "--seeds", "0,1"]
    args += ["--suite", str(suite), *TINY]
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        run = CliRunner().invoke(app, [*args, "--out", str(out), "--workers", str(workers)])
        assert run.exit_code == 0, run.output
        results[workers] = json.loads((out / "robustness.json").read_text())
    assert results[2]["workers"] == {"processes": 2, "threads": 1} and "workers" not in results[1]
    assert results[2]["provenance"]["threads"] == 1
    workers_said = capfd.readouterr().err  # the workers' lines, each with its unit (a % in a label is no format)
    assert "[50% of training samples lack image, seed 1] simmlm seed 1: trained in" in workers_said
    assert "Logging error" not in workers_said
    assert results[2]["clean"] == results[1]["clean"] and results[2]["scenarios"] == results[1]["scenarios"]
    assert not list((tmp_path / "workers2").rglob(".simmlm.lock"))  # every lock released

    # more threads in all than cores is refused before anything trains
    monkeypatch.setenv("SIMMLM_THREADS", str(os.cpu_count() or 1))
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "many"), "--workers", "2"])
    assert refused.exit_code == 2 and "exceed this machine's" in refused.output
