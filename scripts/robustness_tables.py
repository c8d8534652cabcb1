"""Print the docs' robustness tables from a suite's ``robustness.json``, in the form `tests/test_docs.py` checks:
average accuracy and CR per method, clean and at each scenario's worst severity; then, where the suite compared every
method with ``--focus`` (its ``references``), the focus against the best of the others in each row, with the 95 %
interval of the difference (Holm's reading over the suite's family in brackets).

    python scripts/robustness_tables.py results/avmnist-robustness/robustness.json [--focus simmlm_reliable]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from simmlm.experiments.cells import TUNED
from simmlm.reporting.format import difference, pm

METRICS = (("average_accuracy", "Test average accuracy (%)", max), ("counterintuitive_rate", "Test CR (%) ↓", min))


def _against(rows: dict[str, Any], focus: str, other: str, key: str) -> dict[str, Any] | None:
    """``focus − other`` on ``key`` from a condition's comparisons (either orientation), or None."""
    if f"{focus} − {other}" in rows:
        return rows[f"{focus} − {other}"][key]
    if f"{other} − {focus}" not in rows:
        return None
    c = rows[f"{other} − {focus}"][key]
    return {**c, "difference": -c["difference"], "low": -c["high"], "high": -c["low"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("robustness", type=Path)
    parser.add_argument("--focus", default="simmlm_reliable")
    args = parser.parse_args()
    r = json.loads(args.robustness.read_text())
    methods = r["methods"]
    rows = [("clean", "0", r["clean"])]
    for scenario, severities in r["scenarios"].items():
        worst = max(severities, key=float)
        rows.append((scenario, worst, severities[worst]))
    for key, title, _ in METRICS:
        print(f"{title}:\n")
        print("| scenario | severity | " + " | ".join(methods) + " |")
        print("|---" * (len(methods) + 2) + "|")
        for scenario, severity, entry in rows:
            cells = " | ".join(pm(entry["methods"][m][key]) for m in methods)
            print(f"| {scenario} | {severity} | {cells} |")
        print()
    if args.focus not in methods:
        return
    variants = {*r["suite"].get("variants", {}), TUNED}  # the methods proper: no variant of simmlm
    others = [m for m in methods if m != args.focus and m not in variants]
    for key, title, best_of in METRICS:
        print(f"{args.focus} against the best of {', '.join(others)} ({title}):\n")
        print(f"| scenario | severity | {args.focus} | best of the others | {args.focus} − best |")
        print("|---" * 5 + "|")
        for scenario, severity, entry in rows:
            means = {m: statistics.fmean(entry["methods"][m][key]) for m in others}
            best = best_of(means, key=lambda m: means[m])
            c = _against(entry["comparisons"], args.focus, best, key)
            text = difference(c) if c else "not compared"
            own = pm(entry["methods"][args.focus][key])
            print(f"| {scenario} | {severity} | {own} | {best}: {pm(entry['methods'][best][key])} | {text} |")
        print()


if __name__ == "__main__":
    main()
