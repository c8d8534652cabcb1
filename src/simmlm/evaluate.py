"""Per-subset evaluation: accuracy / Dice, ECE, SCE, counterintuitive rate and mean gate weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from simmlm.methods.predict import SubsetPredictions, sliding_window_subsets
from simmlm.metrics import (
    accuracy,
    counterintuitive_rate,
    expected_calibration_error,
    static_calibration_error,
)
from simmlm.metrics.segmentation import VoxelCalibration, dice_score
from simmlm.subsets import all_subsets, bits_to_mask, mask_to_bits, subset_name


def classification_report(preds: SubsetPredictions, modalities: Sequence[str], n_bins: int = 20) -> dict[str, Any]:
    """Metrics of a classifier under every subset in ``preds``.

    Returns:
        ``{"subsets": {name: {"accuracy", "ece", "sce"}}, "average_accuracy", "counterintuitive_rate",
        "gate_weights": {name: {modality: mean weight}}}``; CR uses correctness (0/1) as the score P.
    """
    probs = preds.logits.float().softmax(-1)  # [S, N, K]
    subsets: dict[str, dict[str, float]] = {}
    gate_weights: dict[str, dict[str, float]] = {}
    for s, bits in enumerate(preds.subsets):
        name = subset_name(bits, modalities)
        subsets[name] = {
            "accuracy": accuracy(probs[s], preds.targets).item(),
            "ece": expected_calibration_error(probs[s], preds.targets, n_bins).item(),
            "sce": static_calibration_error(probs[s], preds.targets, n_bins).item(),
        }
        if preds.gate_weights is not None:
            mean = preds.gate_weights[s].float().mean(0)  # [M] or [M, K]
            gate_weights[name] = {m: mean[i].mean().item() for i, m in enumerate(modalities) if bits >> i & 1}
    correct = (probs.argmax(-1) == preds.targets.unsqueeze(0)).float().T  # [N, S]
    report: dict[str, Any] = {
        "subsets": subsets,
        "average_accuracy": sum(v["accuracy"] for v in subsets.values()) / len(subsets),
        "counterintuitive_rate": counterintuitive_rate(correct, preds.subsets, preds.available).item(),
        "gate_weights": gate_weights,
    }
    return report


REGIONS = ("wt", "tc", "et")


@torch.no_grad()
def segmentation_report(
    model: nn.Module,
    dataset: Any,
    modalities: Sequence[str],
    roi_size: Sequence[int],
    overlap: float = 0.5,
    subsets: Sequence[int] | None = None,
    n_bins: int = 20,
) -> dict[str, Any]:
    """Metrics of a WT/TC/ET segmenter under every subset, on whole volumes (sliding window).

    ``dataset`` yields ``(inputs {name: [C, D, H, W]}, mask [M], target [3, D, H, W])`` per case and has a
    ``cases[i].brain`` mask (:class:`~simmlm.data.brats.VolumeDataset`). Voxels are predicted positive where the
    region's sigmoid exceeds 0.5.

    Returns:
        ``{"subsets": {name: {"dice_wt", "dice_tc", "dice_et", "dice_mean", "ece", "sce"}}, "average_dice",
        "counterintuitive_rate" (mean over regions), "counterintuitive_rate_regions", "gate_weights"
        {name: {modality: mean over regions}}, "gate_weights_regions", "cases" {case: {subset: [wt, tc, et]}}}``.
        Dice is averaged over cases; ECE/SCE are voxel-wise over the brain voxels of all cases (mean over
        regions); CR uses each case's Dice as P, per region.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    num_modalities = len(modalities)
    subsets = list(subsets or all_subsets(num_modalities))
    dice = torch.zeros(len(dataset), len(subsets), len(REGIONS), dtype=torch.float64)
    gates = torch.zeros(len(subsets), num_modalities, len(REGIONS), dtype=torch.float64)
    available_bits = torch.zeros(len(dataset), dtype=torch.long)
    calibration = [VoxelCalibration(len(REGIONS), n_bins) for _ in subsets]
    case_ids = []
    try:
        for i in range(len(dataset)):
            inputs, mask, target = dataset[i]
            inputs = {k: v.unsqueeze(0).to(device) for k, v in inputs.items()}
            mask = mask.unsqueeze(0).to(device)
            brain = dataset.cases[i].brain
            subset_masks = [bits_to_mask(torch.tensor([s], device=device), num_modalities) & mask for s in subsets]
            if any(not m.any() for m in subset_masks):
                raise ValueError(f"case {dataset.cases[i].case_id} lacks every modality of some subset")
            outputs = sliding_window_subsets(model, inputs, mask, subset_masks, roi_size, overlap)
            for s, out in enumerate(outputs):
                probs = out.logits[0].float().sigmoid().cpu()
                dice[i, s] = dice_score(probs > 0.5, target > 0.5)
                calibration[s].update(probs[:, brain], target[:, brain])
                if out.gate_weights is not None:
                    weights = out.gate_weights[0].double().cpu()
                    gates[s] += (weights if weights.ndim == 2 else weights.unsqueeze(1)).expand(-1, len(REGIONS))
            available_bits[i] = mask_to_bits(mask.cpu())[0]
            case_ids.append(dataset.cases[i].case_id)
    finally:
        model.train(was_training)
    gates /= len(dataset)
    report: dict[str, Any] = {"subsets": {}, "gate_weights": {}, "gate_weights_regions": {}}
    for s, bits in enumerate(subsets):
        name = subset_name(bits, modalities)
        mean = dice[:, s].mean(0)
        ece, sce = calibration[s].compute()
        report["subsets"][name] = {
            **{f"dice_{r}": mean[k].item() for k, r in enumerate(REGIONS)},
            "dice_mean": mean.mean().item(),
            "ece": ece,
            "sce": sce,
        }
        here = [(j, m) for j, m in enumerate(modalities) if bits >> j & 1]
        report["gate_weights"][name] = {m: gates[s, j].mean().item() for j, m in here}
        report["gate_weights_regions"][name] = {
            m: dict(zip(REGIONS, gates[s, j].tolist(), strict=True)) for j, m in here
        }
    report["average_dice"] = sum(v["dice_mean"] for v in report["subsets"].values()) / len(subsets)
    multi = any(a != b and a & b == a for a in subsets for b in subsets)  # some nested pair exists
    regions_cr = {
        r: counterintuitive_rate(dice[:, :, k], subsets, available_bits).item() if multi else 0.0
        for k, r in enumerate(REGIONS)
    }
    report["counterintuitive_rate"] = sum(regions_cr.values()) / len(REGIONS)
    report["counterintuitive_rate_regions"] = regions_cr
    report["cases"] = {
        case: {subset_name(bits, modalities): dice[i, s].tolist() for s, bits in enumerate(subsets)}
        for i, case in enumerate(case_ids)
    }
    return report
