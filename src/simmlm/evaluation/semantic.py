"""Per-subset evaluation of 2-D semantic segmentation (a class per pixel, MCubeS / NYUDv2 / FMB style): mIoU and
per-class IoU over the test set, mean and per-class Dice, pixel accuracy, pixel calibration, CR and Shapley values
on each image's mIoU."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from simmlm.evaluation.evaluate import _columns, _cr_or_nan, _shapley_mode
from simmlm.evaluation.inferers import SubsetPredictions
from simmlm.metrics import expected_calibration_error, static_calibration_error
from simmlm.metrics.segmentation import confusion_matrix, dice_per_class, iou_per_class, per_sample_miou
from simmlm.metrics.shapley import modality_shapley, subset_value_table
from simmlm.subsets import all_subsets, subset_name


def semantic_report(
    preds: SubsetPredictions,
    modalities: Sequence[str],
    class_names: Sequence[str],
    ignore_index: int | None = None,
    n_bins: int = 20,
) -> dict[str, Any]:
    """Metrics of a pixel classifier under every subset, each over the images that have the subset.

    Per subset: ``miou``, the mean over classes of the IoU of the subset's confusion matrix accumulated over its
    images (a class neither present nor predicted left out), ``iou_<class>``, ``mdice`` and ``dice_<class>`` from the
    same matrix, ``pixel_accuracy``, ``ece`` / ``sce``
    over the pixels (20 bins) and ``samples``; pixels whose target is ``ignore_index`` count nowhere. The report's
    ``average_miou`` is the mean over the subsets with images. CR and the Shapley values (``"miou"``; no modality:
    0) use each image's own mIoU (over the classes in its prediction or target) as the per-sample score.
    """
    num_classes = len(class_names)
    covered = preds.covered
    targets = preds.targets.long()
    subsets: dict[str, dict[str, float]] = {}
    gate_weights: dict[str, dict[str, float]] = {}
    scores = torch.full(covered.shape, math.nan, dtype=torch.float64)  # [S, N] each image's mIoU
    for s, bits in enumerate(preds.subsets):
        name, rows = subset_name(bits, modalities), covered[s]
        n = int(rows.sum())
        entry: dict[str, float] = {"samples": n}
        if n:
            probs = preds.logits[s][rows].float().softmax(1)  # [n, K, H, W]
            predicted, target = probs.argmax(1), targets[rows]
            confusion = confusion_matrix(predicted, target, num_classes, ignore_index)
            iou, dice = iou_per_class(confusion), dice_per_class(confusion)
            valid = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
            pixels, labels = probs.movedim(1, -1)[valid], target[valid]  # [P, K], [P]
            entry |= {
                "miou": iou.nanmean().item(),
                **{f"iou_{c}": iou[k].item() for k, c in enumerate(class_names)},
                "mdice": dice.nanmean().item(),
                **{f"dice_{c}": dice[k].item() for k, c in enumerate(class_names)},
                "pixel_accuracy": (pixels.argmax(-1) == labels).double().mean().item(),
                "ece": expected_calibration_error(pixels, labels, n_bins).item(),
                "sce": static_calibration_error(pixels, labels, n_bins).item(),
            }
            scores[s, rows] = per_sample_miou(predicted, target, num_classes, ignore_index)
        else:
            entry |= dict.fromkeys(
                ["miou", *(f"iou_{c}" for c in class_names), "mdice", *(f"dice_{c}" for c in class_names)]
                + ["pixel_accuracy", "ece", "sce"],
                math.nan,
            )
        subsets[name] = entry
        if preds.gate_weights is not None:
            mean = preds.gate_weights[s][rows].float().mean(0)  # [M] or [M, K]; NaN if no image
            gate_weights[name] = {m: mean[i].mean().item() for i, m in enumerate(modalities) if bits >> i & 1}
    evaluated = [v["miou"] for v in subsets.values() if v["samples"]]
    report: dict[str, Any] = {
        "subsets": subsets,
        "average_miou": sum(evaluated) / len(evaluated) if evaluated else math.nan,
        "counterintuitive_rate": _cr_or_nan(scores.T.nan_to_num(0.0), preds.subsets, preds.available),
        "gate_weights": gate_weights,
    }
    if set(preds.subsets) == set(all_subsets(len(modalities))):
        report["shapley"] = {"miou": _shapley(scores, preds, len(modalities), modalities)}
    return report


def _shapley(scores: Tensor, preds: SubsetPredictions, num_modalities: int, modalities: Sequence[str]) -> dict:
    """Each modality's mean Shapley contribution to an image's mIoU (``v(∅) = 0``)."""
    table = subset_value_table(scores, preds.subsets, preds.available, num_modalities, 0.0)
    phi = modality_shapley(
        _columns(table), table.shape[0], num_modalities, **_shapley_mode(num_modalities, table.device)
    )
    return dict(zip(modalities, phi.mean(0).tolist(), strict=True))
