"""The ``simmlm`` commands on one typer app (:data:`app`, ``simmlm.cli:app``). Heavy libraries are imported inside
the commands so ``simmlm --help`` is instant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simmlm.cli.common import (
    ConfigOpt,
    DataDir,
    DevicesOpt,
    NodesOpt,
    ResumeOpt,
    SetOpt,
    StrategyOpt,
    VerboseOpt,
    config_overrides,
    default_config_line,
    default_out,
    exits_on_signals,
    fail,
    parse_methods,
    parse_seeds,
    placement,
    say,
    show_logs,
)
from simmlm.cli.example import convert_features, example_data
from simmlm.cli.robustness import robustness
from simmlm.datasets import datasets_help, get_dataset, list_datasets

app = typer.Typer(help="Multimodal learning with missing modalities (SimMLM, DMoME, ...).", no_args_is_help=True)


@app.command()
def benchmark(
    dataset: Annotated[
        str,
        typer.Argument(help=f"Dataset to benchmark, one of: {datasets_help()}."),
    ],
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods (see `simmlm methods`).")
    ] = "simmlm,dmome,late_fusion",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder for summary.json, summary.md and runs/ (default: results/DATASET; for your own data "
            "results/folder-NAME, after the data folder's name)."
        ),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDir = None,
    mofe_lambda: Annotated[float | None, typer.Option(help="Override every method's MoFe lambda.")] = None,
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace finished runs in OUT made with another config (refused without it).")
    ] = False,
    devices: DevicesOpt = None,
    strategy: StrategyOpt = None,
    num_nodes: NodesOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Train every method with every seed, test on every modality subset, write summary.json and summary.md.

    With --resume, runs whose metrics.json exists are loaded instead of trained and an interrupted run
    continues from its checkpoints. Finished runs in OUT made with another config, or a benchmark of another data
    folder, are never overwritten unless --overwrite is given.
    """
    from pydantic import ValidationError
    from rich.console import Console

    from simmlm.engine.runs import is_global_zero
    from simmlm.engine.train import quiet_lightning
    from simmlm.experiments.benchmark import run_benchmark

    console = Console()
    out = out if out is not None else default_out(dataset, data_dir)
    try:
        method_list = parse_methods(methods)
        seed_list = parse_seeds(seeds)
        config, line = default_config_line(dataset, config)
        say(console, line)
        extra = {"data.dataset": dataset, "train.mofe_lambda": mofe_lambda, **placement(devices, strategy, num_nodes)}
        settings = config_overrides(data_dir, set_, **extra)
        quiet_lightning()
        show_logs(console, verbose)
        with exits_on_signals(f"the benchmark in {out}", out):
            summary = run_benchmark(method_list, seed_list, out, config, settings, resume=resume, overwrite=overwrite)
    except (ValueError, OSError, ValidationError) as err:
        raise fail(err) from err
    if not is_global_zero():
        return
    text = (out / "summary.md").read_text()
    if len(summary["modalities"]) > 3:  # dozens of subsets: the headline table here, the rest in the files
        text = text[: text.index("\n## ", text.index("## ") + 3)] + f"\n(all tables: {out / 'summary.md'})\n"
    console.print(text, markup=False, soft_wrap=True)
    console.print(f"wrote {out / 'summary.json'} ({len(summary['methods'])} methods x {len(seed_list)} seeds)")


@app.command()
def data(
    dataset: Annotated[
        str,
        typer.Argument(help=f"Dataset to build or check, one of: {datasets_help()}."),
    ] = "avmnist",
    data_dir: DataDir = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Build (or find in the cache) a dataset's arrays, or read and check its files, and print its splits."""
    from pydantic import ValidationError
    from rich.console import Console

    from simmlm.engine.config import load_config
    from simmlm.engine.schedule import schedule_warning
    from simmlm.engine.tasks import task_for

    show_logs(Console())  # warnings about the data (e.g. a split of a single class), progress of its caches
    try:
        config, line = default_config_line(dataset, config)
        typer.echo(line)
        cfg = load_config(config, config_overrides(data_dir, set_, **{"data.dataset": dataset}))
        task = task_for(cfg)
        splits = task.load_splits()
    except (ValueError, OSError, ValidationError) as err:
        raise fail(err) from err
    typer.echo(splits.description)
    typer.echo(f"train {len(splits.train)}  val {len(splits.val)}  test {len(splits.test)}")
    from simmlm.engine.runs import explain_experts

    for name, expert in explain_experts(cfg, task.input_shapes(splits)).items():
        typer.echo(f"expert for {name}: {expert['why']}")
    warning = schedule_warning(task.samples_per_epoch(splits), cfg.train)
    if warning:
        typer.echo(f"warning: {warning}")


@app.command()
def compare(
    reference: Annotated[Path, typer.Argument(help="The summary.json to reproduce (e.g. the committed one).")],
    new: Annotated[Path, typer.Argument(help="The summary.json of the rerun (the same seeds or some of them).")],
) -> None:
    """Say whether a rerun reproduced a benchmark: exactly, within noise, or not.

    Exactly: every metric of every seed the rerun ran equals the reference bit for bit. Within noise: values
    differ (another processor, thread count or reproducibility mode), but every headline mean lies inside the
    interval that the reference's spread over seeds implies. Timings and provenance are not compared. Exits with
    1 only when the rerun is not reproduced.
    """
    import json

    from simmlm.experiments.reproducibility import compare_summaries, machine_note

    summaries = []
    for path in (reference, new):
        try:
            summaries.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            raise fail(ValueError(f"cannot read the summary {path}: {err}")) from err
    verdict = compare_summaries(*summaries)
    for line in verdict.lines:
        typer.echo(line)
    note = machine_note(*summaries) if verdict.kind != "exact" else None
    if note:
        typer.echo(f"note: {note}")
    if not verdict.reproduced:
        raise typer.Exit(code=1)


@app.command()
def costs(
    batch: Annotated[int, typer.Option(min=1, help="Samples per batch.")] = 450,
    repeats: Annotated[int, typer.Option(min=1, help="Timed repeats per operation (the median is kept).")] = 20,
    engine_epochs: Annotated[
        int, typer.Option(min=0, help="Also time this many stage-1 epochs of avMNIST: the engine against a bare loop.")
    ] = 0,
    data_dir: DataDir = None,
) -> None:
    """Print what every subset and a MoFe step cost relative to one full pass (run it on an idle machine)."""
    import torch

    from simmlm.experiments.costs import SETTINGS, engine_overhead, measure

    typer.echo(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}, median of {repeats}")
    typer.echo(f"{'setting':<40} {'subsets':>7} {'all subsets / full pass':>24} {'MoFe step / plain step':>23}")
    for name, (shapes, expert) in SETTINGS.items():
        c = measure(shapes, expert, batch, repeats, name)
        typer.echo(f"{name:<40} {c.subsets:>7} {c.all_subsets_ratio:>23.2f}x {c.mofe_step_ratio:>22.2f}x")
    if engine_epochs:
        engine, bare = engine_overhead(str(data_dir) if data_dir else None, engine_epochs)
        typer.echo(
            f"stage 1 of avMNIST, {engine_epochs} epochs: engine {engine:.1f} s, bare PyTorch loop {bare:.1f} s, "
            f"{engine / bare:.2f}x"
        )


@app.command()
def download(
    dataset: Annotated[
        str,
        typer.Argument(
            help=f"Dataset whose raw files to fetch from their homes: {', '.join(list_datasets(downloadable=True))}."
        ),
    ],
    data_dir: DataDir = None,
) -> None:
    """Download a dataset's raw files into DATA_DIR: resumable, checked against shipped SHA-256 sums.

    Files already present and verified are skipped; a corrupt one is downloaded again.

    Mirrors: set SIMMLM_MNIST_URL and SIMMLM_FSDD_URL to other base URLs (docs/datasets/avmnist.md).
    """
    from rich.console import Console

    from simmlm.data.download import DownloadError

    show_logs(Console(stderr=True))  # what is downloaded, files that were corrupt, the summary line
    fetch = get_dataset(dataset).download if dataset in list_datasets() else None
    if fetch is None:
        choices = ", ".join(list_datasets(downloadable=True))
        raise fail(ValueError(f"cannot download {dataset!r}: choose one of {choices}"))
    if data_dir is None:
        raise fail(ValueError("--data-dir is required (or set SIMMLM_DATA_DIR): the folder to download into"))
    try:
        fetch(data_dir)
    except DownloadError as err:
        fail(err)  # prints the one-line error, as for the other commands; a failed download exits with 1
        raise typer.Exit(code=1) from err
    except ValueError as err:
        raise fail(err) from err
    typer.echo(f"next: simmlm data {dataset} --data-dir {data_dir}")


@app.command()
def train(
    config: ConfigOpt = None,
    method: Annotated[str | None, typer.Option(help="Method (default: the config's).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the config's).")] = None,
    out: Annotated[Path, typer.Option(help="Run folder for model.pt and metrics.json.")] = Path("results/run"),
    data_dir: DataDir = None,
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    devices: DevicesOpt = None,
    strategy: StrategyOpt = None,
    num_nodes: NodesOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Train one run and evaluate it on the test split under every modality subset.

    Every epoch is checkpointed under OUT/checkpoints (removed when the run is finished); --resume continues
    an interrupted run from there and ends with the same model and metrics as an uninterrupted run.
    """
    import sys

    from pydantic import ValidationError
    from rich.console import Console

    from simmlm.engine.config import find_config, load_config
    from simmlm.engine.resume import remove_checkpoints
    from simmlm.engine.runs import is_global_zero, save_run
    from simmlm.engine.tasks import load_splits
    from simmlm.engine.train import quiet_lightning
    from simmlm.engine.train import train as train_run
    from simmlm.evaluation.evaluate import headline_keys
    from simmlm.fileio import folder_lock

    # progress bars on a terminal; piped to a file or another program, one flushed line per epoch instead
    progress = sys.stderr.isatty()
    try:
        settings = {"train.seed": seed, **placement(devices, strategy, num_nodes)}
        cfg = load_config(config, config_overrides(data_dir, set_, method=method, **settings))
        typer.echo(f"config: {find_config(config)}" if config else "config: the library defaults (no --config)")
        splits = load_splits(cfg.data)
        if not progress:
            quiet_lightning()
            show_logs(Console(), verbose)
        with folder_lock(out, "simmlm train"), exits_on_signals(f"the run in {out}", out / "checkpoints"):
            result = train_run(cfg, splits, progress=progress, checkpoint_dir=out / "checkpoints", resume=resume)
            report = save_run(out, result, splits)["test"]
            remove_checkpoints(out)
    except (ValueError, OSError, ValidationError) as err:
        raise fail(err) from err
    if not is_global_zero():
        return
    from simmlm.reporting.format import headline

    key, average_key = headline_keys(report)
    for name, values in report["subsets"].items():
        extra = "".join(f"  {k} {values[k]:.2%}" for k in ("dice_wt", "dice_tc", "dice_et") if k in values)
        samples = f"  ({values['samples']} samples)" if "samples" in values else ""
        ece = f"  ECE {values['ece']:.2%}" if "ece" in values else ""
        typer.echo(f"{name:>20}: {key} {headline(key, values[key])}{extra}{ece}{samples}")
    typer.echo(f"average {headline(key, report[average_key])}  CR {report['counterintuitive_rate']:.2%}  -> {out}")


@app.command()
def predict(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder holding model.pt (e.g. results/avmnist/runs/simmlm-seed0).")
    ],
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            help="MODALITY=FILE, once per available modality (PNG/NPY, WAV/NPY; own data: NPY; BraTS: NIfTI, "
            "plus brain_mask=FILE optionally; food101: image=JPEG).",
        ),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option("--text", help="Image-text runs (food101): the title, as a string (the text modality)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Segmentation runs: write the predicted labels (NIfTI).")
    ] = None,
) -> None:
    """Predict from files with any subset of the modalities: class or tumour regions, gate weights, entropy."""
    import json

    from simmlm.engine.runs import predict_files

    files: dict[str, Path | str] = {}
    for item in input_ or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise fail(ValueError(f"--input expects MODALITY=FILE, got {item!r}"))
        if name in files:
            raise fail(ValueError(f"modality {name!r} given twice"))
        files[name] = Path(path)
    if text is not None:
        if "text" in files:
            raise fail(ValueError("modality 'text' given twice (--input text=FILE and --text)"))
        files["text"] = text
    try:
        result = predict_files(run_dir, files, output)
    except (ValueError, OSError) as err:
        raise fail(err) from err
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from simmlm.reporting.format import prediction_lines

    for line in prediction_lines(result):
        typer.echo(line)


@app.command()
def report(directory: Annotated[Path, typer.Argument(help="A benchmark folder holding summary.json.")]) -> None:
    """Write report.html with figures (accuracy, ECE, CR, gate weights) and the protocol of a benchmark."""
    from simmlm.reporting.report import write_report

    if directory.name == "summary.json" and directory.is_file():  # the summary itself: its folder was meant
        directory = directory.parent
    try:
        path = write_report(directory)
    except (ValueError, OSError) as err:
        raise fail(err) from err
    typer.echo(f"wrote {path}")


@app.command()
def methods() -> None:
    """List the registered methods."""
    from simmlm.methods import get_method, list_methods

    for name in list_methods():
        entry = get_method(name)
        typer.echo(f"{name:>11}  {entry.description}" + (f"\n{'':>11}  cost: {entry.cost}" if entry.cost else ""))


app.command()(robustness)
app.command("example-data")(example_data)
app.command("convert-features")(convert_features)
