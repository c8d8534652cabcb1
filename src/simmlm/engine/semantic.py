"""The 2-D semantic segmentation task: a class per pixel from aligned images of several modalities (RGB-X data:
MCubeS, NYUDv2, FMB; :mod:`simmlm.datasets.rgbx`), whole images in and out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simmlm.engine.config import RunConfig
from simmlm.engine.tasks import ClassificationTask, Loader, Reader
from simmlm.evaluation.inferers import predict_subsets
from simmlm.evaluation.semantic import semantic_report
from simmlm.metrics.segmentation import confusion_matrix, iou_per_class


class SemanticSegmentationTask(ClassificationTask):
    """Pixel-wise cross-entropy (``ignore_index`` pixels left out), each image's loss the mean over its pixels; epochs
    selected on validation (mIoU, -cross-entropy); reported with :func:`semantic_report`. The expert mixtures
    segment (one 2-D U-Net per modality; DMoME's gate can weigh each class, ``model.gate_channels``), and MMP (its
    tokens on a downsampled grid, a convolutional decoder: :class:`~simmlm.methods.mmp.DenseHead`)."""

    average_key = "average_miou"
    higher_is_better = True
    score_name = "mIoU"

    def __init__(
        self, data: Any, loader: Loader, reader: Reader | None = None, ignore_index: int | None = None
    ) -> None:
        super().__init__(data, loader, reader)
        self.ignore_index = ignore_index

    def check_method(self, model: nn.Module, method: str) -> None:
        from simmlm.methods import ExpertMixture

        if not isinstance(model, ExpertMixture) and not getattr(model, "dense", False):
            raise ValueError(
                f"2-D segmentation supports the expert mixtures (simmlm, dmome, late_fusion) and mmp, not {method!r}"
            )

    def predict(
        self, model: nn.Module, cfg: RunConfig, meta: dict[str, Any], files: dict[str, Any], output: Any
    ) -> dict[str, Any]:
        from simmlm.evaluation.predict import label_image_files

        if self.reader is None:
            raise ValueError(f"simmlm predict reads no single files for {self.data.dataset}")
        return label_image_files(model, cfg.method, meta, files, self.reader, output)

    def protocol(self, cfg: RunConfig) -> str:
        return (
            " Semantic segmentation: pixel-wise cross-entropy on whole images (pixels labelled ignore_index left "
            "out); mIoU from each subset's confusion matrix over its test images, per-class IoU, pixel accuracy, "
            "pixel ECE / SCE; CR and Shapley values with each image's own mIoU as the score."
        )

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        ignore = -100 if self.ignore_index is None else self.ignore_index
        pixels = F.cross_entropy(logits.float(), target.long(), ignore_index=ignore, reduction="none").flatten(1)
        counted = (target != ignore).flatten(1).sum(1)
        return pixels.sum(1) / counted.clamp_min(1)

    def scores(self, model: nn.Module, dataset: Any, subsets: Sequence[int]) -> list[tuple[float, float] | None]:
        preds = predict_subsets(model, dataset, subsets)
        out: list[tuple[float, float] | None] = []
        for logits, rows in zip(preds.logits, preds.covered, strict=True):
            if not rows.any():
                out.append(None)
                continue
            target = preds.targets[rows].long()
            cm = confusion_matrix(logits[rows].argmax(1), target, logits.shape[1], self.ignore_index)
            out.append((iou_per_class(cm).nanmean().item(), -self.loss(logits[rows], target).mean().item()))
        return out

    def report(
        self, model: nn.Module, dataset: Any, modalities: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The report; pixel outputs are not saved."""
        preds = predict_subsets(model, dataset, batch_size=32)
        names = getattr(dataset, "class_names", None) or [str(k) for k in range(preds.logits.shape[2])]
        return semantic_report(preds, modalities, names, self.ignore_index), {}

    def example_inputs(self, splits: Any) -> tuple[dict[str, Tensor], Tensor]:
        inputs, mask, _ = splits.test[[0]]
        return inputs, torch.ones_like(mask)
