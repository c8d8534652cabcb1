"""Recompute the ``comparisons`` of finished benchmarks from their runs' saved test predictions, without training.

For a change of the comparison procedure only (:mod:`simmlm.experiments.comparisons`): every other number of
``summary.json`` is kept, ``summary.md`` is rendered again from it and ``report.html`` written again where there was
one::

    python scripts/refresh_comparisons.py results/avmnist results/avmnist-compare ...

A folder whose runs lack ``predictions.npz`` is reported and left as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from simmlm.experiments.comparisons import COMPARISON_DRAWS, compare_methods, runs_from_folder
from simmlm.fileio import write_text_atomic
from simmlm.reporting.report import write_report
from simmlm.reporting.summary import summary_markdown


def refresh(directory: Path) -> bool:
    summary = json.loads((directory / "summary.json").read_text())
    if len(summary["methods"]) < 2 or "comparisons" not in summary:
        print(f"{directory}: no comparisons to refresh")
        return True
    runs = runs_from_folder(directory, list(summary["methods"]), summary["seeds"])
    if not runs:
        print(f"{directory}: some run has no predictions.npz; left as it is")
        return False
    summary["comparisons"] = compare_methods(runs, COMPARISON_DRAWS)
    write_text_atomic(directory / "summary.json", json.dumps(summary, indent=2))
    write_text_atomic(directory / "summary.md", summary_markdown(summary))
    if (directory / "report.html").is_file():
        write_report(directory)
    print(f"{directory}: comparisons refreshed")
    return True


if __name__ == "__main__":
    done = [refresh(Path(arg)) for arg in sys.argv[1:]]
    sys.exit(0 if all(done) else 1)
