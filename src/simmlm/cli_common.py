"""What the ``simmlm`` commands share: option types, config lookup, overrides, progress lines and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="SIMMLM_DATA_DIR",
        help="The dataset's folder: your manifest.csv and arrays (folder), the MNIST and FSDD files (avmnist, mvmnist; "
        "`simmlm download avmnist` fetches them), the folder of the feature pickle (seqfeatures) or the NIfTI case "
        "folders (brats).",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML run config: a file, or one shipped with simmlm by name (avmnist, avmnist_sequences, folder, "
        "mvmnist, seqfeatures, brats_cpu, brats2018_gpu).",
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
    str | None, typer.Option("--strategy", help="Lightning strategy: auto, ddp, ddp_spawn, ... (README).")
]
NodesOpt = Annotated[int | None, typer.Option("--num-nodes", help="Number of nodes (multi-node DDP; README).")]


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
        out[key] = yaml.safe_load(value)
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


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` as integers; anything else is one clear error."""
    items = csv_items(text)
    bad = [item for item in items if not item.lstrip("-").isdigit()]
    if bad or not items:
        raise ValueError(f"--seeds expects comma-separated integers such as 0,1,2; got {text!r}")
    return [int(item) for item in items]


def say(console: Any, text: str, **style: Any) -> None:
    """Print a progress line and flush it, so output piped to a file or a pager shows up as it happens."""
    console.print(text, markup=False, soft_wrap=True, **style)
    console.file.flush()


def show_epochs(console: Any) -> None:
    """Print the engine's per-epoch lines (logger ``simmlm``) on ``console``; benchmarks run without progress bars."""
    import logging

    class _Console(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say(console, record.getMessage(), style="dim")

    logger = logging.getLogger("simmlm")
    for old in [h for h in logger.handlers if getattr(h, "simmlm_console", False)]:
        logger.removeHandler(old)  # one handler, on the latest console (tests call the CLI many times)
    handler = _Console()
    handler.simmlm_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def fail(err: Exception) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(err))}")
    return typer.Exit(code=2)
