"""Segmentation metrics: Dice per region and voxel-wise calibration of independent sigmoid outputs; IoU from a
confusion matrix for multi-class (semantic) segmentation."""

from __future__ import annotations

import torch
from torch import Tensor

from simmlm.metrics.classification import calibration_bins, calibration_gap


def dice_score(prediction: Tensor, target: Tensor) -> Tensor:
    """Dice ``2|P ∩ Y| / (|P| + |Y|)`` over the last three (spatial) dimensions: ``[..., D, H, W]`` -> ``[...]``.

    An empty prediction of an empty target scores 1 (the BraTS convention), a non-empty one 0.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    p, y = prediction.bool().flatten(-3), target.bool().flatten(-3)
    intersection = (p & y).sum(-1).double()
    total = p.sum(-1).double() + y.sum(-1).double()
    return torch.where(total > 0, 2 * intersection / total.clamp_min(1), torch.ones_like(total))


class VoxelCalibration:
    """ECE and SCE of voxel-wise binary (sigmoid) predictions, accumulated over cases, averaged over regions.

    Each region is a two-class problem per voxel with probabilities ``[1 - p, p]``; ECE bins the max
    probability, SCE bins each class's probability (20 equal-width bins), exactly as for classification.
    """

    def __init__(self, num_regions: int, n_bins: int = 20) -> None:
        self.n_bins = n_bins
        self.ece_sums = torch.zeros(num_regions, 3, n_bins, dtype=torch.float64)
        self.sce_sums = torch.zeros(num_regions, 2, 3, n_bins, dtype=torch.float64)

    def update(self, probs: Tensor, target: Tensor) -> None:
        """Add voxels: ``probs`` and ``target`` are ``[C, V]`` (e.g. the brain voxels of one case)."""
        if probs.shape != target.shape or probs.ndim != 2 or probs.shape[0] != len(self.ece_sums):
            raise ValueError(
                f"probs and target must be [{len(self.ece_sums)}, V], got {tuple(probs.shape)}, {tuple(target.shape)}"
            )
        p, y = probs.double().cpu(), target.cpu() > 0.5
        for c in range(len(p)):
            confidence = torch.maximum(p[c], 1 - p[c])
            self.ece_sums[c] += calibration_bins(confidence, (p[c] > 0.5) == y[c], self.n_bins)
            self.sce_sums[c, 0] += calibration_bins(1 - p[c], ~y[c], self.n_bins)
            self.sce_sums[c, 1] += calibration_bins(p[c], y[c], self.n_bins)

    def compute_regions(self) -> tuple[list[float], list[float]]:
        """(ECE, SCE) of each region (the SimMLM paper's Table 4 reports them per region)."""
        ece = [float(calibration_gap(s)) for s in self.ece_sums]
        sce = [float((calibration_gap(s[0]) + calibration_gap(s[1])) / 2) for s in self.sce_sums]
        return ece, sce

    def compute(self) -> tuple[float, float]:
        """(ECE, SCE), each the mean over regions."""
        ece, sce = self.compute_regions()
        return sum(ece) / len(ece), sum(sce) / len(sce)


def confusion_matrix(predicted: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """``[K, K]`` pixel counts, rows the true class and columns the predicted one, pixels whose target is
    ``ignore_index`` left out (torchmetrics' ``multiclass_confusion_matrix``)."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    return multiclass_confusion_matrix(
        predicted.flatten(), target.flatten(), num_classes, ignore_index=ignore_index, validate_args=False
    ).long()


def iou_per_class(confusion: Tensor) -> Tensor:
    """Intersection over union of each class from a confusion matrix: ``TP / (TP + FP + FN)``; NaN for a class
    neither present nor predicted (left out of a mean, as the semantic-segmentation benchmarks do)."""
    c = confusion.double()
    hits = c.diagonal()
    union = c.sum(0) + c.sum(1) - hits
    return torch.where(union > 0, hits / union.clamp_min(1), torch.full_like(hits, float("nan")))


def dice_per_class(confusion: Tensor) -> Tensor:
    """Dice of each class from a confusion matrix: ``2 TP / (2 TP + FP + FN)`` (= ``2 IoU / (1 + IoU)``); NaN for a
    class neither present nor predicted."""
    iou = iou_per_class(confusion)
    return 2 * iou / (1 + iou)


def per_sample_miou(predicted: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """``[N]`` mean IoU of each sample over the classes in its prediction or target (the per-sample score of CR)."""
    return torch.stack(
        [
            iou_per_class(confusion_matrix(p, t, num_classes, ignore_index)).nanmean()
            for p, t in zip(predicted, target, strict=True)
        ]
    )
