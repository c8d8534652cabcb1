"""``summary.md``: a benchmark's ``summary.json`` as Markdown tables (mean ± std over seeds), for classification,
segmentation and regression summaries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from simmlm.datasets.brats.loader import REGIONS
from simmlm.evaluation.evaluate import SHAPLEY_NOTE, headline_keys
from simmlm.experiments.comparisons import COMPARISON_DRAWS, comparison_markdown, comparison_note
from simmlm.reporting.format import NO_NUMBER, ci, over_subsets, pm, training_seconds, units


def gate_evenness(weights: Sequence[float]) -> float:
    """Entropy of a weight vector over ``n >= 2`` modalities divided by ``log n``: 1 uniform, 0 one-hot."""
    entropy = -sum(w * math.log(w) for w in weights if w > 0)
    return entropy / math.log(len(weights))


def _region_calibration(methods: dict[str, Any], names: Sequence[str]) -> list[str]:
    """The voxel ECE / SCE table per region (none for summaries written before it was measured per region)."""
    if not all(f"ece_{r}" in m["subsets"][n] for m in methods.values() for n in names for r in REGIONS):
        return []
    lines = ["", "## Voxel calibration (%) per region, mean over subsets: ECE / SCE (20 bins) ↓", ""]
    lines += ["| method | WT | TC | ET |", "|---|---|---|---|"]
    for method, m in methods.items():
        cells = [
            f"{pm(over_subsets(m, f'ece_{r}', names))} / {pm(over_subsets(m, f'sce_{r}', names))}" for r in REGIONS
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


#: What the Shapley table of a regression summary holds.
SHAPLEY_NOTE_REGRESSION = (
    "Shapley value of each modality from the predictions under every subset, mean over test samples, mean ± std over "
    "seeds. abs_error: the value of a subset is how much closer its score is to the truth than predicting 0 "
    "(|y| - |ŷ - y|, in the score's units); correctness: 1 if its sign is right (pp; no modality: 1/2)."
)
#: What the Shapley table of a 2-D segmentation summary holds.
SHAPLEY_NOTE_MIOU = (
    "Shapley value of each modality from the predictions under every subset, mean over test images, mean ± std over "
    "seeds, in percentage points: the value of a subset is the image's mIoU under it (no modality: 0)."
)
#: The sentiment metrics of a regression summary: key -> column title.
SENTIMENT_COLUMNS = {
    "mae": "MAE ↓",
    "corr": "Corr",
    "acc2_has0": "Acc-2 has-0 (%)",
    "acc2_non0": "Acc-2 non-0 (%)",
    "f1_has0": "F1 has-0 (%)",
    "f1_non0": "F1 non-0 (%)",
    "acc7": "Acc-7 (%)",
}


def _sentiment_tables(methods: dict[str, Any], names: Sequence[str]) -> list[str]:
    """MulT's and MMSA's metrics, with every modality and averaged over the subsets (mean ± std over seeds)."""
    full = max(names, key=lambda n: n.count("+"))  # every modality
    lines = ["", "## Sentiment metrics (MulT / MMSA conventions)", ""]
    lines += ["| method | over | " + " | ".join(SENTIMENT_COLUMNS.values()) + " |"]
    lines += ["|---" * (len(SENTIMENT_COLUMNS) + 2) + "|"]
    for method, m in methods.items():
        every = [pm(m["subsets"][full][k], *units(k)) for k in SENTIMENT_COLUMNS]
        mean = [pm(m[f"average_{k}"], *units(k)) for k in SENTIMENT_COLUMNS]
        lines.append(f"| {method} | {full} | " + " | ".join(every) + " |")
        lines.append(f"| {method} | average of the subsets | " + " | ".join(mean) + " |")
    return lines


def _dream_table(methods: dict[str, Any], names: Sequence[str], key: str) -> list[str]:
    """Weighted F1 per test condition in the form of DREAM's Table 1: each subset missing a modality, their average
    ("Avg.", per seed), then every modality."""
    full = max(names, key=lambda n: n.count("+"))
    missing = [n for n in names if n != full]
    what = "positive vs negative, neutral samples left out" if key == "f1_non0" else "over the classes"
    lines = ["", f"## Weighted F1 (%) per test condition, as DREAM's Table 1 ({what})", ""]
    lines += ["| method | " + " | ".join([*missing, "Avg.", full]) + " |", "|---" * (len(missing) + 3) + "|"]
    for method, m in methods.items():
        cells = [pm(m["subsets"][n][key]) for n in missing]
        cells += [pm(over_subsets(m, key, missing)), pm(m["subsets"][full][key])]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _per_class_table(methods: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Per class, "this class or not": accuracy / weighted F1 with every modality (MulT's per-emotion metrics)."""
    full = max(names, key=lambda n: n.count("+"))
    first = next(iter(methods.values()))["subsets"][full]
    classes = [k[4:] for k in first if k.startswith("acc_") and f"f1_{k[4:]}" in first]
    if not classes:
        return []
    lines = ["", f"## Per class with every modality ({full}): accuracy / weighted F1 (%) of the class or not", ""]
    lines += ["| method | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for method, m in methods.items():
        row = m["subsets"][full]
        cells = [f"{pm(row[f'acc_{c}'])} / {pm(row[f'f1_{c}'])}" for c in classes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _iou_table(methods: dict[str, Any], names: Sequence[str]) -> list[str]:
    """IoU and Dice per class, their means and pixel accuracy with every modality (2-D semantic segmentation)."""
    full = max(names, key=lambda n: n.count("+"))
    first = next(iter(methods.values()))["subsets"][full]
    classes = [k[4:] for k in first if k.startswith("iou_")]
    dice = "mdice" in first  # reports before Dice was added have none
    lines = []
    if dice:
        lines += ["", "## Test mean Dice (%) per available-modality subset", ""]
        lines += _table(
            list(names), {method: [pm(m["subsets"][n]["mdice"]) for n in names] for method, m in methods.items()}, False
        )
    what = "IoU / Dice" if dice else "IoU"
    lines += ["", f"## {what} (%) per class and pixel accuracy with every modality ({full})", ""]
    columns = [*classes, *(["mean Dice"] if dice else []), "pixel accuracy"]
    lines += ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method, m in methods.items():
        row = m["subsets"][full]
        cells = [" / ".join(pm(row[f"{k}_{c}"]) for k in ("iou", "dice") if f"{k}_{c}" in row) for c in classes]
        cells += [pm(row["mdice"])] if dice else []
        lines.append(f"| {method} | " + " | ".join([*cells, pm(row["pixel_accuracy"])]) + " |")
    return lines


#: Beyond this many subsets (more than three modalities) the per-subset tables are transposed, subsets as rows.
WIDE_SUBSETS = 7


def _table(columns: list[str], rows: dict[str, list[str]], wide: bool) -> list[str]:
    """A Markdown table with one row per method, or with ``wide`` one row per column (methods as columns), so that
    dozens of subsets read down the page instead of off its edge."""
    if not wide:
        body = [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()]
        return ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|", *body]
    body = [f"| {c} | " + " | ".join(cells[j] for cells in rows.values()) + " |" for j, c in enumerate(columns)]
    return ["| | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|", *body]


def summary_markdown(summary: dict[str, Any]) -> str:
    """Render ``summary.json`` as Markdown tables (mean ± std over seeds, percentages)."""
    methods = summary["methods"]
    first = next(iter(methods.values()))
    names = list(first["subsets"])
    key, average = headline_keys(first)
    segmentation, regression = key == "dice_mean", key == "mae"
    scale, digits = units(key)
    what = {"dice_mean": "mean Dice (WT, TC, ET) (%)", "mae": "MAE (lower is better)", "miou": "mIoU (%)"}.get(
        key, "accuracy (%)"
    )
    lines = [
        f"# {summary['dataset']}: {', '.join(methods)} (seeds {', '.join(map(str, summary['seeds']))})",
        "",
        summary["protocol"],
        "",
        *(
            ["Experts: " + "; ".join(f"{n}: {e['why']}" for n, e in summary["experts"].items()) + ".", ""]
            if "experts" in summary
            else []
        ),
        f"## Test {what} per available-modality subset",
        "",
    ]
    lines += _table(
        [*names, "average", "CR (%) ↓", *([] if regression else ["ECE (%) ↓"]), "params", "MFLOPs", "train s"],
        {
            method: [
                *(pm(m["subsets"][n][key], scale, digits) for n in names),
                pm(m[average], scale, digits),
                pm(m["counterintuitive_rate"]),
                *([] if regression else [pm(over_subsets(m, "ece", names))]),
                f"{m['params']:,}",
                f"{m['flops_full'] / 1e6:.2f}",
                training_seconds(m),
            ]
            for method, m in methods.items()
        },
        wide=len(names) > WIDE_SUBSETS,
    )
    lines += [
        "",
        "ECE in this table is the mean over subsets; FLOPs are for one full-modality sample; train s is the method's "
        "own training time, plus (in brackets) the stage 1 it reused from a method before it.",
    ]
    if regression:
        lines += _sentiment_tables(methods, names)
    f1_key = "f1_non0" if regression else "f1"
    if all(f1_key in m["subsets"][names[0]] for m in methods.values()) and len(names) > 1:
        lines += _dream_table(methods, names, f1_key)
    lines += _per_class_table(methods, names)
    if key == "miou":
        lines += _iou_table(methods, names)
    counts = {n: first["subsets"][n].get("samples", [None])[0] for n in names}
    if all(isinstance(c, int) for c in counts.values()):
        few = [f"{n} ({100 / c:.1f} points a sample)" for n, c in counts.items() if 0 < c < 100]
        lines += [
            "",
            "Test samples per subset (those that have all of its modalities): "
            + ", ".join(f"{n} {c}" for n, c in counts.items())
            + (f". Few samples, so one sample moves the score a lot: {', '.join(few)}." if few else "."),
        ]
    if len(summary["seeds"]) > 1:
        lines += [
            "",
            "## Headline means with 95 % intervals over seeds",
            "",
            "Mean ± half-width of the 95 % t-interval over the seeds: how far another set of seeds (or another "
            "processor's rounding, which acts like one) may move the mean. The test set is fixed; its sampling "
            "error is in the comparisons below.",
            "",
        ]
        lines += _table(
            [*names, "average", "CR (%) ↓"],
            {
                method: [
                    *(ci(m["subsets"][n][key], scale, digits) for n in names),
                    ci(m[average], scale, digits),
                    ci(m["counterintuitive_rate"]),
                ]
                for method, m in methods.items()
            },
            wide=len(names) > WIDE_SUBSETS,
        )
    if segmentation:
        lines += ["", "## Test Dice (%) per region: WT / TC / ET", "", "| method | " + " | ".join(names) + " |"]
        lines += ["|---" * (len(names) + 1) + "|"]
        for method, m in methods.items():
            cells = [" / ".join(pm(m["subsets"][n][f"dice_{r}"], digits=1) for r in REGIONS) for n in names]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += ["", "| method | CR WT | CR TC | CR ET |", "|---|---|---|---|"]
        for method, m in methods.items():
            cr = m["counterintuitive_rate_regions"]
            lines.append(f"| {method} | " + " | ".join(pm(cr[r]) for r in REGIONS) + " |")
        lines += _region_calibration(methods, names)
    if "comparisons" in summary:
        lines += ["", "## Differences to simmlm (95 % intervals)", "", comparison_note(COMPARISON_DRAWS), ""]
        lines += comparison_markdown({"": summary["comparisons"]})
    if all("shapley" in m for m in methods.values()):
        modalities = summary["modalities"]
        lines += [
            "",
            "## Shapley contribution of each modality (percentage points)",
            "",
            SHAPLEY_NOTE_REGRESSION if regression else SHAPLEY_NOTE_MIOU if key == "miou" else SHAPLEY_NOTE,
            "",
            "| method | value | " + " | ".join(modalities) + " |",
            "|---" * (len(modalities) + 2) + "|",
        ]
        for method, m in methods.items():
            for value, phi in m["shapley"].items():
                row = " | ".join(pm(phi[x], *units(value)) for x in modalities)
                lines.append(f"| {method} | {value} | {row} |")
    if not regression:
        lines += ["", "## Calibration (%) per subset: ECE / SCE (20 bins) ↓", ""]
        calibration = {
            method: [f"{pm(m['subsets'][n]['ece'])} / {pm(m['subsets'][n]['sce'])}" for n in names]
            for method, m in methods.items()
        }
        lines += _table(names, calibration, wide=len(names) > WIDE_SUBSETS)
    lines += [
        "",
        "## Mean gate weights (test set, mean over seeds)",
        "",
        "Evenness = entropy / log(number of modalities in the subset): 1 is the plain mean of the experts, 0 a gate",
        "that uses one modality only. Of the mean weights, and per sample (mean ± std over seeds of the mean over",
        "test samples): a gate can be even on average yet pick one expert per sample. A collapsing gate shows here.",
        "",
        "| method | subset | weights | evenness of the mean | per-sample evenness |",
        "|---|---|---|---|---|",
    ]
    for method, m in methods.items():
        for subset, weights in m["gate_weights"].items():
            real = len(weights) > 1 and not any(math.isnan(v) for v in weights.values())  # NaN: no test sample
            evenness = f"{gate_evenness(list(weights.values())):.2f}" if real else NO_NUMBER
            per_sample = m.get("gate_evenness", {}).get(subset)  # absent: one modality, or a segmentation summary
            evenness += f" | {pm(per_sample, scale=1.0)}" if per_sample else f" | {NO_NUMBER}"
            if segmentation:
                per_region = m["gate_weights_regions"][subset]
                cells = [f"{k} " + "/".join(f"{per_region[k][r]:.2f}" for r in REGIONS) for k in weights]
                lines.append(f"| {method} | {subset} | " + ", ".join(cells) + f" (WT/TC/ET) | {evenness} |")
            else:
                cells = [f"{k} {v:.3f}" for k, v in weights.items()]
                lines.append(f"| {method} | {subset} | " + ", ".join(cells) + f" | {evenness} |")
    lines += [
        "",
        "## MoFe hinge during stage 2 (mean over steps)",
        "",
        "| method | lambda | hinge active (% of samples) | mean hinge |",
        "|---|---|---|---|",
    ]
    for method, m in methods.items():
        lines.append(
            f"| {method} | {m['mofe_lambda']} | {pm(m['mofe_active_fraction'])} | "
            f"{pm(m['mofe_hinge_mean'], scale=1.0, digits=4)} |"
        )
    chosen = {method: m["gate_shrinkage"] for method, m in methods.items() if "gate_shrinkage" in m}
    if chosen:
        lines += ["", "## Gate shrinkage chosen on validation (README: the gate)", ""]
        lines += ["| method | chosen per seed | validation mean score (%) per value, per seed |", "|---|---|---|"]
        for method, c in chosen.items():
            per_seed = [", ".join(f"{v}: {100 * s:.2f}" for v, s in seed.items()) for seed in c["val_mean_score"]]
            lines.append(f"| {method} | {', '.join(f'{v:g}' for v in c['chosen'])} | {'; '.join(per_seed)} |")
    return "\n".join(lines) + "\n"
