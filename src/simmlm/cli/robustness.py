"""``simmlm robustness``: the robustness suite's command (registered on :data:`simmlm.cli.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simmlm.cli.common import (
    ConfigOpt,
    DataDir,
    SetOpt,
    VerboseOpt,
    config_overrides,
    default_config_line,
    default_out,
    exits_on_signals,
    fail,
    parse_methods,
    parse_seeds,
    say,
    show_logs,
)
from simmlm.datasets import list_datasets


def robustness(
    dataset: Annotated[
        str, typer.Argument(help=f"Classification dataset, one of: {', '.join(list_datasets('classification'))}.")
    ],
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods (see `simmlm methods`).")
    ] = "simmlm,dmome,late_fusion,mmp,dream",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder (default: results/DATASET-robustness; own data: results/folder-NAME-robustness)."
        ),
    ] = None,
    suite: Annotated[
        Path | None,
        typer.Option(
            help="YAML of the scenarios and severities (docs/tutorials/robustness.md); default: the built-in suite."
        ),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDir = None,
    set_: SetOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train the cells' seeds in this many processes side by side, each with SIMMLM_THREADS threads "
            "(default: the cores shared out); workers x threads must not exceed the cores. Numbers equal a "
            "one-process run's at the same thread count (docs/concepts/performance.md).",
        ),
    ] = 1,
    verbose: VerboseOpt = False,
) -> None:
    """Train and test every method under missing and corrupted modalities: robustness.json, robustness.md, curves.

    Scenarios: a share of the training samples lacking a modality; test-time corruption of a present modality
    (noise, occlusion, band dropout, zeros marked present) on the clean models; a share of the training samples
    carrying a corrupted modality marked present. Comparisons to simmlm carry 95 % intervals over seeds and test
    samples, also read with Holm's adjustment over the suite. Finished cells are loaded on a rerun and an
    interrupted one resumes run by run.
    """
    from pydantic import ValidationError
    from rich.console import Console

    from simmlm.engine.train import quiet_lightning
    from simmlm.experiments.robustness import run_robustness
    from simmlm.experiments.suite import load_suite

    console = Console()
    out = out if out is not None else default_out(dataset, data_dir, "-robustness")
    try:
        method_list = parse_methods(methods)
        seed_list = parse_seeds(seeds)
        spec = load_suite(suite)
        config, line = default_config_line(dataset, config)
        say(console, line)
        settings = config_overrides(data_dir, set_, **{"data.dataset": dataset})
        quiet_lightning()
        show_logs(console, verbose)
        with exits_on_signals(f"the robustness suite in {out}", out, resume_flag=False):
            run_robustness(method_list, seed_list, out, config, settings, spec, workers)
    except (ValueError, OSError, ValidationError) as err:
        raise fail(err) from err
    console.print(
        f"wrote {out / 'robustness.json'}, {out / 'robustness.md'} and {out / 'robustness'}/ (figures); "
        f"`simmlm report {out}` draws the report"
    )
