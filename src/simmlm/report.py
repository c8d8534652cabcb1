"""``simmlm report DIR``: a self-contained ``report.html`` with PNG figures from a benchmark's ``summary.json``."""

from __future__ import annotations

import html
import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

import simmlm
from simmlm.evaluate import headline_keys
from simmlm.subsets import subset_name


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported lazily: the CLI starts fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_std(values: list[float]) -> tuple[float, float]:
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan  # a subset that no test sample has: no bar
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _bars(summary: dict[str, Any], key: str, ylabel: str, path: Path) -> None:
    """Grouped bars: one group per subset, one bar per method, error bars = std over seeds."""
    plt = _pyplot()
    methods = summary["methods"]
    subsets = list(next(iter(methods.values()))["subsets"])
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(subsets) * max(1, len(methods) / 3), 3.6))
    for i, (name, m) in enumerate(methods.items()):
        stats = [_mean_std([100 * v for v in m["subsets"][s][key]]) for s in subsets]
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(subsets))]
        ax.bar(xs, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=3, label=name)
    ax.set_xticks(range(len(subsets)), subsets)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("available modalities at test time")
    if key == "accuracy":
        low = min(100 * min(v) for m in methods.values() for s in subsets for v in [m["subsets"][s][key]])
        ax.set_ylim(max(0.0, low - 5), 100)
    ax.legend(fontsize=8, ncol=min(len(methods), 5), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _gates(summary: dict[str, Any], path: Path) -> bool:
    """Stacked bars of the mean gate weight of each modality per subset, one panel per method with gates."""
    plt = _pyplot()
    with_gates = {n: m["gate_weights"] for n, m in summary["methods"].items() if m.get("gate_weights")}
    if not with_gates:
        return False
    fig, axes = plt.subplots(1, len(with_gates), figsize=(3.2 * len(with_gates), 3.2), squeeze=False, sharey=True)
    for ax, (name, gates) in zip(axes[0], with_gates.items(), strict=True):
        bottom = [0.0] * len(gates)
        for modality in summary["modalities"]:
            values = [g.get(modality, 0.0) for g in gates.values()]
            ax.bar(list(gates), values, bottom=bottom, label=modality)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_title(name)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", labelrotation=30)
    axes[0][0].set_ylabel("mean gate weight (test set)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _cr(summary: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    names = list(summary["methods"])
    stats = [_mean_std([100 * v for v in summary["methods"][n]["counterintuitive_rate"]]) for n in names]
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(names), 3.2))
    ax.bar(names, [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=3, color="tab:red")
    ax.set_ylabel("counterintuitive rate (%) ↓")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def _reliability(directory: Path, summary: dict[str, Any], path: Path) -> bool:
    """Reliability diagrams per subset, one line per method, test predictions pooled over seeds."""
    pooled: dict[str, dict[str, list[np.ndarray]]] = {}
    names: list[str] = []
    for method in summary["methods"]:
        for seed in summary["seeds"]:
            file = directory / "runs" / f"{method}-seed{seed}" / "predictions.npz"
            if not file.is_file():
                return False
            with np.load(file) as npz:
                names = [subset_name(int(b), summary["modalities"]) for b in npz["subsets"]]
                entry = pooled.setdefault(method, {"probs": [], "targets": []})
                entry["probs"].append(npz["probs"])
                entry["targets"].append(npz["targets"])
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.4), squeeze=False)
    for s, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        for method, entry in pooled.items():
            probs = np.concatenate([p[s] for p in entry["probs"]])
            real = np.isfinite(probs).all(-1)  # NaN rows: samples without every modality of the subset
            conf, acc, count = reliability_bins(probs[real], np.concatenate(entry["targets"])[real])
            used = count > 0
            ax.plot(conf[used], acc[used], marker="o", markersize=3, label=method)
        ax.set_title(name)
        ax.set_xlabel("confidence (max probability)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("accuracy in bin")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(directory: str | Path) -> Path:
    """Write ``report.html`` and its PNGs next to ``summary.json`` in ``directory``; returns the HTML path."""
    directory = Path(directory)
    summary_path = directory / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} not found: run `simmlm benchmark ... --out {directory}` first")
    summary = json.loads(summary_path.read_text())
    if not summary.get("methods"):
        raise ValueError(f"{summary_path} holds no method results")
    segmentation = headline_keys(next(iter(summary["methods"].values())))[0] == "dice_mean"
    figures = []
    if segmentation:
        for key in ("dice_mean", "dice_wt", "dice_tc", "dice_et"):
            label = "mean over WT, TC, ET" if key == "dice_mean" else key[5:].upper()
            _bars(summary, key, f"test Dice (%), {label}", directory / f"{key}.png")
            figures.append((f"{key}.png", f"Dice ({label}) per subset of available modalities (mean ± std over seeds)"))
    else:
        _bars(summary, "accuracy", "test accuracy (%)", directory / "accuracy.png")
        figures.append(("accuracy.png", "Accuracy per subset of available modalities (mean ± std over seeds)"))
    _bars(summary, "ece", "ECE (%) ↓", directory / "ece.png")
    _cr(summary, directory / "counterintuitive_rate.png")
    has_gates = _gates(summary, directory / "gate_weights.png")
    has_reliability = _reliability(directory, summary, directory / "reliability.png")
    markdown = (directory / "summary.md").read_text() if (directory / "summary.md").is_file() else ""
    figures += [
        ("ece.png", f"Expected calibration error per subset (20 bins{', voxel-wise' if segmentation else ''})"),
        ("counterintuitive_rate.png", "Counterintuitive rate: fewer modalities score better than more"),
    ]
    if has_gates:
        figures.append(("gate_weights.png", "Mean gate weight of each modality per subset"))
    if has_reliability:
        figures.append(("reliability.png", "Reliability diagrams (20 bins; test predictions of all seeds pooled)"))
    if (directory / "figures" / "population_gates.png").is_file():
        figures.append(("figures/population_gates.png", "Mean gate weight per subset, modality and region (test set)"))
    for case in sorted((directory / "figures").glob("case-*.png")):
        caption = f"{case.stem[5:]}: one test case under every subset: outlines (dashed truth, solid prediction), "
        figures.append((f"figures/{case.name}", caption + "entropy and gate weights"))
    body = "\n".join(
        f'<figure><img src="{f}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for f, c in figures
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>simmlm report: {html.escape(summary["dataset"])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}}
img{{max-width:100%}}.wide{{overflow-x:auto}}table{{border-collapse:collapse;font-size:13px;margin:.5em 0}}
th,td{{border:1px solid #ccc;padding:.2em .5em;text-align:left;white-space:nowrap}}
th{{background:#f0f0f0;cursor:pointer}}</style></head>
<body><h1>simmlm report: {html.escape(summary["dataset"])}</h1>
<h2>Protocol</h2><p>{html.escape(summary.get("protocol", ""))}</p>
<p>Methods: {html.escape(", ".join(summary["methods"]))}. Seeds: {html.escape(", ".join(map(str, summary["seeds"])))}.
Modalities: {html.escape(", ".join(summary["modalities"]))}. simmlm {simmlm.__version__}.</p>
<h2>Figures</h2>{body}
<h2>Tables</h2>{markdown_to_html(markdown)}{_SORT_SCRIPT}</body></html>
"""
    out = directory / "report.html"
    out.write_text(page)
    return out
