"""What the ``simmlm`` commands share: option types, config lookup, overrides, log lines and errors."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from simmlm.datasets import folders_help, get_dataset, list_datasets
from simmlm.datasets.registry import packaged_configs

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="SIMMLM_DATA_DIR",
        help=f"The dataset's folder. {folders_help()}.",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help=f"YAML run config: a file, or one shipped with simmlm by name ({', '.join(packaged_configs())}).",
    ),
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key, e.g. --set train.stage2.epochs=10.")
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoints (same config and seed).")
]
DevicesOpt = Annotated[
    str | None, typer.Option("--devices", help='Devices per node: a number or "auto" (default: the config\'s, 1).')
]
StrategyOpt = Annotated[
    str | None,
    typer.Option(
        "--strategy", help="Lightning strategy: auto, ddp, ddp_spawn, ... (docs/tutorials/resume-and-gpus.md)."
    ),
]
NodesOpt = Annotated[
    int | None, typer.Option("--num-nodes", help="Number of nodes (multi-node DDP; docs/tutorials/resume-and-gpus.md).")
]


def placement(devices: str | None, strategy: str | None, num_nodes: int | None) -> dict[str, Any]:
    """``--devices/--strategy/--num-nodes`` as config overrides."""
    return {"train.devices": devices, "train.strategy": strategy, "train.num_nodes": num_nodes}  # None: not set


def config_overrides(data_dir: Path | None, sets: list[str] | None, **extra: Any) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if data_dir is not None:
        out["data.data_dir"] = str(data_dir)
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise typer.BadParameter(f"--set {item!r}: the value is not YAML ({' '.join(str(err).split())})") from err
    return out


def default_config_line(dataset: str, config: Path | None) -> tuple[Path | None, str]:
    """The given config (a file or a packaged name), else the config simmlm ships for ``dataset``, else ``None``
    (the library defaults); and the line that says which one is used."""
    from simmlm.engine.config import default_config, find_config

    if config is not None:
        given = find_config(config)
        return given, f"config: {given}"
    shipped = default_config(dataset)
    if shipped is None:
        return None, f"config: the library defaults (simmlm ships no {dataset!r} config; --config FILE to give one)"
    return shipped, f"config: {shipped} (simmlm's own for {dataset}; --config FILE to use another)"


def csv_items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_methods(text: str) -> list[str]:
    """``--methods simmlm,dmome`` as registered method names, each once; an empty or unknown one is an error."""
    from simmlm.methods import get_method, list_methods

    names = list(dict.fromkeys(csv_items(text)))
    if not names:
        raise ValueError(f"--methods is empty; give one or more of {', '.join(list_methods())}")
    for name in names:
        get_method(name)
    return names


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` as integers; anything else is one clear error."""
    items = csv_items(text)
    bad = [item for item in items if not item.lstrip("-").isdigit()]
    if bad or not items:
        raise ValueError(f"--seeds expects comma-separated integers such as 0,1,2; got {text!r}")
    seeds = [int(item) for item in items]
    outside = [s for s in seeds if not 0 <= s < 2**32]
    if outside:
        raise ValueError(f"--seeds: a seed is an integer from 0 to {2**32 - 1}, got {outside[0]}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:  # a repeated seed trains the same run twice and reports a spread of 0
        raise ValueError(f"--seeds {text!r} repeats {', '.join(map(str, repeated))}; give each seed once")
    return seeds


def say(console: Any, text: str, style: str = "") -> None:
    """Print a progress line and flush it, so output piped to a file or a pager shows up as it happens; in a terminal
    showing a progress bar (:mod:`simmlm.progress`), above the bar."""
    from simmlm.progress import live_console

    target = (live_console() if console.is_terminal else None) or console
    line = target.render_str(text, markup=False)  # highlighted as a print of the string would be
    line.style = style  # on the line only: print(style=...) would also restyle a bar drawn below it
    target.print(line, soft_wrap=True)
    console.file.flush()


VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Print a line for every epoch (default: the last epoch of each stage).")
]


def show_logs(console: Any, verbose: bool = False) -> None:
    """Print the library's lines (the ``simmlm`` logger and its children, one per module) on ``console``: a line per
    stage and run, progress where no bar is drawn (:mod:`simmlm.progress`), warnings in yellow; with ``verbose`` also
    a line per epoch (``DEBUG``)."""
    import logging

    class _Console(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                style = "yellow"
            else:  # what a benchmark or the suite does stands out; the engine's and the data's lines are dim
                style = "" if record.name.startswith("simmlm.experiments") else "dim"
            say(console, record.getMessage(), style=style)

    logger = logging.getLogger("simmlm")
    for old in [h for h in logger.handlers if getattr(h, "simmlm_console", False)]:
        logger.removeHandler(old)  # one handler, on the latest console (tests call the CLI many times)
    handler = _Console()
    handler.simmlm_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def fail(err: Exception) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(err))}")
    return typer.Exit(code=2)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a run (a ``BaseException``, like ``KeyboardInterrupt``: nothing catches it
    by accident; Lightning tears its trainer down and lets it through)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def exits_on_signals(what: str, out: Path, resume_flag: bool = True) -> Iterator[None]:
    """Run a training command so that Ctrl-C (SIGINT) and a scheduler's kill (SIGTERM) end it with status 130 or 143
    and one line: what was interrupted, that its checkpoints are intact, and the command that continues it.

    Without this, Lightning turns SIGTERM into an exit status of 0 (a ``SystemExit`` without a code) and Ctrl-C into
    1, both without a word. Files are written atomically, so nothing is left half-written either way.
    ``resume_flag``: the command continues with ``--resume`` (else, e.g. ``simmlm robustness``, run as it was).
    """
    import signal
    import sys
    import threading

    def raise_interrupted(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except (Interrupted, KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, SystemExit) and type(err).__name__ != "SIGTERMException":
            raise  # a real exit (typer.Exit is not a SystemExit; sys.exit from elsewhere keeps its code)
        if isinstance(err, Interrupted):
            signum = err.signum
        elif isinstance(err, KeyboardInterrupt):
            signum = signal.SIGINT
        else:  # Lightning's SIGTERMException
            signum = signal.SIGTERM
        name = signal.Signals(signum).name
        argv = [a for a in sys.argv[1:] if a != "--resume"]
        command = " ".join(shlex.quote(a) for a in ["simmlm", *argv, *(["--resume"] if resume_flag else [])])
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]interrupted ({name}):[/] {escape(what)} stopped; the checkpoints of every finished epoch are "
            f"intact in {escape(str(out))}. Continue exactly where it stopped with: {escape(command)}"
        )
        raise typer.Exit(code=128 + int(signum)) from None
    finally:
        for s, previous in handlers.items():
            signal.signal(s, previous)


def default_out(dataset: str, data_dir: Path | None, suffix: str = "") -> Path:
    """``results/DATASET`` (+ ``suffix``), or for your own data ``results/folder-NAME`` after its folder's name, so two
    folder datasets never share (and overwrite) one output folder."""
    name = dataset
    if dataset in list_datasets() and get_dataset(dataset).named_by_folder and data_dir is not None:
        name = f"folder-{data_dir.resolve().name or 'data'}"
    return Path("results") / f"{name}{suffix}"
