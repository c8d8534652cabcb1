"""Compare runs of two benchmark folders on the same data and seeds (e.g. a setting against the default), with the
intervals of ``summary.md`` (:func:`simmlm.experiments.comparisons.compare_methods`: seeds paired, the test-set variance
they share added)::

    python scripts/compare_folders.py results/folder-example3 simmlm results/folder-example3-no-shrinkage simmlm

prints ``A − B`` for average accuracy, CR and ECE, the accuracy with every modality, and the seeds used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from simmlm.experiments.comparisons import COMPARISON_DRAWS, compare_methods, comparison_markdown, runs_from_folder


def main(folder_a: str, method_a: str, folder_b: str, method_b: str) -> None:
    a, b = Path(folder_a), Path(folder_b)
    summaries = [json.loads((f / "summary.json").read_text()) for f in (a, b)]
    seeds = [s for s in summaries[0]["seeds"] if s in summaries[1]["seeds"]]
    if summaries[0]["modalities"] != summaries[1]["modalities"] or not seeds:
        sys.exit("the two folders must hold the same modalities and share seeds")
    runs_a = runs_from_folder(a, [method_a], seeds)
    runs_b = runs_from_folder(b, [method_b], seeds)
    if not runs_a or not runs_b:
        sys.exit("some run has no predictions.npz")
    label_a, label_b = f"{a.name}/{method_a}", f"{b.name}/{method_b}"
    # compare_methods compares everything with "simmlm": B plays it here
    table = compare_methods({"simmlm": runs_b[method_b], "A": runs_a[method_a]}, COMPARISON_DRAWS)
    print(f"seeds {seeds}:")
    print("\n".join(comparison_markdown({"": {f"{label_a} − {label_b}": table["A − simmlm"]}})))
    full = "+".join(summaries[0]["modalities"])
    for label, summary, method in ((label_a, summaries[0], method_a), (label_b, summaries[1], method_b)):
        values = [
            v
            for s, v in zip(summary["seeds"], summary["methods"][method]["subsets"][full]["accuracy"], strict=True)
            if s in seeds
        ]
        print(f"{label}: accuracy with every modality {100 * sum(values) / len(values):.2f} (mean over the seeds)")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
