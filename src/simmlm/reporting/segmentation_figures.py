"""Figures for segmentation runs: one case under every subset (SimMLM Fig. 2) and population gates (Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simmlm.datasets.brats.loader import REGIONS, VolumeCase
from simmlm.evaluation.evaluate import region_gate_weights
from simmlm.evaluation.inferers import sliding_window_subsets
from simmlm.fileio import atomic_path
from simmlm.metrics.entropy import binary_entropy
from simmlm.reporting.report import _pyplot
from simmlm.subsets import all_subsets, bits_to_mask, mask_to_bits, subset_name

REGION_COLOURS = {"wt": "gold", "tc": "tab:red", "et": "deepskyblue"}


def _axial(volume: torch.Tensor, z: int) -> np.ndarray:
    """Axial slice (last NIfTI axis) rotated for display, anterior up."""
    return np.rot90(volume[..., z].numpy())


@torch.no_grad()
def case_figure(
    model: nn.Module,
    case: VolumeCase,
    modalities: Sequence[str],
    roi_size: Sequence[int],
    path: Path,
    overlap: float = 0.5,
    title: str = "",
) -> Path:
    """One row per modality subset: image with ground-truth outlines, prediction outlines, entropy, gate weights.

    The axial slice is the one with the most whole-tumour voxels. Outlines: WT gold, TC red, ET blue; dashed =
    ground truth, solid = prediction (sigmoid > 0.5). The image shown is the first available modality of the row.
    """
    plt = _pyplot()
    model.eval()
    device = next(model.parameters()).device
    inputs = {k: v.unsqueeze(0).to(device) for k, v in case.inputs.items()}
    available = case.mask.unsqueeze(0).to(device)
    have = int(mask_to_bits(case.mask.unsqueeze(0))[0])
    subsets = [s for s in all_subsets(len(modalities)) if s & ~have == 0]
    masks = [bits_to_mask(torch.tensor([s], device=device), len(modalities)) for s in subsets]
    outputs = sliding_window_subsets(model, inputs, available, masks, roi_size, overlap)
    z = int(case.target[0].sum((0, 1)).argmax())
    fig, axes = plt.subplots(len(subsets), 4, figsize=(13, 3.1 * len(subsets)), squeeze=False)
    for row, (bits, out) in enumerate(zip(subsets, outputs, strict=True)):
        probs = out.logits[0].float().sigmoid().cpu()
        shown = next(m for i, m in enumerate(modalities) if bits >> i & 1)
        image = _axial(case.inputs[shown][0], z)
        name = subset_name(bits, modalities)
        for col, (maps, style, label) in enumerate(((case.target, "--", "ground truth"), (probs, "-", "prediction"))):
            ax = axes[row][col]
            ax.imshow(image, cmap="gray")
            for k, region in enumerate(REGIONS):
                ax.contour(_axial(maps[k], z), levels=[0.5], colors=REGION_COLOURS[region], linestyles=style)
            ax.set_title(f"{name}: {label} on {shown}", fontsize=9)
        uncertainty = torch.where(case.brain, binary_entropy(probs), torch.nan)  # background left blank
        entropy = axes[row][2].imshow(_axial(uncertainty, z), cmap="magma", vmin=0, vmax=3 * np.log(2))
        axes[row][2].set_title("uncertainty: entropy (nats, sum over regions)", fontsize=9)
        fig.colorbar(entropy, ax=axes[row][2], fraction=0.046)
        for ax in axes[row][:3]:
            ax.axis("off")
        _gate_bars(axes[row][3], out.gate_weights, modalities, bits)
    handles = [plt.Line2D([], [], color=c, label=r.upper()) for r, c in REGION_COLOURS.items()]
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / height))  # 0.75 inch on top for the title and the legend
    fig.suptitle(title or f"case {case.case_id}", y=1 - 0.05 / height)
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.25 / height),
        ncol=3,
        frameon=False,
        title=f"axial slice {z}; dashed: ground truth, solid: prediction",
    )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _gate_bars(ax: Any, gate_weights: torch.Tensor | None, modalities: Sequence[str], bits: int) -> None:
    """Grouped bars: gate weight of each available modality for each region (one case)."""
    ax.set_title("gate weights (this case)", fontsize=9)
    if gate_weights is None:
        ax.text(0.5, 0.5, "no gate", ha="center")
        return
    weights = region_gate_weights(gate_weights[0].float().cpu())
    here = [i for i in range(len(modalities)) if bits >> i & 1]
    width = 0.8 / len(here)
    for j, i in enumerate(here):
        xs = np.arange(len(REGIONS)) + (j - (len(here) - 1) / 2) * width
        bars = ax.bar(xs, weights[i].numpy(), width, label=modalities[i])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(REGIONS)), [r.upper() for r in REGIONS])
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=7)


def population_gates_figure(summary: dict[str, Any], path: Path) -> bool:
    """Mean test-set gate weight per subset, modality and region, one panel per method and region (Fig. 3)."""
    methods = {n: m["gate_weights_regions"] for n, m in summary["methods"].items() if m.get("gate_weights_regions")}
    if not methods:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(methods), len(REGIONS), figsize=(4.2 * len(REGIONS), 3.2 * len(methods)), squeeze=False, sharey=True
    )
    for row, (method, gates) in enumerate(methods.items()):
        subsets = list(gates)
        for col, region in enumerate(REGIONS):
            ax = axes[row][col]
            bottom = np.zeros(len(subsets))
            for modality in summary["modalities"]:
                values = np.array([gates[s].get(modality, {}).get(region, 0.0) for s in subsets])
                ax.bar(subsets, values, bottom=bottom, label=modality)
                bottom += values
            ax.set_title(f"{method}: {region.upper()}", fontsize=10)
            ax.set_ylim(0, 1)
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        axes[row][0].set_ylabel("mean gate weight (test)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return True
