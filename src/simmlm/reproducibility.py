"""Where a result came from (provenance written into every ``summary.json``) and whether a rerun reproduced it."""

from __future__ import annotations

import math
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose versions can change the numbers; recorded in every summary.
TRACKED_PACKAGES = ("torch", "lightning", "numpy", "scipy", "librosa", "soundfile", "monai", "torchmetrics")
#: Summary keys that are measurements of the machine, not results: never compared.
UNCOMPARED = frozenset({"provenance", "train_seconds", "shared_seconds"})


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def source_state(root: Path | None = None) -> dict[str, Any]:
    """The git commit of the source tree and whether it differs from it (``results/`` excluded: runs write there).

    ``root`` defaults to the checkout that holds this package; outside a git checkout both values are ``None``.
    """
    root = root or Path(__file__).resolve().parents[2]
    commit = _git("rev-parse", "HEAD", cwd=root)
    if commit is None:
        return {"git_commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--", ".", ":(exclude)results", cwd=root)
    return {"git_commit": commit, "dirty": bool(status)}


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Commit, dirty flag, package versions, thread count, machine and command line of this process."""
    import torch

    from simmlm.portable import configure_torch, mode_provenance

    configure_torch()  # the thread count recorded is the one the run uses
    versions = {"python": platform.python_version()}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None  # type: ignore[assignment]
    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = Path(args[0]).name
    return {
        **source_state(),
        "versions": versions,
        "threads": torch.get_num_threads(),
        "reproducibility": mode_provenance(),
        "machine": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "command": shlex.join(args),
    }


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_note(reference: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why two summaries may differ although code and seeds agree: they were computed on different processors.

    PyTorch's CPU kernels (oneDNN, MKL, its own vectorised loops) pick code paths by processor and instruction
    set; their results differ in the last bits, and training amplifies that into different models. ``None`` when
    both provenances name the same processor and instruction set.
    """
    ref, cur = reference.get("provenance", {}), new.get("provenance", {})
    where = [(p.get("cpu"), p.get("cpu_capability")) for p in (ref, cur)]
    if where[0] == where[1]:
        return None
    shown = [f"{cpu or 'an unrecorded processor'} ({isa or 'instruction set not recorded'})" for cpu, isa in where]
    return (
        f"the reference was computed on {shown[0]}, this run on {shown[1]}: PyTorch's CPU kernels differ between "
        "processors and instruction sets in the last bits, and training turns that into other models. Exact "
        'reproduction holds on the same kind of processor (README, "Reproducing the numbers").'
    )


def summary_differences(reference: Any, new: Any, path: str = "") -> list[str]:
    """Every value that differs between two summaries (exact comparison; NaN equals NaN), as readable lines.

    Timings and provenance (:data:`UNCOMPARED`) are skipped: they describe the machine and the run, not the result.
    """
    if isinstance(reference, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(reference) | set(new), key=str):
            if key in UNCOMPARED:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append(f"{where}: missing from the new summary")
            elif key not in reference:
                out.append(f"{where}: not in the reference")
            else:
                out += summary_differences(reference[key], new[key], where)
        return out
    if isinstance(reference, list) and isinstance(new, list) and len(reference) == len(new):
        return [
            line
            for i, (a, b) in enumerate(zip(reference, new, strict=True))
            for line in summary_differences(a, b, f"{path}[{i}]")
        ]
    both_nan = isinstance(reference, float) and isinstance(new, float) and math.isnan(reference) and math.isnan(new)
    if reference == new or both_nan:
        return []
    return [f"{path}: {reference!r} -> {new!r}"]
