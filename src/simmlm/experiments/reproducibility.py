"""Where a result came from (provenance written into every ``summary.json``) and whether a rerun reproduced it."""

from __future__ import annotations

import math
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
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
    root = root or Path(__file__).resolve().parents[3]  # src/simmlm/experiments/ -> the checkout
    commit = _git("rev-parse", "HEAD", cwd=root)
    if commit is None:
        return {"git_commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--", ".", ":(exclude)results", cwd=root)
    return {"git_commit": commit, "dirty": bool(status)}


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Commit, dirty flag, package versions, thread count, machine and command line of this process."""
    import torch

    from simmlm.portable import configure_torch, instruction_set, mode_provenance

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
        "cpu_instruction_set": instruction_set(),
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


def _mode(p: dict[str, Any]) -> str:
    return p.get("reproducibility", {}).get("mode", "native")  # summaries before the mode existed: native


def machine_note(reference: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why two summaries may differ although code and seeds agree, for a newcomer: another reproducibility mode,
    thread count, package versions or processor (``None`` when none of these differ).

    PyTorch's and numpy's CPU kernels pick code paths by processor and instruction set; their results differ in
    the last bits, and training turns that into other models. Portable mode (:mod:`simmlm.portable`) puts them
    on one path.
    """
    ref, cur = reference.get("provenance", {}), new.get("provenance", {})
    modes = _mode(ref), _mode(cur)
    reasons = []
    if modes[0] != modes[1]:
        reasons.append(
            f"the reference ran in {modes[0]} mode, this run in {modes[1]} mode (SIMMLM_REPRODUCIBILITY=portable, as "
            "`make demo` sets it, is the mode meant to give the same numbers on every x86-64 processor)"
        )
    if ref.get("threads") != cur.get("threads"):
        reasons.append(
            f"the reference used {ref.get('threads')} threads, this run {cur.get('threads')} (float sums split "
            "across threads round differently; portable mode pins SIMMLM_THREADS, default 2)"
        )
    versions = [k for k in ref.get("versions", {}) if ref["versions"].get(k) != cur.get("versions", {}).get(k)]
    if versions:
        reasons.append(f"package versions differ ({', '.join(versions)})")
    where = [(p.get("cpu"), p.get("cpu_instruction_set")) for p in (ref, cur)]
    known = all(isa for _, isa in where)  # older summaries record only the kernels torch ran (cpu_capability)
    if where[0][0] != where[1][0] or (known and where[0][1] != where[1][1]):
        shown = [f"{cpu or 'an unrecorded processor'} ({isa or 'instruction set not recorded'})" for cpu, isa in where]
        same_path = modes == ("portable", "portable") and not reasons
        reasons.append(
            f"the reference was computed on {shown[0]}, this run on {shown[1]}"
            + (
                ": portable mode should have made them agree, so this is evidence that it does not on these "
                "processors; please report it with both summaries' provenance"
                if same_path
                else ": CPU kernels differ between processors in the last bits, and training turns that into other "
                "models"
            )
        )
    if not reasons:
        return None
    return "; ".join(reasons) + " (docs/concepts/reproducibility.md)."


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


#: Per-method values that aggregate over the seeds (means), and the comparisons between methods: exact only when
#: both summaries ran the same seeds.
SEED_AGGREGATES = frozenset({"comparisons", "gate_weights", "gate_weights_regions"})


def common_seed_views(reference: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both summaries as they can be compared when ``new`` ran some of ``reference``'s seeds: the reference's
    per-seed lists keep those seeds' entries, and what aggregates over seeds (:data:`SEED_AGGREGATES`) is dropped
    from both unless the seeds are the same."""
    own, seeds = list(reference["seeds"]), list(new["seeds"])
    if seeds == own:
        return reference, new
    index = [own.index(s) for s in seeds]

    def restrict(value: Any, pick: bool) -> Any:
        if isinstance(value, dict):
            return {k: restrict(v, pick) for k, v in value.items() if k not in SEED_AGGREGATES}
        if pick and isinstance(value, list) and len(value) == len(own):
            return [value[i] for i in index]
        return value

    def view(summary: dict[str, Any], pick: bool) -> dict[str, Any]:
        kept = {k: v for k, v in summary.items() if k not in SEED_AGGREGATES}
        return {**kept, "seeds": seeds, "methods": restrict(summary["methods"], pick)}

    return view(reference, True), view(new, False)


@dataclass
class Verdict:
    """The outcome of comparing a rerun with a reference summary.

    Attributes:
        kind: ``"exact"``, ``"noise"`` or ``"not"`` (reproduced exactly, within noise, not reproduced).
        lines: the explanation, first line the verdict.
    """

    kind: str
    lines: list[str]

    @property
    def reproduced(self) -> bool:
        return self.kind != "not"


def _without_floats(value: Any) -> Any:
    """``value`` with every float replaced by one placeholder: what is left to differ is structure, text and
    counts, which no processor changes."""
    if isinstance(value, dict):
        return {k: _without_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_floats(v) for v in value]
    return "<float>" if isinstance(value, float) else value


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def headline_checks(reference: dict[str, Any], new: dict[str, Any], alpha: float = 0.05) -> list[dict[str, Any]]:
    """Each headline mean of the rerun (per method: each subset's accuracy or mean Dice, and the average) against
    the prediction interval that the reference's seeds imply for a mean of as many seeds:
    ``m_ref ± t(R - 1) s_ref sqrt(1/R + 1/n)``, ``R`` reference seeds with spread ``s_ref`` and ``n`` new seeds
    (the interval that holds the mean of ``n`` further seeds from the same distribution with the stated chance),
    each at ``1 - alpha / k`` for ``k`` checks (Bonferroni), so a faithful rerun fails with chance at most ``alpha``.
    """
    from scipy.stats import t as student_t

    from simmlm.evaluation.evaluate import headline_keys

    rows: list[tuple[str, str, list[float], list[float]]] = []
    for method, ref in reference["methods"].items():
        if method not in new["methods"]:
            continue
        key, average = headline_keys(ref)
        cur = new["methods"][method]
        for subset, values in ref["subsets"].items():
            if subset in cur["subsets"]:
                rows.append((method, subset, values[key], cur["subsets"][subset][key]))
        rows.append((method, "average", ref[average], cur[average]))
    level = 1 - alpha / max(len(rows), 1)
    checks = []
    for method, name, ref_values, new_values in rows:
        r, n = len(ref_values), len(new_values)
        m_ref, m_new = _mean(ref_values), _mean(new_values)
        if r > 1:
            spread = math.sqrt(sum((v - m_ref) ** 2 for v in ref_values) / (r - 1))
            allowed = float(student_t.ppf((1 + level) / 2, r - 1)) * spread * math.sqrt(1 / r + 1 / n)
        else:
            allowed = 0.0  # one reference seed: no spread to judge noise by
        deviation = m_new - m_ref
        inside = abs(deviation) <= allowed or deviation == 0 or (math.isnan(m_ref) and math.isnan(m_new))
        checks.append(
            {"method": method, "value": name, "reference": m_ref, "new": m_new, "allowed": allowed, "inside": inside}
        )
    return checks


def _known_to(reference: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``new`` without the top-level and per-method keys that ``reference`` lacks (written by a newer version of
    simmlm, e.g. ``experts``: nothing to compare them with), and a note naming them (empty when there are none)."""
    dropped = sorted(k for k in new if k not in reference)
    kept = {k: v for k, v in new.items() if k in reference}
    methods, reference_methods = kept.get("methods"), reference.get("methods")
    if isinstance(methods, dict) and isinstance(reference_methods, dict):
        kept["methods"] = {}
        for name, values in methods.items():
            known = reference_methods.get(name, {})
            dropped += sorted({f"methods.*.{k}" for k in values if k not in known} - set(dropped))
            kept["methods"][name] = {k: v for k, v in values.items() if k in known}
    note = f"not compared, not in the reference (a newer simmlm writes them): {', '.join(dict.fromkeys(dropped))}"
    return kept, [note] if dropped else []


def compare_summaries(reference: dict[str, Any], new: dict[str, Any]) -> Verdict:
    """Did ``new`` reproduce ``reference``? Exactly (every metric of the seeds both ran, bit for bit), within noise
    (every headline mean inside the interval the reference's seed spread implies, :func:`headline_checks`), or
    not. The rerun may have run a subset of the reference's seeds (``make demo`` runs three of the committed ones).
    """
    seeds = list(new.get("seeds", []))
    missing = [s for s in seeds if s not in reference.get("seeds", [])]
    if missing:
        return Verdict("not", [f"NOT reproduced: the reference has no run of seeds {missing}"])
    if set(new.get("methods", {})) != set(reference.get("methods", {})):
        methods = [", ".join(summary.get("methods", {})) or "none" for summary in (reference, new)]
        return Verdict("not", [f"NOT reproduced: the reference ran {methods[0]}, the rerun {methods[1]}"])
    shown = ", ".join(map(str, seeds))
    new, newer = _known_to(reference, new)
    views = common_seed_views(reference, new)
    differences = summary_differences(*views)
    if not differences:
        return Verdict(
            "exact",
            [
                f"reproduced exactly: every metric of seeds {shown} equals the reference bit for bit (timings, "
                "provenance and what averages over other seeds not compared)",
                *newer,
            ],
        )
    structural = summary_differences(*map(_without_floats, views))
    if structural:
        lines = [f"NOT reproduced: {len(structural)} values differ that are not floating-point results:"]
        return Verdict("not", lines + [f"  {line}" for line in structural[:20]])
    checks = headline_checks(reference, new)

    def share(c: dict[str, Any]) -> float:  # of the allowed deviation
        deviation = abs(c["new"] - c["reference"])
        return deviation / c["allowed"] if c["allowed"] else (0.0 if deviation == 0 else math.inf)

    worst = max(checks, key=share)
    outside = [c for c in checks if not c["inside"]]
    criterion = (
        f"each of the {len(checks)} headline means (per method: every subset's score and the average) inside the "
        f"interval the reference's {len(reference['seeds'])} seeds imply for a mean of {len(seeds)} seeds (a 95 % "
        "prediction interval, Bonferroni over the headline means)"
    )

    def describe(c: dict[str, Any]) -> str:
        return (
            f"{c['method']} {c['value']}: {c['new'] * 100:.2f} against {c['reference'] * 100:.2f} "
            f"(deviation {abs(c['new'] - c['reference']) * 100:.2f} points, allowed {c['allowed'] * 100:.2f})"
        )

    if not outside:
        lines = [
            f"reproduced within noise: {len(differences)} values differ in their last bits or beyond, but {criterion}",
            f"largest deviation: {describe(worst)}",
        ]
        return Verdict("noise", lines + newer)
    lines = [f"NOT reproduced: {len(outside)} headline means fall outside noise ({criterion}):"]
    lines += [f"  {describe(c)}" for c in outside]
    return Verdict("not", lines)
