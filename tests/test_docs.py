"""The README and the docs: their Python examples run as written, and every results table in them is what its
committed results folder holds (no hand-copied number can drift)."""

from __future__ import annotations

import json
import re
import runpy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from simmlm.reporting.format import ci, over_subsets, pm

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: The pages whose Python blocks run here: the tutorials and getting started (a block is one script).
RUNNABLE = sorted([*DOCS.glob("tutorials/*.md"), *DOCS.glob("getting-started/*.md"), README])


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
        exec(compile(block, str(page), "exec"), {"__name__": "__docs__"})


def test_docs_opens_with_the_two_commands_and_stays_short() -> None:
    lines = README.read_text().splitlines()
    head = "\n".join(lines[:10])
    assert "make demo" in head and "make test" in head
    assert len(lines) <= 150, "the README is a front page: the rest belongs in docs/"


def test_docs_links_resolve() -> None:
    """Every relative link of the README names a file of the repository."""
    for target in re.findall(r"\]\((?!https?://|#)([^)#]+)", README.read_text()):
        assert (ROOT / target).exists(), target


def _rows(page: str, results: str) -> tuple[list[list[str]], dict]:
    """The table rows of a docs page (``README.md`` or a path under ``docs/``), and ``results/<results>``."""
    text = (README if page == "README.md" else DOCS / page).read_text()
    rows = [[c.strip().strip("*").strip() for c in line.strip("|").split("|")] for line in text.splitlines()]
    summary = json.loads((ROOT / "results" / results / "summary.json").read_text())
    return [r for r in rows if len(r) > 1], summary


def _check_accuracy_rows(section: str, results: str, label: dict[str, str]) -> None:
    """Rows "| method | accuracy per subset | average | CR |", each mean ± the half-width of its 95 % interval."""

    rows, summary = _rows(section, results)
    names = list(summary["modalities"])
    subsets = [names[0], names[1], "+".join(names)]
    for method, m in summary["methods"].items():
        row = next((r for r in rows if r[0] == label.get(method, method)), None)
        assert row is not None, f"{section} has no row for {method}"
        expected = [ci(m["subsets"][s]["accuracy"]) for s in subsets]
        expected += [ci(m["average_accuracy"]), ci(m["counterintuitive_rate"])]
        assert row[1:6] == expected, f"{section}: the row for {method} does not match results/{results}/summary.json"


def test_docs_main_table_is_what_results_avmnist_holds() -> None:
    _check_accuracy_rows("results/avmnist.md", "avmnist", {"simmlm": "simmlm (λ = 0.1)", "dmome": "dmome (λ = 0)"})


def _check_setting_rows(
    section: str,
    folders: dict[str, str],
    with_calibration: bool,
    cell: Callable[[Sequence[float]], str] | None = None,
    seeds: Sequence[int] | None = None,
) -> None:
    """Rows "| setting | method | accuracy per subset | average | CR |" (then mean ECE and validation average when
    ``with_calibration``) of a README section, each setting from its own results folder: ``cell`` of the per-seed
    values (default mean ± std), of ``seeds`` only when given (a folder with more seeds shown on the same ones)."""

    cell = cell or pm
    rows, _ = _rows(section, next(iter(folders.values())))
    for label, folder in folders.items():
        summary = json.loads((ROOT / "results" / folder / "summary.json").read_text())
        keep = [summary["seeds"].index(k) for k in seeds] if seeds is not None else range(len(summary["seeds"]))

        def show(values: Sequence[float], keep: Sequence[int] = keep) -> str:
            return cell([values[i] for i in keep])

        for method, m in summary["methods"].items():
            row = next((r for r in rows if r[:2] == [label, method]), None)
            assert row is not None, f"no row for {label} / {method}"
            expected = [show(s["accuracy"]) for s in m["subsets"].values()]
            expected += [show(m[k]) for k in ("average_accuracy", "counterintuitive_rate")]
            if with_calibration:
                expected += [show(over_subsets(m, "ece", list(m["subsets"]))), show(m["val_average_accuracy"])]
            assert row[2 : 2 + len(expected)] == expected, (folder, method)


def test_docs_variants_table_is_what_their_results_folders_hold() -> None:
    """Every row of the avMNIST variants table: accuracy per subset, average, CR, mean ECE, validation average."""
    folders = {
        "main (literature front end, shared view)": "avmnist",
        "`data.audio_frontend=antialiased`": "avmnist-antialiased",
        "`train.mofe_views=independent`": "avmnist-independent-views",
        "`data.audio_scaling=minmax`": "avmnist-minmax",
        "`data.val_split=recording_index`": "avmnist-recording-index-val",
    }

    _check_setting_rows("results/avmnist.md", folders, with_calibration=True, cell=ci, seeds=(0, 1, 2))


def test_docs_comparison_table_is_what_results_avmnist_compare_holds() -> None:
    _check_accuracy_rows("results/comparison.md", "avmnist-compare", {})


def test_readme_headline_table_is_what_results_avmnist_compare_holds() -> None:
    _check_accuracy_rows("README.md", "avmnist-compare", {})


def test_docs_multiview_table_is_what_results_mvmnist_holds() -> None:
    """Rows of the multi-view table: all six views, mean over subsets and CR, from the two results folders."""

    rows, _ = _rows("results/multiview.md", "mvmnist")
    chosen = "chosen on validation"
    for folder, label in (
        ("mvmnist", "gate_shrinkage: 1.0"),
        ("mvmnist-no-shrinkage", "gate_shrinkage: 0"),
        ("mvmnist-shrinkage-chosen", chosen),
    ):
        summary = json.loads((ROOT / "results" / folder / "summary.json").read_text())
        full = "+".join(summary["modalities"])
        for method, m in summary["methods"].items():
            wanted = [pm(m["subsets"][full]["accuracy"]), pm(m["average_accuracy"]), pm(m["counterintuitive_rate"])]
            tag = "" if method == "late_fusion" and label != chosen else label
            row = next(r for r in rows if r[1] == method and (tag in r[0]))
            assert row[2:5] == wanted, (folder, method)


def test_docs_sequence_tables_are_what_the_frame_missing_folders_hold() -> None:
    """Average accuracy and CR of every method at every share of missing frames, each from its results folder."""

    rows, _ = _rows("results/avmnist-sequences.md", "avmnist-sequences-frames00")
    levels = ("00", "30", "50", "70")
    summaries = [
        json.loads((ROOT / "results" / f"avmnist-sequences-frames{k}" / "summary.json").read_text()) for k in levels
    ]
    for table, key in (("accuracy", "average_accuracy"), ("CR", "counterintuitive_rate")):
        for method in summaries[0]["methods"]:
            row = next((r for r in rows if r[0] == method and r[1] == table), None)
            assert row is not None, f"no {table} row for {method}"
            assert row[2:6] == [pm(s["methods"][method][key]) for s in summaries], (method, table)


def test_docs_example_pickle_table_is_what_results_seqfeatures_example_holds() -> None:

    rows, summary = _rows("tutorials/sequences.md", "seqfeatures-example")
    for method, m in summary["methods"].items():
        row = next(r for r in rows if r[0] == method)
        expected = [pm(m["subsets"][s]["accuracy"]) for s in ("text", "text+audio+vision")]
        expected += [pm(m["average_accuracy"]), pm(m["counterintuitive_rate"])]
        assert row[1:5] == expected, method


def test_docs_robustness_tables_are_what_results_avmnist_robustness_holds() -> None:
    """Average accuracy and CR of every method, clean and at each scenario's worst severity, from robustness.json."""

    text = (DOCS / "results" / "robustness.md").read_text()
    rows = [[c.strip().strip("*").strip() for c in line.strip("|").split("|")] for line in text.splitlines()]
    r = json.loads((ROOT / "results" / "avmnist-robustness" / "robustness.json").read_text())
    checked = 0
    for key, title in (("average_accuracy", "average accuracy"), ("counterintuitive_rate", "CR")):
        table = text.split(f"Test {title} (%)", 1)[1].split("\n\n", 2)[1]
        header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
        assert header[2:] == r["methods"], header
        for line in table.splitlines()[2:]:
            scenario, severity, *cells = [c.strip().strip("*").strip() for c in line.strip("|").split("|")]
            entry = r["clean"] if scenario == "clean" else r["scenarios"][scenario][severity]
            assert cells == [pm(entry["methods"][m][key]) for m in r["methods"]], (scenario, key)
            checked += 1
    assert checked >= 2 * (1 + len(r["scenarios"])) and rows


def test_docs_robustness_table_against_the_best_is_what_the_script_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """simmlm_reliable against the best of the other methods per row (avMNIST, folder, multi-view MNIST), as
    scripts/robustness_tables.py prints it."""
    script = runpy.run_path(str(ROOT / "scripts" / "robustness_tables.py"))  # its functions, not its __main__
    page = (DOCS / "results" / "robustness.md").read_text()
    for name, rows in (("avmnist-robustness", 10), ("folder3-robustness", 7), ("mvmnist-robustness", 13)):
        monkeypatch.setattr(sys, "argv", ["robustness_tables.py", str(ROOT / "results" / name / "robustness.json")])
        script["main"]()
        out = capsys.readouterr().out
        table = out.split("(Test average accuracy (%)):\n\n", 1)[1].split("\n\n", 1)[0]
        assert table.count("\n") >= rows and table in page, name


def test_docs_brats_table_is_what_results_brats_cpu_holds() -> None:
    """The BraTS page's mean Dice rows (every subset, average, CR) are results/brats-cpu's (seed 0)."""
    summary = json.loads((ROOT / "results" / "brats-cpu" / "summary.json").read_text())
    page = (DOCS / "tutorials" / "brats.md").read_text()
    for method, m in summary["methods"].items():
        row = next(line for line in page.splitlines() if re.match(rf"\| {method}[ ,].*mean Dice \|", line))
        cells = [c.strip() for c in row.strip("|").split("|")][1:6]
        values = [*(m["subsets"][n]["dice_mean"][0] for n in ("flair", "t1c", "flair+t1c"))]
        values += [m["average_dice"][0], m["counterintuitive_rate"][0]]
        assert cells == [f"{100 * v:.2f}" for v in values], method


def test_docs_brats_slices_tables_are_what_results_brats_slices_holds() -> None:
    """The 2-D BraTS-slices tables (mIoU and mean Dice per subset, IoU / Dice per class) are summary.md's."""
    md = (ROOT / "results" / "brats-slices" / "summary.md").read_text()
    page = (DOCS / "tutorials" / "segmentation-2d.md").read_text()
    titles = ("Test mIoU (%) per", "Test mean Dice (%) per", "accuracy with every modality (flair+t1c)")
    for title in titles:
        table = md.split(title, 1)[1].split("\n\n", 2)[1]
        assert table.startswith("| method |") and table in page, title


def test_docs_food101_table_is_what_its_results_folders_hold() -> None:
    """Every row of the UPMC Food-101 table: per-subset accuracy, average and CR, from the folder of its setting."""
    folders = {
        "hashed n-grams": "food101-example",
        "tiny BERT": "food101-example-tinybert",
        "70 % titles missing": "food101-example-text70",
        "input gate": "food101-example-inputgate",
        "fine-tuned": "food101-example-finetune",
    }
    _check_setting_rows("tutorials/food101.md", folders, with_calibration=False)


def test_docs_folder_shrinkage_table_is_what_its_results_folders_hold() -> None:
    """The own-data rows (λ chosen on validation, λ = 0, late fusion) under "results/multiview.md", mean ± 95 %
    interval, each from its results folder."""

    rows, _ = _rows("results/multiview.md", "folder-example3")
    for m in (3, 6):
        runs = (
            ("simmlm, λ chosen", f"folder-example{m}", "simmlm"),
            ("simmlm, λ = 0 (before)", f"folder-example{m}-no-shrinkage", "simmlm"),
            ("late_fusion", f"folder-example{m}", "late_fusion"),
        )
        for label, folder, method in runs:
            summary = json.loads((ROOT / "results" / folder / "summary.json").read_text())
            v, full = summary["methods"][method], "+".join(summary["modalities"])
            row = next(r for r in rows if r[1:3] == [f"{m} modalities", label])
            expected = [
                ci(v["subsets"][full]["accuracy"]),
                ci(v["average_accuracy"]),
                ci(v["counterintuitive_rate"]),
            ]
            assert row[3:6] == expected, (folder, method)


def test_docs_recipe_table_is_what_results_avmnist_recipe_holds() -> None:
    text = (DOCS / "datasets" / "avmnist.md").read_text()
    text = text.split("**The recipe revisited", 1)[1].split("Validation supports", 1)[0]
    rows = {r[0]: r for r in ([c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines())}
    folders = {
        "as configured": "A-baseline",
        "weight decay 5e-4": "B-wd",
        "audio dropout 0.3": "C-audio-dropout",
        "100 + 40 epochs": "D-epochs",
        "batch 32": "E-batch32",
        "all four": "F-all",
        "stage-2 experts at lr × 0.1": "G-expert-lr",
    }
    for label, folder in folders.items():
        m = json.loads((ROOT / "results" / "avmnist-recipe" / folder / "summary.json").read_text())["methods"]
        s = m["simmlm"]
        expected = [ci(s["val_average_accuracy"])]
        expected += [ci(s["subsets"][k]["accuracy"]) for k in ("image", "audio", "image+audio")]
        assert [rows[label][1], *rows[label][4:7]] == expected, label
        assert rows[label][7] == ci(s["average_accuracy"]), label


def test_docs_dream_paper_table_is_what_its_results_folders_hold() -> None:
    """``dream`` (seeds 0-2 of the comparison), ``dream_paper`` and its PAS variant, every cell from its folder."""
    import statistics

    text = (DOCS / "concepts" / "other-methods.md").read_text()
    text = text.split("- **`dream_paper`**", 1)[1].split("\n- `mmp` has no", 1)[0]
    rows = {r[0]: r for r in ([c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines())}
    sources = {
        "`dream`": ("avmnist-compare", "dream"),
        "`dream_paper`": ("avmnist-dream-paper", "dream_paper"),
        "`dream_paper`, PAS over P": ("avmnist-dream-paper-pas-present", "dream_paper"),
    }
    for label, (folder, method) in sources.items():
        m = json.loads((ROOT / "results" / folder / "summary.json").read_text())["methods"][method]
        names = list(m["subsets"])
        expected = [pm(m["subsets"][n]["accuracy"][:3]) for n in names]
        expected += [pm(m["average_accuracy"][:3]), pm(m["counterintuitive_rate"][:3])]
        expected.append(pm([statistics.fmean(m["subsets"][n]["ece"][i] for n in names) for i in range(3)]))
        expected.append(pm(m["val_average_accuracy"][:3]))
        assert rows[label][1:] == expected, label


def _bash_block(page: Path, first_command: str) -> list[list[str]]:
    """The commands of the first ``bash`` block of ``page`` that starts with ``first_command``, split as a shell
    would (comments dropped)."""
    import shlex

    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
        if block.startswith(first_command):
            return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    raise AssertionError(f"{page.name} has no bash block starting with {first_command!r}")


@pytest.mark.parametrize("page", [README, DOCS / "getting-started" / "index.md"], ids=lambda p: p.name)
def test_own_data_quick_start_runs_as_written(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The six own-data commands, exactly as the page gives them, with tiny training schedules and one seed added."""
    from typer.testing import CliRunner

    from simmlm.cli import app

    monkeypatch.chdir(tmp_path)
    tiny = ["--set", "train.stage1.epochs=1", "--set", "train.stage2.epochs=1", "--set", "train.min_steps=0"]
    commands = _bash_block(page, "simmlm example-data")
    assert [c[1] for c in commands] == ["example-data", "data", "train", "predict", "benchmark", "report"]
    for command in commands:
        args = command[1:] + (tiny if command[1] == "train" else [])
        args += [*tiny, "--seeds", "0"] if command[1] == "benchmark" else []
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (command, result.output)
    assert (tmp_path / "results" / "my_data" / "report.html").exists()


def test_the_own_data_tutorial_lists_every_shipped_config() -> None:
    from simmlm.datasets.registry import packaged_configs

    text = (DOCS / "tutorials" / "own-data.md").read_text().split("**Configs.**", 1)[1].split(")", 1)[0]
    assert re.findall(r"`(\w+)`", text) == packaged_configs()


def test_generated_reference_pages_cover_every_dataset_command_and_config_key(tmp_path: Path) -> None:
    """The docs' dataset pages, CLI reference and config reference come from the registry, the typer app and the
    pydantic models at build time: a new dataset, command or key appears without editing the docs."""
    import sys
    from types import SimpleNamespace

    import typer

    from simmlm.cli import app
    from simmlm.datasets import list_datasets
    from simmlm.engine.config import TrainConfig

    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import simmlm_docs
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    simmlm_docs.generate(SimpleNamespace(srcdir=str(tmp_path)))
    out = tmp_path / simmlm_docs.GENERATED
    index = (out / "datasets.md").read_text()
    for name in list_datasets():
        assert f"datasets/{name}.md" in index and (out / "datasets" / f"{name}.md").is_file(), name
        assert f"### `data ({name})`" in (out / "config.md").read_text(), name
    group = typer.main.get_command(app)
    cli = (out / "cli.md").read_text()
    for command in group.list_commands(group.context_class(group, info_name="simmlm")):
        assert f"## `simmlm {command}`" in cli, command
    config = (out / "config.md").read_text()
    assert all(f"| `{key}` |" in config for key in TrainConfig.model_fields)


def test_docs_reliability_table_is_what_its_results_file_holds() -> None:
    import statistics

    data = json.loads((ROOT / "results" / "avmnist-reliability-check" / "reliability.json").read_text())
    text = (DOCS / "results" / "reliability.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = {r[0]: r[1:] for r in ([c.strip() for c in line.strip("|").split("|")] for line in table[1:])}
    assert set(rows) == set(data["results"])
    for variant, row in data["results"].items():
        cells = [row[f"test {condition}"] for condition in header[1:]]
        assert rows[variant] == [f"{statistics.fmean(v):.2f} ± {statistics.stdev(v):.2f}" for v in cells], variant
