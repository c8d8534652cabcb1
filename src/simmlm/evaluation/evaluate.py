"""Per-subset evaluation: accuracy or Dice, ECE, SCE, counterintuitive rate and mean gate weights.

Rule for data with missing modalities: a subset's metrics (and mean gate weights) are computed over the samples
(cases) that have every modality of the subset (``SubsetPredictions.covered``), with ``samples`` giving their
number; a subset no sample has gets NaN metrics and is left out of the average. The counterintuitive rate counts,
per sample, only the nested pairs inside its available modalities (NaN if no sample has two).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from simmlm.datasets.brats.loader import REGIONS
from simmlm.evaluation.inferers import SubsetPredictions, sliding_window_subsets
from simmlm.metrics import (
    accuracy,
    counterintuitive_rate,
    expected_calibration_error,
    static_calibration_error,
)
from simmlm.metrics.segmentation import VoxelCalibration, dice_score
from simmlm.metrics.sentiment import sentiment_scores, weighted_f1
from simmlm.metrics.shapley import MAX_EXACT_VALUE_MODALITIES, modality_shapley, subset_value_table
from simmlm.subsets import all_subsets, bits_to_mask, mask_to_bits, subset_name


def classification_report(
    preds: SubsetPredictions,
    modalities: Sequence[str],
    n_bins: int = 20,
    f1: bool = False,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Metrics of a classifier under every subset in ``preds``, each over the samples that have the subset.

    With ``f1`` each subset also has ``f1``, the weighted F1 (DREAM's metric), and the report ``average_f1``; with
    ``class_names`` each subset has, per class ``c``, ``acc_c`` and ``f1_c``: the binary accuracy and weighted F1 of
    "c or not" (MulT's per-emotion metrics on IEMOCAP, here from one softmax over the classes).

    Returns a dict ``{"subsets": {name: {"accuracy", "ece", "sce", "samples"}}, "average_accuracy",
    "counterintuitive_rate", "gate_weights": {name: {modality: mean weight}}, "gate_evenness": {name: mean
    per-sample evenness}}``;
    CR uses correctness (0/1) as the score P. A sample's evenness is the entropy of its gate weights over the
    subset's modalities divided by its maximum, ``log |S|`` (1: the plain mean of the experts, 0: one expert);
    subsets of one modality have none.
    """
    probs = preds.logits.float().softmax(-1)  # [S, N, K]
    covered = preds.covered  # [S, N]
    subsets: dict[str, dict[str, float]] = {}
    gate_weights: dict[str, dict[str, float]] = {}
    gate_evenness: dict[str, float] = {}
    for s, bits in enumerate(preds.subsets):
        name = subset_name(bits, modalities)
        rows = covered[s]
        p, y = probs[s][rows], preds.targets[rows]
        n = int(rows.sum())
        subsets[name] = {
            "accuracy": accuracy(p, y).item() if n else math.nan,
            "ece": expected_calibration_error(p, y, n_bins).item() if n else math.nan,
            "sce": static_calibration_error(p, y, n_bins).item() if n else math.nan,
            "samples": n,
        }
        if f1:
            subsets[name]["f1"] = weighted_f1(p.argmax(-1), y).item() if n else math.nan
        for k, c in enumerate(class_names or []):
            guess, truth = (p.argmax(-1) == k).long(), (y == k).long()
            subsets[name][f"acc_{c}"] = (guess == truth).double().mean().item() if n else math.nan
            subsets[name][f"f1_{c}"] = weighted_f1(guess, truth).item() if n else math.nan
        if preds.gate_weights is not None:
            mean = preds.gate_weights[s][rows].float().mean(0)  # [M] or [M, K]; NaN if no sample
            gate_weights[name] = {m: mean[i].mean().item() for i, m in enumerate(modalities) if bits >> i & 1}
            if bits.bit_count() > 1:
                gate_evenness[name] = _evenness(preds.gate_weights[s][rows].float(), bits) if n else math.nan
    correct = (probs.argmax(-1) == preds.targets.unsqueeze(0)).float().T  # [N, S]; uncovered pairs are not counted
    evaluated = [v["accuracy"] for v in subsets.values() if v["samples"]]
    report: dict[str, Any] = {
        "subsets": subsets,
        "average_accuracy": sum(evaluated) / len(evaluated) if evaluated else math.nan,
        "counterintuitive_rate": _cr_or_nan(correct, preds.subsets, preds.available),
        "gate_weights": gate_weights,
    }
    if f1:
        scores = [v["f1"] for v in subsets.values() if v["samples"]]
        report["average_f1"] = sum(scores) / len(scores) if scores else math.nan
    if preds.gate_weights is not None:
        report["gate_evenness"] = gate_evenness
    if set(preds.subsets) == set(all_subsets(len(modalities))):
        contributions = modality_contributions(probs, preds.targets, preds.subsets, preds.available, len(modalities))
        report["shapley"] = {
            value: dict(zip(modalities, phi.mean(0).tolist(), strict=True)) for value, phi in contributions.items()
        }
    return report


#: The per-subset metrics of a sentiment regression report (:func:`simmlm.metrics.sentiment.sentiment_scores`).
REGRESSION_METRICS = ("mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7")


def sign_correct(scores: Tensor, targets: Tensor) -> Tensor:
    """Per sample, whether a predicted score has the true score's sign (non-negative vs negative: Acc-2, has-0)."""
    return (scores >= 0) == (targets >= 0).unsqueeze(0)


def regression_report(preds: SubsetPredictions, modalities: Sequence[str]) -> dict[str, Any]:
    """Metrics of a score regressor (MOSI / MOSEI sentiment) under every subset, each over the samples that have it.

    Per subset the metrics of :data:`REGRESSION_METRICS` (MAE, Pearson r, Acc-2 and weighted F1 with and without
    the neutral samples, Acc-7) and ``samples``; ``average_<metric>`` is each one's mean over the subsets with
    samples (``average_mae`` is the headline). CR uses the sign's correctness (Acc-2, has-0) as the score P, so a
    sample counts when it has the right sign with fewer modalities and the wrong one with more. Shapley values:
    ``"abs_error"``, the reduction of the absolute error against predicting 0 (neutral), ``|y| - |ŷ_S - y|`` (so
    ``v(∅) = 0``), and ``"correctness"``, the sign's correctness (``v(∅) = 1/2``, a coin). Gate weights as in
    :func:`classification_report`.
    """
    scores = preds.logits.float()[..., 0]  # [S, N]
    targets = preds.targets.float()
    covered = preds.covered
    subsets: dict[str, dict[str, float]] = {}
    gate_weights: dict[str, dict[str, float]] = {}
    for s, bits in enumerate(preds.subsets):
        rows = covered[s]
        n = int(rows.sum())
        values = sentiment_scores(scores[s][rows], targets[rows]) if n >= 2 else {}
        subsets[subset_name(bits, modalities)] = {k: values.get(k, math.nan) for k in REGRESSION_METRICS} | {
            "samples": n
        }
        if preds.gate_weights is not None:
            mean = preds.gate_weights[s][rows].float().mean(0)
            gate_weights[subset_name(bits, modalities)] = {
                m: mean[i].mean().item() for i, m in enumerate(modalities) if bits >> i & 1
            }
    evaluated = [v for v in subsets.values() if v["samples"] >= 2]
    correct = (sign_correct(scores, targets) & covered).float().T  # [N, S]
    report: dict[str, Any] = {
        "subsets": subsets,
        **{
            f"average_{k}": math.fsum(v[k] for v in evaluated) / len(evaluated) if evaluated else math.nan
            for k in REGRESSION_METRICS
        },
        "counterintuitive_rate": _cr_or_nan(correct, preds.subsets, preds.available),
        "gate_weights": gate_weights,
    }
    if set(preds.subsets) == set(all_subsets(len(modalities))):
        values_of = {
            "abs_error": targets.abs().unsqueeze(0) - (scores - targets.unsqueeze(0)).abs(),
            "correctness": sign_correct(scores, targets).double(),
        }
        report["shapley"] = {}
        for value, empty in (("abs_error", 0.0), ("correctness", 0.5)):
            table = subset_value_table(values_of[value], preds.subsets, preds.available, len(modalities), empty)
            mode = _shapley_mode(len(modalities), table.device)
            phi = modality_shapley(_columns(table), table.shape[0], len(modalities), **mode)
            report["shapley"][value] = dict(zip(modalities, phi.mean(0).tolist(), strict=True))
    return report


def _shapley_mode(num_modalities: int, device: torch.device) -> dict[str, Any]:
    """Exact Shapley values up to ``MAX_EXACT_VALUE_MODALITIES`` modalities, a seeded Monte-Carlo estimate beyond."""
    if num_modalities <= MAX_EXACT_VALUE_MODALITIES:
        return {"mc_permutations": None, "generator": None}
    return {"mc_permutations": SHAPLEY_PERMUTATIONS, "generator": torch.Generator(device=device).manual_seed(0)}


def _columns(table: Tensor) -> Callable[[Tensor], Tensor]:
    """The value function of a ``[N, 2^M]`` table: subset codes ``[J]`` -> values ``[N, J]``."""
    return lambda codes: table[:, codes]


#: What the Shapley tables of summaries and of the robustness suite hold, in words.
SHAPLEY_NOTE = (
    "Shapley value of each modality (exact up to 10 modalities) from the predictions under every subset (no extra "
    "model pass), mean over test samples, mean ± std over seeds, in percentage points. The value of a subset is "
    "the probability of the true class under it (or correctness, 1 if right); with no modality it is 1/K (chance), "
    "so a sample's contributions sum to its value with all its modalities minus 1/K."
)

#: Monte-Carlo permutations for Shapley contributions above ``MAX_EXACT_VALUE_MODALITIES`` modalities.
SHAPLEY_PERMUTATIONS = 1000


def modality_contributions(
    probs: Tensor, classes: Tensor, subsets: Sequence[int], available: Tensor, num_modalities: int
) -> dict[str, Tensor]:
    """Shapley contribution ``[N, M]`` of each modality to each sample's outcome, from predictions under every
    subset (no model pass of its own).

    The value of a subset ``S`` for sample ``n`` is the model's output from ``S ∩ A_n`` (its available modalities):
    ``"probability"``, the probability of ``classes[n]`` (the label; in ``simmlm predict`` the predicted class);
    ``"correctness"``, 1 when the arg-max is ``classes[n]``. With no modality the model knows nothing:
    ``v(∅) = 1/K`` for both. A sample's contributions sum to ``v(A_n) - 1/K``; a missing modality gets 0.
    Exact up to ``MAX_EXACT_VALUE_MODALITIES`` modalities, then a Monte-Carlo estimate (seeded).

    Args:
        probs: ``[S, N, K]`` class probabilities per subset (rows of subsets a sample lacks are never read).
        classes: ``[N]`` the class whose probability is the value.
        subsets: the subsets' codes, including every non-empty subset of each sample's available modalities.
        available: ``[N]`` codes of the modalities each sample has.
    """
    num_classes = probs.shape[-1]
    index = classes.reshape(1, -1, 1).expand(probs.shape[0], -1, 1)
    values = {
        "probability": probs.gather(-1, index.to(probs.device)).squeeze(-1).double(),
        "correctness": (probs.argmax(-1) == index[..., 0].to(probs.device)).double(),
    }
    out = {}
    for name, value in values.items():
        table = subset_value_table(value, subsets, available, num_modalities, 1.0 / num_classes)
        out[name] = modality_shapley(
            _columns(table), table.shape[0], num_modalities, **_shapley_mode(num_modalities, table.device)
        )
    return out


def _evenness(weights: Tensor, bits: int) -> float:
    """Mean over samples (and gate channels) of the entropy of the weights ``[n, M(, K)]`` over the modalities of
    subset ``bits``, divided by ``log |S|``."""
    inside = weights[:, [m for m in range(weights.shape[1]) if bits >> m & 1]]
    entropy = -(inside * inside.clamp_min(1e-12).log()).sum(1)  # [n(, K)]
    return (entropy / math.log(bits.bit_count())).mean().item()


def _cr_or_nan(scores: Tensor, subsets: Sequence[int], available: Tensor) -> float:
    """CR over each sample's available nested pairs; NaN when no sample has a nested pair of listed subsets."""
    has_pair = any(
        ((plus & ~available) == 0).any().item()
        for plus in subsets
        if any(minus != plus and minus & plus == minus for minus in subsets)
    )
    return counterintuitive_rate(scores, subsets, available).item() if has_pair else math.nan


def headline_keys(report: dict[str, Any]) -> tuple[str, str]:
    """The per-subset headline key and the average's key of a report (or of one method of a summary):
    ``("accuracy", "average_accuracy")`` for classification, ``("dice_mean", "average_dice")`` for segmentation,
    ``("miou", "average_miou")`` for 2-D semantic segmentation, ``("mae", "average_mae")`` for regression (lower is
    better)."""
    if "average_dice" in report:
        return "dice_mean", "average_dice"
    if "average_miou" in report:
        return "miou", "average_miou"
    return ("mae", "average_mae") if "average_mae" in report else ("accuracy", "average_accuracy")


def region_gate_weights(weights: Tensor) -> Tensor:
    """One sample's gate weights as ``[M, 3]``: per modality and region (``[M]`` weights serve every region)."""
    return weights if weights.ndim == 2 else weights.unsqueeze(1).expand(-1, len(REGIONS))


@torch.no_grad()
def segmentation_report(
    model: nn.Module,
    dataset: Any,
    modalities: Sequence[str],
    roi_size: Sequence[int],
    overlap: float = 0.5,
    subsets: Sequence[int] | None = None,
    n_bins: int = 20,
    calibration: bool = True,
) -> dict[str, Any]:
    """Metrics of a WT/TC/ET segmenter under every subset, on whole volumes (sliding window).

    ``calibration=False`` skips the voxel-wise ECE/SCE (reported as NaN), e.g. for epoch selection on Dice.

    ``dataset`` yields ``(inputs {name: [C, D, H, W]}, mask [M], target [3, D, H, W])`` per case and has a
    ``cases[i].brain`` mask (:class:`~simmlm.datasets.brats.loader.VolumeDataset`). Voxels are predicted positive
    where the region's sigmoid exceeds 0.5.

    Returns a dict ``{"subsets": {name: {"dice_wt", "dice_tc", "dice_et", "dice_mean", "ece", "sce", "ece_wt", ...,
    "sce_et"}}, "average_dice",
    "counterintuitive_rate" (mean over regions), "counterintuitive_rate_regions", "gate_weights"
    {name: {modality: mean over regions}}, "gate_weights_regions", "cases" {case: {subset: [wt, tc, et]}}}``.
    Dice is averaged over cases; ECE/SCE are voxel-wise over the brain voxels of all cases, per region and
    their mean over regions; CR uses each case's Dice as P, per region.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    num_modalities = len(modalities)
    subsets = list(subsets or all_subsets(num_modalities))
    dice = torch.full((len(dataset), len(subsets), len(REGIONS)), math.nan, dtype=torch.float64)
    gates = torch.zeros(len(subsets), num_modalities, len(REGIONS), dtype=torch.float64)
    counts = torch.zeros(len(subsets), dtype=torch.long)
    available_bits = torch.zeros(len(dataset), dtype=torch.long)
    bins = [VoxelCalibration(len(REGIONS), n_bins) for _ in subsets] if calibration else None
    case_ids = []
    try:
        for i in range(len(dataset)):
            inputs, mask, target = dataset[i]
            inputs = {k: v.unsqueeze(0).to(device) for k, v in inputs.items()}
            mask = mask.unsqueeze(0).to(device)
            brain = dataset.cases[i].brain
            available_bits[i] = have = int(mask_to_bits(mask.cpu())[0])
            case_ids.append(dataset.cases[i].case_id)
            covered = [s for s, bits in enumerate(subsets) if bits & ~have == 0]  # the case has every modality
            subset_masks = [bits_to_mask(torch.tensor([subsets[s]], device=device), num_modalities) for s in covered]
            outputs = sliding_window_subsets(model, inputs, mask, subset_masks, roi_size, overlap)
            for s, out in zip(covered, outputs, strict=True):
                probs = out.logits[0].float().sigmoid().cpu()
                dice[i, s] = dice_score(probs > 0.5, target > 0.5)
                if bins is not None:
                    bins[s].update(probs[:, brain], target[:, brain])
                counts[s] += 1
                if out.gate_weights is not None:
                    gates[s] += region_gate_weights(out.gate_weights[0].double().cpu())
    finally:
        model.train(was_training)
    report: dict[str, Any] = {"subsets": {}, "gate_weights": {}, "gate_weights_regions": {}}
    for s, bits in enumerate(subsets):
        name = subset_name(bits, modalities)
        n = int(counts[s])
        mean = dice[:, s].nanmean(0) if n else torch.full((len(REGIONS),), math.nan)
        nan = [math.nan] * len(REGIONS)
        ece, sce = bins[s].compute_regions() if n and bins is not None else (nan, nan)
        report["subsets"][name] = {
            **{f"dice_{r}": mean[k].item() for k, r in enumerate(REGIONS)},
            "dice_mean": mean.mean().item(),
            "ece": sum(ece) / len(ece),
            "sce": sum(sce) / len(sce),
            **{f"ece_{r}": ece[k] for k, r in enumerate(REGIONS)},
            **{f"sce_{r}": sce[k] for k, r in enumerate(REGIONS)},
            "samples": n,
        }
        here = [(j, m) for j, m in enumerate(modalities) if bits >> j & 1]
        per_case = gates[s] / max(n, 1)
        report["gate_weights"][name] = {m: per_case[j].mean().item() for j, m in here}
        report["gate_weights_regions"][name] = {
            m: dict(zip(REGIONS, per_case[j].tolist(), strict=True)) for j, m in here
        }
    evaluated = [v["dice_mean"] for v in report["subsets"].values() if v["samples"]]
    report["average_dice"] = sum(evaluated) / len(evaluated) if evaluated else math.nan
    regions_cr = {r: _cr_or_nan(dice[:, :, k], subsets, available_bits) for k, r in enumerate(REGIONS)}
    report["counterintuitive_rate"] = sum(regions_cr.values()) / len(REGIONS)
    report["counterintuitive_rate_regions"] = regions_cr
    report["cases"] = {
        case: {subset_name(bits, modalities): dice[i, s].tolist() for s, bits in enumerate(subsets)}
        for i, case in enumerate(case_ids)
    }
    return report


def shapley_per_seed(tests: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Population Shapley contributions per value ("probability", "correctness") and modality, as lists over the
    seeds' test reports."""
    first = tests[0]["shapley"]
    return {value: {m: [t["shapley"][value][m] for t in tests] for m in first[value]} for value in first}
