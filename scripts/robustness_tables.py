"""Print the docs' robustness tables (average accuracy and CR, clean and at each scenario's worst severity) from a
suite's ``robustness.json``, in the form `tests/test_docs.py` checks.

    python scripts/robustness_tables.py results/avmnist-robustness/robustness.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from simmlm.reporting.format import pm


def main() -> None:
    r = json.loads(Path(sys.argv[1]).read_text())
    methods = r["methods"]
    rows = [("clean", "0", r["clean"])]
    for scenario, severities in r["scenarios"].items():
        worst = max(severities, key=float)
        rows.append((scenario, worst, severities[worst]))
    for key, title in (("average_accuracy", "Test average accuracy (%)"), ("counterintuitive_rate", "Test CR (%) ↓")):
        print(f"{title}:\n")
        print("| scenario | severity | " + " | ".join(methods) + " |")
        print("|---" * (len(methods) + 2) + "|")
        for scenario, severity, entry in rows:
            cells = " | ".join(pm(entry["methods"][m][key]) for m in methods)
            print(f"| {scenario} | {severity} | {cells} |")
        print()


if __name__ == "__main__":
    main()
