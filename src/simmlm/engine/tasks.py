"""What differs between datasets and between classification, regression and segmentation, behind one interface.

A task gives the splits of its dataset, the training loader, the per-sample task loss ``l`` of eq. 4, the validation
score used to select epochs, the test report, the input shapes the model is built for, its headline metric and
protocol text, the figures a benchmark draws and how ``simmlm predict`` reads files. Everything else (stages,
MoFe, seeds, checkpoints, benchmark) is shared. Each dataset of :mod:`simmlm.datasets` names its task; a new kind
of task is a class with the :class:`Task` protocol.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from simmlm.data.base import ShardedBatchSampler, Splits, TensorMultimodalDataset, data_warnings, make_loader
from simmlm.datasets import get_dataset
from simmlm.datasets.avmnist import AvmnistData
from simmlm.datasets.brats import BratsData
from simmlm.engine.config import DataConfig, RunConfig
from simmlm.evaluation.evaluate import classification_report, regression_report, segmentation_report
from simmlm.evaluation.inferers import predict_subsets
from simmlm.losses.mofe import per_sample_cross_entropy
from simmlm.metrics.sentiment import weighted_f1

logger = logging.getLogger(__name__)


class Task(Protocol):
    average_key: str  # the report's headline key: "average_accuracy", "average_dice" or "average_mae"
    higher_is_better: bool  # of the headline (False: MAE)
    score_name: str  # what selects epochs, in words: "accuracy", "mean Dice" or "MAE (lower is better)"
    extra_inputs: frozenset[str]  # files ``simmlm predict`` accepts beside the modalities

    def load_splits(self) -> Splits:
        """Train / validation / test splits of the configured dataset."""
        ...

    def check_method(self, model: nn.Module, method: str) -> None:
        """Raise ``ValueError`` when the task cannot train this kind of model."""
        ...

    def samples_per_epoch(self, splits: Splits) -> int:
        """How many training samples one epoch draws (the training split, or the random crops of an epoch)."""
        ...

    def protocol(self, cfg: RunConfig) -> str:
        """What the benchmark's protocol text adds for this task (may be empty)."""
        ...

    def figures(self, out: Path, method: str, model: nn.Module, cfg: RunConfig, splits: Splits) -> None:
        """Figures of one trained model that a benchmark writes under ``out`` (may be none)."""
        ...

    def summary_figures(self, summary: dict[str, Any], out: Path) -> None:
        """Figures of the whole summary that a benchmark writes under ``out`` (may be none)."""
        ...

    def predict(
        self, model: nn.Module, cfg: RunConfig, meta: dict[str, Any], files: dict[str, Any], output: Path | None
    ) -> dict[str, Any]:
        """``simmlm predict``: the model's output for the given files (any subset of the modalities)."""
        ...

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


def _selection_score(logits: Tensor, targets: Tensor, select_on: str = "accuracy") -> tuple[float, float]:
    """(accuracy or weighted F1, -NLL): compared as a tuple, so ties go to the lower loss."""
    predicted = logits.argmax(-1)
    score = weighted_f1(predicted, targets) if select_on == "f1" else (predicted == targets).float().mean()
    return score.item(), -F.cross_entropy(logits, targets).item()


def resolve_data_dir(data_dir: Path | None) -> Path:
    """The data directory: the config/option value, else ``$SIMMLM_DATA_DIR``; a clear error otherwise."""
    if data_dir is None:
        env = os.environ.get("SIMMLM_DATA_DIR")
        if not env:
            raise FileNotFoundError("no data directory given: pass --data-dir DIR or set SIMMLM_DATA_DIR")
        data_dir = Path(env)
    if not Path(data_dir).is_dir():
        what = "is a file, not a folder" if Path(data_dir).exists() else "does not exist"
        raise FileNotFoundError(f"data directory {data_dir} {what}")
    return Path(data_dir)


Loader = Callable[[Any], Splits]
Reader = Callable[[str, Any, dict[str, Any]], Tensor]  # a file's Path, or a text (a str) given on the command line


class ClassificationTask:
    """Cross-entropy; epochs selected on (accuracy, -NLL), so accuracy ties go to the lower loss, or on (weighted F1,
    -NLL).

    Args:
        data: the dataset's config; ``loader`` reads its splits, ``reader`` one file of one modality for predict.
        f1, class_names: the report's weighted F1 and per-class metrics (:func:`classification_report`).
        select_on: what selects epochs on validation data, ``accuracy`` or the weighted F1 (``f1``).
    """

    average_key = "average_accuracy"
    higher_is_better = True
    score_name = "accuracy"
    extra_inputs: frozenset[str] = frozenset()

    def __init__(
        self,
        data: DataConfig | None = None,
        loader: Loader | None = None,
        reader: Reader | None = None,
        f1: bool = False,
        class_names: Sequence[str] | None = None,
        select_on: Literal["accuracy", "f1"] = "accuracy",
    ):
        self.data, self.loader, self.reader = data or AvmnistData(), loader, reader
        self.f1, self.class_names, self.select_on = f1 or select_on == "f1", class_names, select_on
        if select_on == "f1":
            self.score_name = "weighted F1"

    def load_splits(self) -> Splits:
        from simmlm.data.scenarios import apply_scenario

        if self.loader is None:
            raise ValueError(f"dataset {self.data.dataset!r} has no loader")
        splits = apply_scenario(self.loader(self.data), getattr(self.data, "scenario", None))
        for line in data_warnings(splits):
            logger.warning("warning: %s", line)
        return splits

    def check_method(self, model: nn.Module, method: str) -> None:
        pass

    def samples_per_epoch(self, splits: Splits) -> int:
        return len(splits.train)

    def protocol(self, cfg: RunConfig) -> str:
        return ""

    def figures(self, out: Path, method: str, model: nn.Module, cfg: RunConfig, splits: Splits) -> None:
        pass

    def summary_figures(self, summary: dict[str, Any], out: Path) -> None:
        pass

    def predict(
        self, model: nn.Module, cfg: RunConfig, meta: dict[str, Any], files: dict[str, Any], output: Path | None
    ) -> dict[str, Any]:
        from simmlm.evaluation.predict import classify_files

        reader = self._file_reader(output)
        if not meta.get("preprocessing"):
            raise ValueError("this run stores no known preprocessing (a run of an older version?); retrain it")
        return classify_files(model, cfg.method, meta, files, reader)

    def _file_reader(self, output: Path | None) -> Reader:
        """The dataset's reader of single files for ``simmlm predict``; one clear error without one, or when an
        ``--output`` is asked of a run that writes no label map."""
        if output is not None:
            raise ValueError("--output is for segmentation runs (a predicted NIfTI label map)")
        if self.reader is None:
            raise ValueError(f"simmlm predict reads no single files for {self.data.dataset} (its inputs are computed)")
        return self.reader

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
            _selection_score(logits[rows], preds.targets[rows], self.select_on) if rows.any() else None
            for logits, rows in zip(preds.logits, preds.covered, strict=True)
        ]

    def report(
        self, model: nn.Module, dataset: Any, modalities: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The report, and the class probabilities per subset (``probs`` ``[S, N, K]``, ``subsets``, ``targets``,
        and ``sample_ids`` when the dataset names its samples)."""
        preds = predict_subsets(model, dataset)
        arrays = {
            "probs": preds.logits.float().softmax(-1).numpy().astype(np.float32),
            "subsets": np.asarray(preds.subsets),
            "targets": preds.targets.numpy(),
        }
        if getattr(dataset, "ids", None) is not None:
            arrays["sample_ids"] = np.asarray(dataset.ids, dtype=str)
        return classification_report(preds, modalities, f1=self.f1, class_names=self.class_names), arrays

    def example_inputs(self, splits: Splits) -> tuple[dict[str, Tensor], Tensor]:
        inputs, mask, _ = splits.test[[0]]
        return inputs, torch.ones_like(mask)


class RegressionTask(ClassificationTask):
    """A score per sample (MOSI / MOSEI sentiment in [-3, 3]): L1 loss, as MulT and MMSA train; epochs selected on
    validation MAE; reported per subset with the sentiment metrics (:func:`regression_report`)."""

    average_key = "average_mae"
    higher_is_better = False
    score_name = "MAE (lower is better)"

    def predict(
        self, model: nn.Module, cfg: RunConfig, meta: dict[str, Any], files: dict[str, Any], output: Path | None
    ) -> dict[str, Any]:
        from simmlm.evaluation.predict import score_files

        return score_files(model, cfg.method, meta, files, self._file_reader(output))

    def protocol(self, cfg: RunConfig) -> str:
        return (
            " Regression: L1 loss on the score; per subset MAE, Pearson r, Acc-2 and weighted F1 with the neutral "
            "samples (non-negative vs negative) and without them (positive vs negative), Acc-7 of the rounded "
            "clipped score; CR with P = the sign's correctness (has-0)."
        )

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return (logits[:, 0].float() - target.float()).abs()

    def scores(self, model: nn.Module, dataset: Any, subsets: Sequence[int]) -> list[tuple[float, float] | None]:
        preds = predict_subsets(model, dataset, subsets)
        return [
            (-(scores[rows, 0] - preds.targets[rows]).abs().mean().item(), 0.0) if rows.any() else None
            for scores, rows in zip(preds.logits, preds.covered, strict=True)
        ]

    def report(
        self, model: nn.Module, dataset: Any, modalities: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The report, and the predicted scores per subset (``scores`` ``[S, N]``, ``subsets``, ``targets``, and
        ``sample_ids`` when the dataset names its samples)."""
        preds = predict_subsets(model, dataset)
        arrays = {
            "scores": preds.logits[..., 0].float().numpy().astype(np.float32),
            "subsets": np.asarray(preds.subsets),
            "targets": preds.targets.float().numpy().astype(np.float32),
        }
        if getattr(dataset, "ids", None) is not None:
            arrays["sample_ids"] = np.asarray(dataset.ids, dtype=str)
        return regression_report(preds, modalities), arrays


class SegmentationTask:
    """Dice + BCE on random crops; whole volumes by sliding window; epochs selected on mean Dice (WT/TC/ET)."""

    average_key = "average_dice"
    higher_is_better = True
    score_name = "mean Dice"
    extra_inputs = frozenset({"brain_mask"})

    def __init__(self, data: BratsData) -> None:
        self.data, self.cfg = data, data.brats

    def load_splits(self) -> Splits:
        from simmlm.datasets.brats.loader import load_brats

        return load_brats(resolve_data_dir(self.data.data_dir), self.cfg)

    def check_method(self, model: nn.Module, method: str) -> None:
        from simmlm.methods import ExpertMixture

        if not isinstance(model, ExpertMixture) and not getattr(model, "dense", False):
            raise ValueError(
                f"segmentation supports the expert mixtures (simmlm, dmome, late_fusion) and mmp, not {method!r}"
            )

    def samples_per_epoch(self, splits: Splits) -> int:
        return self.cfg.crops_per_epoch

    def protocol(self, cfg: RunConfig) -> str:
        b = self.cfg
        return (
            f" Segmentation: {b.crops_per_epoch} random {'x'.join(map(str, b.crop_size))} crops per epoch "
            f"({b.pos_fraction:.0%} centred on tumour, random flips: {b.flip}), Dice + BCE; whole volumes by "
            f"sliding window (overlap {b.overlap}, Gaussian blending); Dice per region at the working "
            "resolution, averaged over cases; voxel-wise ECE/SCE over brain voxels; CR with P = Dice per region "
            "(mean over WT/TC/ET); FLOPs for one crop."
        )

    def figures(self, out: Path, method: str, model: nn.Module, cfg: RunConfig, splits: Splits) -> None:
        """The first test case under every subset (the paper's Fig. 2)."""
        from simmlm.reporting.segmentation_figures import case_figure

        case = splits.test.cases[0]  # type: ignore[attr-defined]
        (out / "figures").mkdir(exist_ok=True)
        title = f"{method} (seed {cfg.train.seed}), test case {case.case_id}"
        path = out / "figures" / f"case-{method}.png"
        case_figure(model, case, splits.modalities, self.cfg.crop_size, path, self.cfg.overlap, title)

    def summary_figures(self, summary: dict[str, Any], out: Path) -> None:
        """The population gate weights per subset and region (the paper's Fig. 3)."""
        from simmlm.reporting.segmentation_figures import population_gates_figure

        population_gates_figure(summary, out / "figures" / "population_gates.png")

    def predict(
        self, model: nn.Module, cfg: RunConfig, meta: dict[str, Any], files: dict[str, Any], output: Path | None
    ) -> dict[str, Any]:
        from simmlm.evaluation.predict import segment_files

        return segment_files(model, cfg.method, self.cfg, list(meta["modalities"]), files, output)

    def input_shapes(self, splits: Splits) -> dict[str, tuple[int, ...]]:
        case = splits.train.cases[0]  # type: ignore[attr-defined]
        return {name: (x.shape[0], *self.cfg.crop_size) for name, x in case.inputs.items()}

    def train_loader(self, dataset: Any, batch_size: int, seed: int, with_index: bool = False) -> DataLoader:
        from simmlm.datasets.brats.loader import RandomCropDataset

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
        workers = c.workers  # crops read from the cache in parallel; each depends on (seed, epoch, index) alone
        return DataLoader(crops, sampler=sampler, batch_size=None, num_workers=workers, persistent_workers=workers > 0)

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
    """The task of the configured dataset (:mod:`simmlm.datasets`)."""
    return get_dataset(cfg.data.dataset).task(cfg.data)


def load_splits(data: DataConfig) -> Splits:
    """Train / validation / test splits of the configured dataset."""
    return get_dataset(data.dataset).task(data).load_splits()
