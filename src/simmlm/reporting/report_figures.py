"""The figures of ``simmlm report``, sized to stay readable for 2 to 8 modalities (3 to 255 subsets).

Every figure is at most ``MAX_WIDTH`` x ``MAX_HEIGHT`` inches at ``DPI`` (1140 x 1560 px), has its legends outside
the axes and rotates or shrinks crowded tick labels (:func:`save`); metrics in % or in their units. When:

* up to ``MAX_BAR_SUBSETS`` subsets (M <= 3): grouped bars per subset (:func:`grouped_bars`);
* always: scores and ECE by number of available modalities (:func:`by_size_figure`), each modality's added value
  (:func:`added_value_figure`);
* more than ``MAX_BAR_SUBSETS`` subsets: a subset x method heatmap (:func:`score_heatmap`), every row up to
  ``MAX_ROWS`` subsets, else the ``EDGE_ROWS`` best and worst;
* gate weights as subset x modality heatmaps (:func:`gate_heatmap`), at most ``MAX_ROWS`` rows;
* reliability diagrams per subset, or pooled by subset size beyond ``MAX_BAR_SUBSETS`` (``simmlm.reporting.report``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simmlm.reporting.format import LOWER_IS_BETTER, units
from simmlm.subsets import subset_from_names, subset_name

DPI = 120
MAX_WIDTH = 9.5  # inches: 1140 px
MAX_HEIGHT = 13.0  # inches: 1560 px
MAX_BAR_SUBSETS = 7
MAX_ROWS = 31
EDGE_ROWS = 15
_LABEL_PT = 7.5  # font size of heatmap row labels


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported lazily: the CLI starts fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std over seeds; NaN when any value is NaN (a subset that no test sample has)."""
    if not values or any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def subsets_of(summary: dict[str, Any]) -> list[str]:
    """The subset names of a summary, in its order (that of its first method)."""
    return list(next(iter(summary["methods"].values()))["subsets"])


def bits_of(name: str, modalities: Sequence[str]) -> int:
    return subset_from_names(name.split("+"), modalities)


def short_label(bits: int, modalities: Sequence[str]) -> str:
    """A subset's name, or ``all``/``all but x, y`` when that is much shorter than a long name."""
    name = subset_name(bits, modalities)
    full = (1 << len(modalities)) - 1
    if len(name) <= 24:
        return name
    if bits == full:
        return "all"
    rest = subset_name(full & ~bits, modalities).replace("+", ", ")
    return f"all but {rest}" if len(rest) + 8 < len(name) else name


def seed_scores(summary: dict[str, Any], method: str, key: str) -> np.ndarray:
    """``[subsets, seeds]`` values of ``key`` (NaN where no test sample has the subset)."""
    subsets = summary["methods"][method]["subsets"]
    return np.array([subsets[s][key] for s in subsets_of(summary)], dtype=float)


def by_size(summary: dict[str, Any], key: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per method: subset sizes k, and mean and std over seeds of (per seed) the mean of ``key`` over the subsets
    of size k (subsets without test samples skipped)."""
    sizes = np.array([bits_of(s, summary["modalities"]).bit_count() for s in subsets_of(summary)])
    ks = np.unique(sizes)
    out = {}
    for method in summary["methods"]:
        scores = seed_scores(summary, method, key)
        stats = [mean_std([_finite_mean(scores[sizes == k, j]) for j in range(scores.shape[1])]) for k in ks]
        out[method] = (ks, np.array([s[0] for s in stats]), np.array([s[1] for s in stats]))
    return out


def added_value(summary: dict[str, Any], key: str) -> dict[str, dict[str, tuple[float, float]]]:
    """Per method and modality m: mean and std over seeds of (per seed) the mean over the subsets S that contain m,
    with S \\ {m} non-empty, of ``key(S) - key(S \\ {m})``; pairs where either score is NaN are skipped."""
    modalities = summary["modalities"]
    index = {bits_of(s, modalities): i for i, s in enumerate(subsets_of(summary))}
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for method in summary["methods"]:
        scores = seed_scores(summary, method, key)
        out[method] = {}
        for m, modality in enumerate(modalities):
            pairs = [(i, index[b & ~(1 << m)]) for b, i in index.items() if b >> m & 1 and (b & ~(1 << m)) in index]
            per_seed = []
            for seed in range(scores.shape[1]):
                diffs = [scores[i, seed] - scores[r, seed] for i, r in pairs]
                per_seed.append(_finite_mean(np.array(diffs, dtype=float)))
            out[method][modality] = mean_std(per_seed)
    return out


def _ticks(labels: list[Any]) -> list[Any]:
    return [t for t in labels if t.get_visible() and t.get_text()]


def _crowded(labels: list[Any], renderer: Any, gap: float = 0.0) -> bool:
    """Whether tick labels overlap or come closer than ``gap`` px; tilted labels (parallel, anchored at one end)
    crowd when their perpendicular distance is less than their height."""
    ticks = _ticks(labels)
    angle = math.radians(ticks[0].get_rotation() % 180) if ticks else 0.0
    if len(ticks) > 1 and 0.01 < angle < math.pi / 2 - 0.01:
        placed = [(t.get_window_extent(renderer), t.get_horizontalalignment()) for t in ticks]
        anchors = sorted(b.x1 if ha == "right" else b.x0 if ha == "left" else (b.x0 + b.x1) / 2 for b, ha in placed)
        pitch = min(b - a for a, b in zip(anchors, anchors[1:], strict=False))
        height = max(t.get_fontsize() * (t.get_text().count("\n") + 1) for t in ticks) * DPI / 72
        return pitch * math.sin(angle) < 1.1 * height + gap
    boxes = [t.get_window_extent(renderer) for t in ticks]
    return any(
        a.x0 < b.x1 + gap and b.x0 < a.x1 + gap and a.y0 < b.y1 + gap and b.y0 < a.y1 + gap
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
    )


def layout_problems(fig: Any) -> list[str]:
    """Overlapping tick labels, and legends that overlap an axes (tests use it on every figure before saving)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for n, ax in enumerate(axes):
        for axis in ("x", "y"):
            if _crowded(getattr(ax, f"get_{axis}ticklabels")(), renderer, gap=-1.0):
                problems.append(f"axes {n}: overlapping {axis} tick labels")
    legends = list(fig.legends) + [ax.get_legend() for ax in axes if ax.get_legend() is not None]
    for legend in legends:
        a = legend.get_window_extent(renderer)
        if a.x0 < -1 or a.y0 < -1 or a.x1 > fig.bbox.x1 + 1 or a.y1 > fig.bbox.y1 + 1:
            problems.append("a legend is cut off at the figure's edge")
        for n, ax in enumerate(axes):
            b = ax.bbox
            if a.x0 < b.x1 - 1 and b.x0 < a.x1 - 1 and a.y0 < b.y1 - 1 and b.y0 < a.y1 - 1:
                problems.append(f"a legend covers axes {n}")
    return problems


def declutter(fig: Any) -> None:
    """Crowded x tick labels: wrap them at '+', else tilt them, else turn them upright, then shrink them;
    crowded y tick labels: shrink them."""
    for step in ("wrap", "tilt", "upright", "shrink", "shrink", "shrink"):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        crowded = [(ax, "x") for ax in fig.axes if _crowded(ax.get_xticklabels(), renderer, gap=6.0)]
        crowded += [(ax, "y") for ax in fig.axes if _crowded(ax.get_yticklabels(), renderer)]
        if not crowded:
            return
        for ax, axis in crowded:
            texts = [t.get_text().replace("+\n", "+") for t in ax.get_xticklabels()]
            if axis == "x" and step == "wrap" and any("+" in t for t in texts):
                ax.set_xticks(ax.get_xticks(), [t.replace("+", "+\n") for t in texts])
            elif axis == "x" and step in ("wrap", "tilt", "upright"):
                ax.set_xticks(ax.get_xticks(), texts)
                upright, top = step == "upright", ax.xaxis.get_major_ticks()[0].label2.get_visible()
                ax.tick_params(axis="x", labelrotation=90 if upright else 30)
                for t in ax.get_xticklabels():
                    t.set_horizontalalignment("center" if upright else "left" if top else "right")
                    t.set_rotation_mode("default" if upright else "anchor")
            else:
                size = _ticks(getattr(ax, f"get_{axis}ticklabels")())[0].get_fontsize()
                ax.tick_params(axis=axis, labelsize=size * 0.8)


def save(fig: Any, path: Path, **options: Any) -> None:
    """Write ``fig`` to ``path`` atomically (a full disk leaves the old figure or none, never half of one)."""
    from simmlm.fileio import atomic_path

    declutter(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **{"dpi": DPI, **options})
    pyplot().close(fig)


def figure(nrows: int, ncols: int, width: float, height: float, **kwargs: Any) -> tuple[Any, np.ndarray]:
    size = (min(MAX_WIDTH, width), min(MAX_HEIGHT, height))
    fig, axes = pyplot().subplots(nrows, ncols, figsize=size, dpi=DPI, squeeze=False, layout="constrained", **kwargs)
    return fig, axes


def _columns(fig: Any, labels: list[str]) -> int:
    """Legend columns (8 pt entries) that fit the figure's width."""
    entry = 0.5 + 0.6 * 8 / 72 * max(len(t) for t in labels)  # inches: handle, padding and text
    return max(1, min(len(labels), int(fig.get_figwidth() / entry)))


def legend(fig: Any, ax: Any) -> None:
    """One legend for the figure, above the axes (outside the data)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=_columns(fig, labels), fontsize=8, frameon=False)


def grouped_bars(summary: dict[str, Any], key: str, ylabel: str, path: Path) -> None:
    """Grouped bars: one group per subset, one bar per method, error bars = std over seeds (few subsets only)."""
    methods = summary["methods"]
    subsets = subsets_of(summary)
    width = 0.8 / len(methods)
    fig, axes = figure(1, 1, 1.6 + 1.4 * len(subsets) * max(1, len(methods) / 3), 3.6)
    ax = axes[0][0]
    for i, (name, m) in enumerate(methods.items()):
        stats = [mean_std([units(key)[0] * v for v in m["subsets"][s][key]]) for s in subsets]
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(subsets))]
        ax.bar(xs, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=3, label=name)
    ax.set_xticks(range(len(subsets)), subsets)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("available modalities at test time")
    if key == "accuracy":
        low = np.nanmin([100 * v for m in methods.values() for s in subsets for v in m["subsets"][s][key]] + [100])
        ax.set_ylim(max(0.0, low - 5), 100)
    ax.legend(
        fontsize=8, ncol=_columns(fig, list(methods)), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False
    )
    ax.grid(axis="y", alpha=0.3)
    save(fig, path)


def by_size_figure(summary: dict[str, Any], panels: list[tuple[str, str]], path: Path) -> None:
    """One panel per (key, label): a line per method over k = number of available modalities, band = ± std."""
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = figure(nrows, ncols, 0.6 + 3.2 * ncols, 0.9 + 2.9 * nrows)
    for ax, (key, label) in zip(axes.flat, panels, strict=False):
        for method, (ks, mean, std) in by_size(summary, key).items():
            mean, std = units(key)[0] * mean, units(key)[0] * std
            (line,) = ax.plot(ks, mean, marker="o", markersize=4, label=method)
            ax.fill_between(ks, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xticks(ks)
        ax.set_xlabel("number of available modalities k")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        fig.delaxes(ax)
    legend(fig, axes.flat[0])
    save(fig, path)


def added_value_figure(summary: dict[str, Any], panels: list[tuple[str, str]], path: Path) -> None:
    """Grouped bars per (key, label) panel: modalities on x, one bar per method, error bars = std over seeds."""
    modalities, methods = summary["modalities"], list(summary["methods"])
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    group = max(0.25 + 0.12 * len(methods), 0.09 * max(len(m) for m in modalities))  # inches per modality
    fig, axes = figure(nrows, ncols, max(4.5, 1.2 + ncols * (1.0 + len(modalities) * group)), 0.9 + 3.0 * nrows)
    width = 0.8 / len(methods)
    for ax, (key, label) in zip(axes.flat, panels, strict=False):
        stats = added_value(summary, key)
        for i, method in enumerate(methods):
            xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(modalities))]
            values = [stats[method][m] for m in modalities]
            ax.bar(xs, [100 * v[0] for v in values], width, yerr=[100 * v[1] for v in values], capsize=2, label=method)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(modalities)), modalities)
        ax.set_title(f"added {label}", fontsize=9)
        ax.set_ylabel("percentage points")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        fig.delaxes(ax)
    legend(fig, axes.flat[0])
    save(fig, path)


def _annotate(fig: Any, ax: Any, data: np.ndarray, fmt: str, norm: Any) -> bool:
    """Write each finite cell's value into the heatmap when a font of >= 6 pt fits the cells; returns whether."""
    fig.canvas.draw()
    box = ax.get_window_extent()
    cell_w, cell_h = box.width / data.shape[1], box.height / data.shape[0]
    width = max((len(fmt.format(v)) for v in data[np.isfinite(data)]), default=0)
    for size in (8.0, 7.0, 6.0):
        px = size * DPI / 72
        if cell_w >= 0.62 * px * width + 4 and cell_h >= 1.2 * px:
            for (r, c), v in np.ndenumerate(data):
                if np.isfinite(v):
                    color = "white" if norm(v) < 0.55 else "black"
                    ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=size, color=color)
            return True
    return False


def _cmap() -> Any:
    import matplotlib

    return matplotlib.colormaps["viridis"].with_extremes(bad="white")


def _abbreviations(labels: Sequence[str]) -> str:
    """The caption's note on the short labels of :func:`short_label`, when there are some."""
    if any(t == "all" or t.startswith("all but ") for t in labels):
        return " Long subset names are shortened: 'all but x, y' is every modality except x and y."
    return ""


def _label_inches(labels: Sequence[str]) -> float:
    return 0.3 + 0.6 * _LABEL_PT / 72 * max((len(t) for t in labels), default=0)


def score_heatmap(summary: dict[str, Any], key: str, label: str, path: Path) -> str:
    """Subsets (rows, best first by the mean over methods) x methods; returns the caption's tail."""
    import matplotlib

    modalities, methods, subsets = summary["modalities"], list(summary["methods"]), subsets_of(summary)
    scale = units(key)[0]  # percentage points, or the metric's own units
    means = np.array(
        [[mean_std(list(scale * seed_scores(summary, m, key)[i]))[0] for m in methods] for i in range(len(subsets))]
    )
    rank = np.array([_finite_mean(row) for row in means]) * (-1 if key in LOWER_IS_BETTER else 1)
    ranked = sorted((int(i) for i in np.flatnonzero(np.isfinite(rank))), key=lambda i: -rank[i])
    missing = len(subsets) - len(ranked)
    rows: list[int | None]
    if len(subsets) <= MAX_ROWS:
        rows = [*ranked, *(int(i) for i in np.flatnonzero(~np.isfinite(rank)))]
        shown = f"all {len(subsets)} subsets"
    elif len(ranked) <= MAX_ROWS:
        rows, shown = list(ranked), f"the {len(ranked)} subsets with test samples"
    else:
        rows = [*ranked[:EDGE_ROWS], None, *ranked[-EDGE_ROWS:]]
        shown = (
            f"the {EDGE_ROWS} best and the {EDGE_ROWS} worst of the {len(subsets)} subsets, separated by a gap; "
            f"the {len(ranked) - 2 * EDGE_ROWS} in between are in the tables below"
        )
    data = np.array([means[r] if r is not None else np.full(len(methods), np.nan) for r in rows])
    labels = ["" if r is None else short_label(bits_of(subsets[r], modalities), modalities) for r in rows]
    width = _label_inches(labels) + 0.95 * len(methods) + 1.3
    fig, axes = figure(1, 1, width, 1.3 + 0.23 * len(rows))
    ax = axes[0][0]
    finite = data[np.isfinite(data)]
    norm = matplotlib.colors.Normalize(*((float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)))
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap=_cmap(), norm=norm, interpolation="nearest")
    ax.set_yticks([i for i, r in enumerate(rows) if r is not None], [t for t in labels if t], fontsize=_LABEL_PT)
    ax.set_xticks(range(len(methods)), methods)
    ax.tick_params(axis="x", top=True, labeltop=True, bottom=False, labelbottom=False)
    if None in rows:
        gap = rows.index(None)
        for y in (gap - 0.5, gap + 0.5):
            ax.axhline(y, color="black", linewidth=1.2)
        hidden = len(ranked) - 2 * EDGE_ROWS
        ax.text((len(methods) - 1) / 2, gap, f"⋯ {hidden} subsets not shown ⋯", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label=label, shrink=min(1.0, 8 / max(len(rows), 1) + 0.3))
    annotated = _annotate(fig, ax, data, "{:.1f}" if scale == 100 else "{:.2f}", norm)
    save(fig, path)
    tail = f"Rows: {shown}" + (f" ({missing} without test samples left out)" if missing and None in rows else "")
    return tail + ("; values annotated" if annotated else "") + "." + _abbreviations(labels)


def _gate_rows(names: list[str], modalities: Sequence[str]) -> tuple[list[str], str]:
    if len(names) <= MAX_ROWS:
        return names, f"all {len(names)} subsets"
    m = len(modalities)
    full = (1 << m) - 1
    by_bits = {bits_of(n, modalities): n for n in names}
    loo = [by_bits[b] for b in sorted(by_bits) if b.bit_count() == m - 1]
    pairs = [by_bits[b] for b in sorted(by_bits) if b.bit_count() == 2]
    rows = ([by_bits[full]] if full in by_bits else []) + loo
    kept = pairs[: max(0, MAX_ROWS - len(rows))]
    some = "" if len(kept) == len(pairs) else f"the first {len(kept)} (in modality order) of "
    text = f"{len(names)} subsets; shown: the full set, the {len(loo)} leave-one-out subsets and "
    text += f"{some}the {len(pairs)} pairs"
    return rows + kept, text


def gate_heatmap(summary: dict[str, Any], path: Path) -> str | None:
    """Mean gate weight per subset (rows) and modality (columns), one panel per method with gates; returns the
    caption's tail, or None when no method has gate weights."""
    import matplotlib

    with_gates = {n: m["gate_weights"] for n, m in summary["methods"].items() if m.get("gate_weights")}
    if not with_gates:
        return None
    modalities = summary["modalities"]
    names = [s for s in subsets_of(summary) if any(s in g for g in with_gates.values())]
    rows, shown = _gate_rows(names, modalities)
    labels = [short_label(bits_of(s, modalities), modalities) for s in rows]
    width = _label_inches(labels) + len(with_gates) * (0.3 + 0.42 * len(modalities)) + 1.0
    fig, axes = figure(1, len(with_gates), width, max(2.6, 1.5 + 0.23 * len(rows)), sharey=True)
    norm = matplotlib.colors.Normalize(0.0, 1.0)
    annotated = []
    for ax, (method, gates) in zip(axes[0], with_gates.items(), strict=True):
        data = np.array([[gates.get(s, {}).get(m, np.nan) for m in modalities] for s in rows], dtype=float)
        image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap=_cmap(), norm=norm, interpolation="nearest")
        ax.set_title(method, fontsize=9)
        ax.set_xticks(range(len(modalities)), modalities, fontsize=8)
        ax.set_yticks(range(len(rows)), labels, fontsize=_LABEL_PT)
        annotated.append(_annotate(fig, ax, data, "{:.2f}", norm))
    fig.colorbar(image, ax=axes[0].tolist(), label="mean gate weight (test set)", shrink=0.8)
    save(fig, path)
    tail = f"Rows: {shown}; blank: modality absent" + ("; values annotated" if all(annotated) else "") + "."
    return tail + _abbreviations(labels)


def cr_bars(summary: dict[str, Any], path: Path) -> None:
    names = list(summary["methods"])
    stats = [mean_std([100 * v for v in summary["methods"][n]["counterintuitive_rate"]]) for n in names]
    fig, axes = figure(1, 1, 1.5 + 1.1 * len(names), 3.2)
    (ax := axes[0][0]).bar(names, [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=3, color="tab:red")
    ax.set_ylabel("counterintuitive rate (%) ↓")
    ax.grid(axis="y", alpha=0.3)
    save(fig, path)
