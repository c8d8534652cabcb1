"""A first measurement for the reliability-aware gate (issue 29): variants of simmlm trained per seed (stage 1
shared through the engine's cache), each evaluated on validation and test under clean and degraded inputs (a
modality's content replaced by noise or zeros while its mask still says present, every sample that has it).

Nothing is selected here; it prints the validation and the test average accuracy over the subsets, mean ± std over
the seeds, and each variant's own training time::

    SIMMLM_REPRODUCIBILITY=portable python scripts/reliability_check.py --seeds 0,1,2 --out /tmp/reliability.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from simmlm.data.scenarios import corrupt, corruption_scale
from simmlm.engine.config import load_config
from simmlm.engine.tasks import task_for
from simmlm.engine.train import train

#: Stage 2 sees 30 % of each modality's samples degraded while marked present (noise or zeros).
CORRUPT = {name: {"kind": "corrupt", "prob": 0.3, "severity": 2.0, "zero_share": 0.25} for name in ("image", "audio")}
RELIABLE = {"reliability": True}
VARIANTS: dict[str, dict[str, Any]] = {
    "simmlm": {},
    "reliability": {"model.method_options": RELIABLE},
    "corrupt": {"train.stage2.augment": CORRUPT},
    "reliability+corrupt": {"model.method_options": RELIABLE, "train.stage2.augment": CORRUPT},
    "late_fusion": {"method": "late_fusion"},
}
#: (modality, kind, severity): the degraded conditions, applied to every sample that has the modality.
CONDITIONS = (
    None,
    ("image", "noise", 2.0),
    ("audio", "noise", 2.0),
    ("image", "zeros", 1.0),
    ("audio", "zeros", 1.0),
    ("image", "occlude", 0.5),  # not among the training corruptions (noise, zeros): do the gains carry over?
    ("audio", "band", 0.5),
)


def _name(condition: tuple[str, str, float] | None) -> str:
    return (
        "clean"
        if condition is None
        else f"{condition[1]} {condition[0]}" + (f" σ={condition[2]:g}" if condition[1] == "noise" else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--config", default="avmnist")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = load_config(args.config)
    task = task_for(base)
    splits = task.load_splits()
    scale = {m: corruption_scale(splits.train, m) for m in splits.modalities}
    sets = {}
    for split in ("val", "test"):
        data = getattr(splits, split)
        for c in CONDITIONS:
            changed = None if c is None else corrupt(data, c[0], c[1], c[2], 1.0, seed=0, scale=scale[c[0]])
            sets[split, _name(c)] = data if changed is None else changed
    results: dict[str, Any] = {}
    for seed in seeds:
        cache: dict[str, Any] = {}
        for variant, overrides in VARIANTS.items():
            cfg = load_config(args.config, {**overrides, "train.seed": seed})
            start = time.monotonic()
            run = train(cfg, splits, progress=False, cache=cache)
            own = run.train_seconds - run.shared_seconds
            row = results.setdefault(variant, {"seconds": []})
            row["seconds"].append(own)
            for (split, condition), data in sets.items():
                report, _ = task.report(run.model, data, splits.modalities)
                row.setdefault(f"{split} {condition}", []).append(100 * report["average_accuracy"])
            print(f"seed {seed} {variant}: {own:.1f} s own training ({time.monotonic() - start:.1f} s)", flush=True)
    names = [_name(c) for c in CONDITIONS]
    for split in ("val", "test"):
        print(f"\n{split}: average accuracy over the subsets (%), mean ± std over seeds {seeds}")
        print("| variant | " + " | ".join(names) + " | own training (s) |")
        print("|---" * (len(names) + 2) + "|")
        for variant, row in results.items():
            cells = [row[f"{split} {n}"] for n in names]
            shown = [f"{statistics.fmean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0:.2f}" for v in cells]
            print(f"| {variant} | " + " | ".join(shown) + f" | {statistics.fmean(row['seconds']):.1f} |")
    if args.out:
        args.out.write_text(json.dumps({"seeds": seeds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
