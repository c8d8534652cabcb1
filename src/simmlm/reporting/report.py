"""``simmlm report DIR``: a self-contained ``report.html`` with PNG figures from a benchmark's ``summary.json``."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

import simmlm
from simmlm.evaluation.evaluate import headline_keys
from simmlm.fileio import write_text_atomic
from simmlm.reporting import report_figures as rf
from simmlm.subsets import subset_name

_DICE = ("dice_mean", "dice_wt", "dice_tc", "dice_et")
_pyplot = rf.pyplot  # matplotlib on the Agg backend (simmlm.reporting.segmentation_figures draws with it)

_SORT_SCRIPT = """<script>
document.querySelectorAll("table.sortable th").forEach((th, col) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], rows = Array.from(body.rows);
  const key = r => { const t = r.cells[col].textContent, v = parseFloat(t); return isNaN(v) ? t : v; };
  const up = th.dataset.order !== "up"; th.dataset.order = up ? "up" : "down";
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (up ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
}));
</script>"""


def markdown_to_html(markdown: str) -> str:
    """The subset of Markdown that ``summary.md`` uses (headings, paragraphs, pipe tables) as HTML; tables are
    sortable by clicking a column header and scroll sideways when wide."""
    out: list[str] = []
    table: list[list[str]] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{html.escape(' '.join(paragraph))}</p>")
            paragraph.clear()
        if table:
            head, *rows = table
            cells = "".join(f"<th>{html.escape(c)}</th>" for c in head)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
            out.append(
                f'<div class="wide"><table class="sortable"><thead><tr>{cells}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>"
            )
            table.clear()

    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            if paragraph:
                flush()
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):  # skip the |---| separator row
                table.append(cells)
            continue
        if table:
            flush()
        if stripped.startswith("#"):
            flush()
            level = min(len(stripped) - len(stripped.lstrip("#")) + 1, 4)  # "#" -> h2 under the page's h1
            out.append(f"<h{level}>{html.escape(stripped.lstrip('#').strip())}</h{level}>")
        elif stripped:
            paragraph.append(stripped)
        else:
            flush()
    flush()
    return "\n".join(out)


def reliability_bins(probs: np.ndarray, targets: np.ndarray, n_bins: int = 20) -> tuple[np.ndarray, ...]:
    """Per equal-width confidence bin: mean confidence, accuracy and count (bins as in the ECE of simmlm.metrics)."""
    confidence = probs.max(-1)
    correct = probs.argmax(-1) == targets
    bins = np.clip(np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], confidence, side="left"), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf = np.bincount(bins, weights=confidence, minlength=n_bins) / np.maximum(count, 1)
    acc = np.bincount(bins, weights=correct, minlength=n_bins) / np.maximum(count, 1)
    return conf, acc, count


def _reliability(directory: Path, summary: dict[str, Any], path: Path) -> str | None:
    """Reliability diagrams, one line per method, test predictions of all seeds pooled: one panel per subset up to
    ``MAX_BAR_SUBSETS`` subsets, else one per subset size k; returns the caption's tail (None without predictions)."""
    modalities = summary["modalities"]
    runs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    bits: list[int] = []
    for method in summary["methods"]:
        for seed in summary["seeds"]:
            file = directory / "runs" / f"{method}-seed{seed}" / "predictions.npz"
            if not file.is_file():
                return None
            with np.load(file) as npz:
                bits = [int(b) for b in npz["subsets"]]
                runs.setdefault(method, []).append((npz["probs"], npz["targets"]))
    if len(bits) <= rf.MAX_BAR_SUBSETS:
        groups = [(subset_name(b, modalities), [s]) for s, b in enumerate(bits)]
        tail = "one panel per subset."
    else:
        sizes = sorted({b.bit_count() for b in bits})
        groups = []
        for k in sizes:
            members = [s for s, b in enumerate(bits) if b.bit_count() == k]
            groups.append((f"k = {k} ({len(members)} subset{'s' if len(members) > 1 else ''})", members))
        tail = "one panel per number k of available modalities, pooling the predictions under every subset of size k."
    ncols = min(4, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    panel = min(3.0, (rf.MAX_WIDTH - 0.4) / ncols)
    fig, axes = rf.figure(nrows, ncols, panel * ncols + 0.4, panel * nrows + 0.6)
    for n, (ax, (title, members)) in enumerate(zip(axes.flat, groups, strict=False)):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        for method, seeds in runs.items():
            probs = np.concatenate([p[s] for p, _ in seeds for s in members])
            targets = np.concatenate([t for _, t in seeds for _ in members])
            real = np.isfinite(probs).all(-1)  # NaN rows: samples without every modality of the subset
            conf, acc, count = reliability_bins(probs[real], targets[real])
            used = count > 0
            ax.plot(conf[used], acc[used], marker="o", markersize=3, label=method)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence" if n + ncols >= len(groups) else "")
        ax.set_ylabel("accuracy in bin" if n % ncols == 0 else "")
    for ax in axes.flat[len(groups) :]:
        fig.delaxes(ax)
    rf.legend(fig, axes.flat[0])
    rf.save(fig, path)
    return tail


def _figures(directory: Path, summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Draw the figures (rules in :mod:`~simmlm.reporting.report_figures`); returns (file, caption) pairs in page
    order."""
    key = headline_keys(next(iter(summary["methods"].values())))[0]
    segmentation, regression = key == "dice_mean", key == "mae"
    if regression:
        return _regression_figures(directory, summary)
    if segmentation:
        scores = [(k, "Dice (%), " + ("mean over WT, TC, ET" if k == "dice_mean" else k[5:].upper())) for k in _DICE]
        gains = [(k, "Dice, " + label.split(", ", 1)[1]) for k, label in scores]
        name = "Dice"
    elif key == "miou":
        scores, gains, name = [("miou", "test mIoU (%)")], [("miou", "test mIoU")], "mIoU"
    else:
        scores = [("accuracy", "test accuracy (%)")]
        gains = [("accuracy", "test accuracy")]
        name = "Accuracy"
    head_key, head_label = scores[0]
    few = len(rf.subsets_of(summary)) <= rf.MAX_BAR_SUBSETS
    seeds = "mean ± std over seeds"
    figures = []
    if few:
        for key, label in scores:
            rf.grouped_bars(summary, key, label, directory / f"{key}.png")
            what = f"Dice ({label.split(', ', 1)[1]})" if segmentation else name
            figures.append((f"{key}.png", f"{what} per subset of available modalities ({seeds})"))
    rf.by_size_figure(summary, [*scores, ("ece", "ECE (%) ↓")], directory / "by_size.png")
    figures.append(
        (
            "by_size.png",
            f"{name} and ECE by number k of available modalities: per seed, the mean over the subsets of size k "
            "(subsets without test samples skipped); line: mean over seeds, band: ± std over seeds",
        )
    )
    if not few:
        tail = rf.score_heatmap(summary, head_key, head_label, directory / f"{head_key}_heatmap.png")
        what = "Dice (mean over WT, TC, ET" if segmentation else f"{name} ("
        caption = f"{what}%, mean over seeds) per subset (rows) and method (columns), rows sorted by "
        caption += "the mean over methods, best first. "
        figures.append((f"{head_key}_heatmap.png", caption + tail))
    rf.added_value_figure(summary, gains, directory / "added_value.png")
    caption = (
        f"Added value of each modality m: per seed, the mean over the subsets S that contain m (S minus m non-empty) "
        f"of {'Dice' if segmentation else name}(S) − {'Dice' if segmentation else name}(S minus m), in "
        f"percentage points; bars: {seeds}; subsets without test samples skipped"
    )
    figures.append(("added_value.png", caption + ("; one panel per Dice" if segmentation else "")))
    if few:
        rf.grouped_bars(summary, "ece", "ECE (%) ↓", directory / "ece.png")
        ece = f"Expected calibration error per subset (20 bins{', voxel-wise' if segmentation else ''}; {seeds})"
        figures.append(("ece.png", ece))
    rf.cr_bars(summary, directory / "counterintuitive_rate.png")
    figures.append(("counterintuitive_rate.png", "Counterintuitive rate: fewer modalities score better than more"))
    gates = rf.gate_heatmap(summary, directory / "gate_weights.png")
    if gates is not None:
        caption = "Mean gate weight (test set) of each modality (columns) per subset (rows), one panel per method "
        figures.append(("gate_weights.png", caption + "with a gate. " + gates))
    if all("shapley" in m for m in summary["methods"].values()):
        from simmlm.reporting.robustness_report import shapley_bars

        titles = {
            "probability": "value: probability of the true class",
            "correctness": "value: correct",
            "miou": "value: the image's mIoU",
        }
        present = next(iter(summary["methods"].values()))["shapley"]
        panels = [
            (title, {n: m["shapley"][value] for n, m in summary["methods"].items()})
            for value, title in titles.items()
            if value in present
        ]
        shapley_bars(panels, summary["modalities"], directory / "shapley.png")
        caption = "Shapley contribution of each modality (percentage points; mean over test samples; bars: mean ± std "
        caption += "over seeds), from the predictions under every subset; no modality counts as chance (1/K; mIoU: 0)"
        figures.append(("shapley.png", caption))
    reliability = _reliability(directory, summary, directory / "reliability.png")
    if reliability is not None:
        caption = "Reliability diagrams (20 bins; test predictions of all seeds pooled; dashed: perfect calibration): "
        figures.append(("reliability.png", caption + reliability))
    return figures


def _regression_figures(directory: Path, summary: dict[str, Any]) -> list[tuple[str, str]]:
    """A regression's figures: MAE per subset (bars, or a heatmap beyond ``MAX_BAR_SUBSETS`` subsets), MAE and CR by
    the number of available modalities, CR, the gate weights and the Shapley contributions."""
    seeds, figures = "mean ± std over seeds", []
    if len(rf.subsets_of(summary)) <= rf.MAX_BAR_SUBSETS:
        rf.grouped_bars(summary, "mae", "test MAE ↓", directory / "mae.png")
        figures.append(("mae.png", f"MAE per subset of available modalities ({seeds})"))
    else:
        tail = rf.score_heatmap(summary, "mae", "test MAE ↓", directory / "mae_heatmap.png")
        figures.append(("mae_heatmap.png", "MAE (mean over seeds) per subset (rows, best first) and method. " + tail))
    rf.by_size_figure(summary, [("mae", "test MAE ↓")], directory / "by_size.png")
    figures.append(
        (
            "by_size.png",
            "MAE by number k of available modalities (per seed, the mean over the subsets "
            "of size k; line: mean over seeds, band: ± std over seeds)",
        )
    )
    rf.cr_bars(summary, directory / "counterintuitive_rate.png")
    figures.append(
        ("counterintuitive_rate.png", "Counterintuitive rate: the sign right with fewer modalities, wrong with more")
    )
    gates = rf.gate_heatmap(summary, directory / "gate_weights.png")
    if gates is not None:
        figures.append(("gate_weights.png", "Mean gate weight (test set) per subset and modality. " + gates))
    if all("shapley" in m for m in summary["methods"].values()):
        from simmlm.reporting.robustness_report import shapley_bars

        methods = summary["methods"].items()
        shapley_bars(
            [("value: |y| - |error|", {n: m["shapley"]["abs_error"] for n, m in methods})],
            summary["modalities"],
            directory / "shapley.png",
            scale=1.0,
        )
        figures.append(
            (
                "shapley.png",
                "Shapley contribution of each modality to the error's reduction against "
                "predicting 0 (score units; bars: mean ± std over seeds)",
            )
        )
    return figures


def _read_json(path: Path) -> dict[str, Any]:
    """A results file, or one ``ValueError`` naming it (a truncated or hand-edited file)."""
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not readable JSON ({err}); rerun the benchmark (with --resume) to write it again"
        ) from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not the summary simmlm writes")
    return data


def write_report(directory: str | Path) -> Path:
    """Write ``report.html`` and its PNGs in ``directory``: a benchmark's (``summary.json``), a robustness suite's
    (``robustness.json``), or both; returns the HTML path."""
    directory = Path(directory)
    summary_path, robustness_path = directory / "summary.json", directory / "robustness.json"
    if not summary_path.is_file() and not robustness_path.is_file():
        raise FileNotFoundError(
            f"{summary_path} not found: run `simmlm benchmark ... --out {directory}` (or `simmlm robustness`) first"
        )
    figures: list[tuple[str, str]] = []
    markdown, intro, title = "", "", ""
    if summary_path.is_file():
        summary = _read_json(summary_path)
        if not summary.get("methods"):
            raise ValueError(f"{summary_path} holds no method results")
        figures = _figures(directory, summary)
        markdown = (directory / "summary.md").read_text() if (directory / "summary.md").is_file() else ""
        if (directory / "figures" / "population_gates.png").is_file():
            figures.append(
                ("figures/population_gates.png", "Mean gate weight per subset, modality and region (test set)")
            )
        for case in sorted((directory / "figures").glob("case-*.png")):
            caption = f"{case.stem[5:]}: one test case under every subset: outlines (dashed truth, solid prediction), "
            figures.append((f"figures/{case.name}", caption + "entropy and gate weights"))
        title = summary["dataset"] + (f" ({Path(summary['data_dir']).name})" if summary.get("data_dir") else "")
        intro = f"""<h2>Protocol</h2><p>{html.escape(summary.get("protocol", ""))}</p>
<p>Methods: {html.escape(", ".join(summary["methods"]))}. Seeds: {html.escape(", ".join(map(str, summary["seeds"])))}.
Modalities: {html.escape(", ".join(summary["modalities"]))}. simmlm {simmlm.__version__}.</p>"""
        if "experts" in summary:
            named = "; ".join(f"{n}: {e['kind']}" for n, e in summary["experts"].items())
            intro += f"<p>Experts: {html.escape(named)} (why: the summary's protocol section).</p>"
    if robustness_path.is_file():
        from simmlm.reporting.robustness_report import robustness_markdown, write_figures

        robustness = _read_json(robustness_path)
        figures += write_figures(robustness, directory)
        markdown += "\n" + robustness_markdown(robustness)
        title = title or f"robustness, {robustness['dataset']}"
        intro = (
            intro or f"<p>Methods: {html.escape(', '.join(robustness['methods']))}. simmlm {simmlm.__version__}.</p>"
        )
    body = "\n".join(
        f'<figure><img src="{html.escape(f)}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for f, c in figures
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>simmlm report: {html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}}
img{{max-width:100%;height:auto}}.wide{{overflow-x:auto}}table{{border-collapse:collapse;font-size:13px;margin:.5em 0}}
th,td{{border:1px solid #ccc;padding:.2em .5em;text-align:left;white-space:nowrap}}
th{{background:#f0f0f0;cursor:pointer}}</style></head>
<body><h1>simmlm report: {html.escape(title)}</h1>
{intro}
<h2>Figures</h2>{body}
<h2>Tables</h2>{markdown_to_html(markdown)}{_SORT_SCRIPT}</body></html>
"""
    out = directory / "report.html"
    write_text_atomic(out, page)
    return out
