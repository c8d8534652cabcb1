"""What differs between classification and segmentation, behind one small interface used by the engine.

A task gives the training loader, the per-sample task loss ``l`` of eq. 4, the validation score used to select
epochs, the test report and the input shapes the model is built for. Everything else (stages, MoFe, seeds,
checkpoints, benchmark) is shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from simmlm.data.base import ShardedBatchSampler, Splits, TensorMultimodalDataset, make_loader
from simmlm.engine.config import BratsConfig, RunConfig
from simmlm.evaluate import classification_report, segmentation_report
from simmlm.losses.mofe import per_sample_cross_entropy
from simmlm.methods.predict import predict_subsets


class Task(Protocol):
    average_key: str  # the report's headline key: "average_accuracy" or "average_dice"

    def input_shapes(self, splits: Splits) -> dict[str, tuple[int, ...]]: ...

    def train_loader(self, dataset: Any, batch_size: int, seed: int, with_index: bool = False) -> DataLoader:
        """Shuffled batches from ``seed``; under DDP each rank loads its share of every (global) batch.

        The loader's ``sampler`` has ``state_dict`` / ``load_state_dict`` (its shuffling generator), and every
        other random draw comes from the global RNGs or from ``(seed, epoch, index)``, so a resumed run
        (:mod:`simmlm.engine.resume`) loads exactly the batches the uninterrupted run loaded.
        """
        ...

    def loss(self, logits: Tensor, target: Tensor) -> Tensor: ...

    def scores(self, model: nn.Module, dataset: Any, subsets: Sequence[int]) -> list[tuple[float, float] | None]:
        """Validation score per subset (compared as tuples, higher is better); ``None`` if no sample has it."""
        ...

    def report(
        self, model: nn.Module, dataset: Any, modalities: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Metrics under every subset, and the per-sample outputs worth saving (``predictions.npz``; may be empty)."""
        ...

    def example_inputs(self, splits: Splits) -> tuple[dict[str, Tensor], Tensor]: ...


def _accuracy_and_nll(logits: Tensor, targets: Tensor) -> tuple[float, float]:
    """(accuracy, -NLL): compared as a tuple, so ties in accuracy go to the lower loss."""
    return (logits.argmax(-1) == targets).float().mean().item(), -F.cross_entropy(logits, targets).item()


class ClassificationTask:
    """Cross-entropy; epochs selected on (accuracy, -NLL), so accuracy ties go to the lower loss."""

    average_key = "average_accuracy"

    def input_shapes(self, splits: Splits) -> dict[str, tuple[int, ...]]:
        return {name: tuple(x.shape[1:]) for name, x in splits.train.inputs.items()}

    def train_loader(
        self, dataset: TensorMultimodalDataset, batch_size: int, seed: int, with_index: bool = False
    ) -> DataLoader:
        return make_loader(dataset, batch_size, shuffle=True, seed=seed, with_index=with_index, distributed=True)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return per_sample_cross_entropy(logits, target)

    def scores(self, model: nn.Module, dataset: Any, subsets: Sequence[int]) -> list[tuple[float, float] | None]:
        preds = predict_subsets(model, dataset, subsets)
        return [
            _accuracy_and_nll(logits[rows], preds.targets[rows]) if rows.any() else None
            for logits, rows in zip(preds.logits, preds.covered, strict=True)
        ]

    def report(
        self, model: nn.Module, dataset: Any, modalities: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The report, and the class probabilities per subset (``probs`` ``[S, N, K]``, ``subsets``, ``targets``)."""
        preds = predict_subsets(model, dataset)
        arrays = {
            "probs": preds.logits.float().softmax(-1).numpy().astype(np.float32),
            "subsets": np.asarray(preds.subsets),
            "targets": preds.targets.numpy(),
        }
        return classification_report(preds, modalities), arrays

    def example_inputs(self, splits: Splits) -> tuple[dict[str, Tensor], Tensor]:
        inputs, mask, _ = splits.test[[0]]
        return inputs, torch.ones_like(mask)


class SegmentationTask:
    """Dice + BCE on random crops; whole volumes by sliding window; epochs selected on mean Dice (WT/TC/ET)."""

    average_key = "average_dice"

    def __init__(self, cfg: BratsConfig) -> None:
        self.cfg = cfg

    def input_shapes(self, splits: Splits) -> dict[str, tuple[int, ...]]:
        case = splits.train.cases[0]  # type: ignore[attr-defined]
        return {name: (x.shape[0], *self.cfg.crop_size) for name, x in case.inputs.items()}

    def train_loader(self, dataset: Any, batch_size: int, seed: int, with_index: bool = False) -> DataLoader:
        from simmlm.data.brats import RandomCropDataset

        if with_index:
            raise ValueError("segmentation training has no per-sample index (DREAM is classification-only)")
        c = self.cfg
        crops = RandomCropDataset(dataset, c.crop_size, c.crops_per_epoch, c.pos_fraction, c.flip)
        crops.set_random_state(seed)
        # Shuffled (and, under DDP, sharded) like the classification batches; every crop depends on (seed,
        # epoch, index) alone, so resuming restores the crops by restoring the shuffling generator.
        sampler = ShardedBatchSampler(
            len(crops), batch_size, shuffle=True, seed=seed, distributed=True, with_epoch=True
        )
        return DataLoader(crops, sampler=sampler, batch_size=None)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        from simmlm.losses.segmentation import dice_bce_per_sample

        return dice_bce_per_sample(logits, target)

    def scores(self, model: nn.Module, dataset: Any, subsets: Sequence[int]) -> list[tuple[float, float] | None]:
        c = self.cfg  # selection scores Dice only: the voxel calibration is skipped
        report = segmentation_report(
            model, dataset, dataset.modalities, c.crop_size, c.overlap, subsets, calibration=False
        )
        return [(v["dice_mean"], 0.0) if v["samples"] else None for v in report["subsets"].values()]

    def report(
        self, model: nn.Module, dataset: Any, modalities: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The report; voxel outputs are not saved (``simmlm predict -o`` writes a case's label map)."""
        return segmentation_report(model, dataset, modalities, self.cfg.crop_size, self.cfg.overlap), {}

    def example_inputs(self, splits: Splits) -> tuple[dict[str, Tensor], Tensor]:
        shapes = self.input_shapes(splits)
        return {n: torch.zeros(1, *s) for n, s in shapes.items()}, torch.ones(1, len(shapes), dtype=torch.bool)


def task_for(cfg: RunConfig) -> Task:
    """The task of the configured dataset."""
    if cfg.data.dataset == "brats":
        return SegmentationTask(cfg.data.brats)
    return ClassificationTask()
