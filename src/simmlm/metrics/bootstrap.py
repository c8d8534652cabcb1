"""Paired bootstrap comparison of two methods evaluated on the same test set under every modality subset.

A resample of the test set is a row of counts ``w [N]`` (:func:`bootstrap_weights`): sample ``n`` is counted ``w_n``
times. The report's metrics (:func:`simmlm.evaluation.evaluate.classification_report`) are weighted sums of per-sample
statistics, so every resample's metrics come from matrix products (:func:`weighted_classification_metrics`), with
``c_sn = 1`` if sample ``n`` has every modality of subset ``s`` (covers it):

- accuracy of subset ``s``: ``acc_s = sum_n w_n c_sn correct_sn / sum_n w_n c_sn``; average accuracy: mean of
  ``acc_s`` over the subsets with weight;
- ECE of subset ``s`` (bins of the max probability): ``sum_b |sum_n w_n c_sn (conf_sn - correct_sn) 1[bin_sn = b]|
  / sum_n w_n c_sn``; reported ECE: mean over the subsets with weight;
- CR: ``sum_n w_n r_n / sum_n w_n h_n``, ``r_n`` the share of sample ``n``'s nested pairs ``S- ⊊ S+ ⊆ A_n`` in
  which it is right under ``S-`` but wrong under ``S+``, ``h_n = 1`` if it has such a pair.

Methods A and B are compared on the same resamples (paired); the resamples give the test-sample part of the
uncertainty and the seeds' spread the rest (:func:`seed_and_test_interval`); :func:`holm` adjusts a family of
such comparisons for multiplicity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import t as student_t
from torch import Tensor

from simmlm.subsets import bits_to_mask, mask_to_bits

METRICS = ("average_accuracy", "counterintuitive_rate", "ece")
#: What a regression run is compared on (:func:`weighted_regression_metrics`).
REGRESSION_METRICS = ("average_mae", "average_f1_has0", "counterintuitive_rate")


@dataclass
class RunArrays:
    """One run's test-set predictions under every subset (as saved in ``predictions.npz``).

    Attributes:
        probs: ``[S, N, K]`` class probabilities per subset, or ``[S, N]`` predicted scores of a regression run
            (``scores`` in its ``predictions.npz``); NaN rows where the sample lacks a modality of the subset.
        targets: ``[N]`` labels (regression: true scores).
        subsets: the ``S`` subsets' bit codes, in row order.
        available: ``[N]`` long bit codes of each sample's available modalities.
    """

    probs: Tensor
    targets: Tensor
    subsets: list[int]
    available: Tensor

    @classmethod
    def from_npz(cls, path: str | Path) -> RunArrays:
        """Read ``predictions.npz`` (``probs`` or a regression's ``scores``, ``subsets``, ``targets``)."""
        with np.load(path) as npz:
            return cls.from_arrays({key: npz[key] for key in npz.files})

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], available: Tensor | None = None) -> RunArrays:
        """A task report's arrays (what ``predictions.npz`` holds); without ``available``, a sample's available
        modalities are the union of the subsets whose row is not NaN for it."""
        regression = "scores" in arrays
        probs = torch.from_numpy(arrays["scores" if regression else "probs"])
        subsets = [int(b) for b in arrays["subsets"]]
        targets = torch.from_numpy(arrays["targets"])
        targets = targets.float() if regression else targets.long()
        if available is None:
            codes = torch.tensor(subsets, dtype=torch.long)
            num_modalities = max(subsets).bit_length() if subsets else 1
            predicted = ~(probs.isnan() if regression else probs.isnan().any(-1))  # [S, N]
            has = (predicted.T.double() @ bits_to_mask(codes, num_modalities).double()) > 0  # [N, M]
            available = mask_to_bits(has)
        return cls(probs=probs, targets=targets, subsets=subsets, available=available)

    @property
    def regression(self) -> bool:
        """The run predicts scores (``probs`` is ``[S, N]``)."""
        return self.probs.ndim == 2


@dataclass
class Interval:
    """A difference with its interval (:func:`seed_and_test_interval`).

    Attributes:
        difference: mean over seeds of ``A - B`` on the full test set (unit weights).
        low: lower end of the interval.
        high: upper end of the interval.
        p_value: two-sided p-value of "no difference" under the same approximation (for multiplicity adjustment).
    """

    difference: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (never for a NaN interval)."""
        return self.low > 0 or self.high < 0


@dataclass
class Comparison(Interval):
    """One row of a comparison table: method A minus method B on one metric (``metric``, one of
    :data:`METRICS`)."""

    metric: str = ""


def bootstrap_weights(num_samples: int, num_draws: int, generator: torch.Generator | None = None) -> Tensor:
    """Counts of each test sample in ``B = num_draws`` resamples of ``N = num_samples`` with replacement.

    Returns:
        ``[B, N]`` float64, every row summing to ``N`` (on the generator's device).
    """
    if num_samples < 1 or num_draws < 1:
        raise ValueError(f"num_samples and num_draws must be >= 1, got {num_samples} and {num_draws}")
    device = generator.device if generator is not None else None
    picks = torch.randint(num_samples, (num_draws, num_samples), generator=generator, device=device)
    weights = torch.zeros(num_draws, num_samples, dtype=torch.float64, device=picks.device)
    return weights.scatter_add_(1, picks, torch.ones_like(weights))


def _pair_shares(correct: Tensor, subsets: Sequence[int], available: Tensor) -> tuple[Tensor, Tensor]:
    """Per sample: ``r_n``, the share of its nested pairs ``S- ⊊ S+ ⊆ A_n`` with ``correct(S-) > correct(S+)``
    (0 without pairs), and ``h_n``, 1 if it has a pair. ``correct``: ``[S, N]``; both results ``[N]`` float64."""
    pairs = [(i, j) for i, lo in enumerate(subsets) for j, hi in enumerate(subsets) if lo != hi and lo & hi == lo]
    minus = torch.tensor([p[0] for p in pairs], dtype=torch.long, device=correct.device)
    plus = torch.tensor([p[1] for p in pairs], dtype=torch.long, device=correct.device)
    codes = torch.tensor(list(subsets), dtype=torch.long, device=correct.device)
    valid = (codes[plus].unsqueeze(0) & ~available.unsqueeze(1)) == 0  # [N, P]
    worse = (correct[minus] > correct[plus]).T & valid  # [N, P]
    count = valid.sum(1).double()
    return worse.sum(1).double() / count.clamp_min(1), (count > 0).double()


def _coverage(
    subsets: Sequence[int], available: Tensor, weights: Tensor, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """The resample weights (float64) and available codes on ``device``, and ``covered`` ``[S, N]``: sample ``n``
    has every modality of subset ``s``."""
    if weights.ndim != 2 or weights.shape[1] != len(available):
        raise ValueError(f"weights must be [B, {len(available)}], got {tuple(weights.shape)}")
    available = available.to(device).long()
    codes = torch.tensor(list(subsets), dtype=torch.long, device=device).unsqueeze(1)
    return weights.to(device, torch.float64), available, (codes & ~available.unsqueeze(0)) == 0


def weighted_classification_metrics(
    probs: Tensor,
    targets: Tensor,
    subsets: Sequence[int],
    available: Tensor,
    weights: Tensor,
    n_bins: int = 20,
) -> dict[str, Tensor]:
    """The report's average accuracy, CR and mean ECE for each resample, sample ``n`` counted ``weights[b, n]``
    times (see the module docstring).

    With unit weights these are :func:`simmlm.evaluation.evaluate.classification_report`'s numbers (ECE: the mean over
    the subsets with samples of each subset's ``ece``). A subset with no weight in a resample is left out of its
    averages; a resample without weight on any subset or any nested pair gets NaN.

    Args:
        probs: ``[S, N, K]`` class probabilities; rows a sample does not cover may be NaN (never read).
        targets: ``[N]`` labels.
        subsets: the ``S`` subsets' bit codes.
        available: ``[N]`` bit codes of the samples' available modalities.
        weights: ``[B, N]`` per-resample counts (:func:`bootstrap_weights`; a row of ones is the test set).
        n_bins: equal-width confidence bins of the ECE.

    Returns:
        ``{"average_accuracy", "counterintuitive_rate", "ece"}``, each ``[B]`` float64.
    """
    num_subsets, num_samples = probs.shape[:2] if probs.ndim == 3 else (-1, -1)
    if probs.ndim != 3 or num_subsets != len(subsets):
        raise ValueError(f"probs must be [{len(subsets)}, N, K], got {tuple(probs.shape)}")
    if tuple(targets.shape) != (num_samples,) or tuple(available.shape) != (num_samples,):
        raise ValueError(
            f"targets and available must be [{num_samples}], got {tuple(targets.shape)}, {tuple(available.shape)}"
        )
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    device = probs.device
    weights, available, covered = _coverage(subsets, available, weights, device)
    confidence, predicted = torch.where(covered.unsqueeze(-1), probs, 0).max(-1)
    correct = (predicted == targets.to(device).unsqueeze(0)) & covered
    c = covered.double()

    total = weights @ c.T  # [B, S]; 0 where a resample leaves a subset out
    accuracy = (weights @ correct.double().T) / total  # NaN where total is 0
    # Bins as in calibration_bins, edges in the probabilities' dtype (so unit weights bin exactly as the report).
    edges = torch.linspace(0, 1, n_bins + 1, device=device, dtype=confidence.dtype)
    bins = torch.bucketize(confidence.contiguous(), edges[1:-1], right=False).clamp(0, n_bins - 1)  # [S, N]
    gap = (confidence.double() - correct.double()) * c  # conf - correct on the covered rows, 0 elsewhere
    ece = torch.empty_like(total)
    for s in range(num_subsets):  # per subset, all resamples at once: per-bin weighted sums of the gaps
        per_bin = torch.zeros(len(weights), n_bins, dtype=torch.float64, device=device)
        ece[:, s] = per_bin.index_add_(1, bins[s], weights * gap[s]).abs().sum(1) / total[:, s]
    share, has_pair = _pair_shares(correct, subsets, available)
    return {
        "average_accuracy": accuracy.nanmean(1),
        "counterintuitive_rate": (weights @ share) / (weights @ has_pair),
        "ece": ece.nanmean(1),
    }


def weighted_regression_metrics(
    scores: Tensor, targets: Tensor, subsets: Sequence[int], available: Tensor, weights: Tensor
) -> dict[str, Tensor]:
    """A regression report's average MAE, average weighted F1 (has-0: non-negative vs negative) and CR (the sign's
    correctness as the score) for each resample, sample ``n`` counted ``weights[b, n]`` times; with unit weights
    :func:`simmlm.evaluation.evaluate.regression_report`'s numbers.

    Args:
        scores: ``[S, N]`` predicted scores; rows a sample does not cover may be NaN (never read).
        targets: ``[N]`` true scores.
        subsets, available, weights: as in :func:`weighted_classification_metrics`.

    Returns:
        ``{"average_mae", "average_f1_has0", "counterintuitive_rate"}``, each ``[B]`` float64.
    """
    if scores.ndim != 2 or scores.shape[0] != len(subsets) or tuple(targets.shape) != (scores.shape[1],):
        raise ValueError(f"scores must be [{len(subsets)}, N] and targets [N], got {tuple(scores.shape)}")
    device = scores.device
    weights, available, covered = _coverage(subsets, available, weights, device)
    c = covered.double()
    y = targets.to(device).double()
    error = torch.where(covered, (scores.double() - y).abs(), 0.0)
    total = weights @ c.T  # [B, S]
    mae = (weights @ error.T) / total
    predicted = (torch.where(covered, scores, 0) >= 0).double()  # class 1: non-negative
    true = (y >= 0).double().expand_as(predicted)
    f1 = torch.zeros_like(total)
    for p, t in ((predicted, true), (1 - predicted, 1 - true)):  # weighted F1 over the two classes
        hits = weights @ (p * t * c).T
        support = weights @ (t * c).T
        denominator = weights @ (p * c).T + support
        f1 += torch.where(denominator > 0, 2 * hits / denominator.clamp_min(1e-300), 0.0) * support
    f1 = f1 / total
    correct = ((predicted == true) & covered).double()
    share, has_pair = _pair_shares(correct, subsets, available)
    return {
        "average_mae": mae.nanmean(1),
        "average_f1_has0": f1.nanmean(1),
        "counterintuitive_rate": (weights @ share) / (weights @ has_pair),
    }


def seed_and_test_interval(per_seed: Tensor, resampled: Tensor, level: float = 0.95) -> Interval:
    """An interval for the mean over seeds of a paired difference ``A - B``, from two sources of uncertainty.

    The difference a benchmark reports, ``d = mean_r d_r`` over ``R`` seeds on one test set, varies with the seeds
    and with the test set. The seeds' spread ``s`` of the ``d_r`` already holds every part that differs between
    seeds, including how each seed happens to do on each test sample; what it cannot see is the part all seeds
    share (a test set whose samples happen to suit A). Its variance is estimated as the sum of the two parts
    (Bouthillier et al., "Accounting for variance in machine learning benchmarks", MLSys 2021, who show that
    ignoring either part misleads):

        se^2 = s^2 / R + v_shared,    v_shared = max(0, (R v - m) / (R - 1)),

    with ``v`` the variance of ``mean_r d_r`` over test-set resamples and ``m`` the mean over seeds of each ``d_r``'s
    own resampling variance: per test sample, a part shared by the seeds (variance ``a``) and a part of each seed
    (``b``) give ``v = a + b / R`` and ``m = a + b``, so ``a`` is the one-way random-effects estimate above (summing
    ``s^2 / R + v`` would count ``b / R`` twice). The interval is ``d ± t(df) se`` with Welch–Satterthwaite's degrees
    of freedom ``df = se^4 / ((s^2/R)^2 / (R - 1))`` (Satterthwaite 1946; ``v_shared``, from hundreds of test
    samples, counts as exactly known). Without a shared part this is the paired t-interval over seeds, whose 95 %
    holds for normal per-seed differences; as the shared part dominates it tends to the normal interval of the
    test-set bootstrap. With ``R = 1`` the parts cannot be told apart: ``se^2 = v`` (the interval then says
    nothing about other seeds).

    The paired bootstrap used before (test samples and seeds resampled together) cannot leave the range of the
    ``R`` per-seed differences: with 3 seeds and no true difference up to 26 % of its 95 % intervals excluded 0;
    this interval's rate stays near 5 % for 3, 5 and 10 seeds (``scripts/interval_coverage.py``, the table of
    the docs' "Metrics and intervals" page).

    Args:
        per_seed: ``[R]`` the difference per seed on the test set.
        resampled: ``[R, B]`` the same under ``B`` test-set resamples (the same resamples for every seed and both
            methods); draws that are NaN for some seed (a resample without a subset) are left out.
        level: coverage of the interval.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if per_seed.ndim != 1 or len(per_seed) < 1 or resampled.ndim != 2 or resampled.shape[0] != len(per_seed):
        raise ValueError(
            f"per_seed must be [R], resampled [R, B], got {tuple(per_seed.shape)}, {tuple(resampled.shape)}"
        )
    per_seed, resampled = per_seed.double().cpu(), resampled.double().cpu()
    mean = per_seed.mean().item()
    if math.isnan(mean):
        return Interval(mean, math.nan, math.nan, math.nan)
    num_seeds = len(per_seed)
    draws = resampled[:, ~resampled.isnan().any(0)]  # [R, B']
    if draws.shape[1] > 1:
        v = draws.mean(0).var().item()
        m = draws.var(1).mean().item()
        shared_var = v if num_seeds == 1 else max(0.0, (num_seeds * v - m) / (num_seeds - 1))
    else:
        shared_var = 0.0
    seed_var = per_seed.var().item() / num_seeds if num_seeds > 1 else 0.0
    se = math.sqrt(seed_var + shared_var)
    if se == 0:
        return Interval(mean, mean, mean, 1.0 if mean == 0 else 0.0)
    df = (seed_var + shared_var) ** 2 / (seed_var**2 / (num_seeds - 1)) if seed_var > 0 else math.inf
    half = float(student_t.ppf((1 + level) / 2, df)) * se
    p_value = float(2 * student_t.sf(abs(mean) / se, df))
    return Interval(mean, mean - half, mean + half, p_value)


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down rejections at family-wise error ``alpha`` (Holm 1979): sort the ``m`` p-values, reject
    while ``p_(k) <= alpha / (m - k)`` (``k`` from 0). NaN p-values are never rejected and do not count in ``m``."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    rejected = [False] * len(p_values)
    for k, (p, i) in enumerate(order):
        if p > alpha / (len(order) - k):
            break
        rejected[i] = True
    return rejected


def compare_runs(
    runs_a: Sequence[RunArrays],
    runs_b: Sequence[RunArrays],
    num_draws: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[Comparison]:
    """Method A minus method B on average accuracy, CR and ECE (:data:`METRICS`; regression runs:
    :data:`REGRESSION_METRICS`), with intervals over seeds and test samples (:func:`seed_and_test_interval`).

    Every run of both methods is scored on the same ``num_draws`` test-set resamples (drawn from ``seed``): the
    comparison is paired by seed and by test sample.

    Args:
        runs_a: method A's runs, one per seed.
        runs_b: method B's runs for the same seeds in the same order.
        num_draws: number of test-set resamples.
        seed: seed of the generator of the resamples (reproducible results).
        level: coverage of the intervals.

    Raises:
        ValueError: without runs, with different numbers of runs, or if the runs' targets differ (not the same
            test set).
    """
    if not runs_a or len(runs_a) != len(runs_b):
        raise ValueError(f"need the same number (>= 1) of runs of A and B, got {len(runs_a)} and {len(runs_b)}")
    targets = runs_a[0].targets
    if any(
        run.targets.shape != targets.shape or not torch.equal(run.targets.cpu(), targets.cpu())
        for run in (*runs_a, *runs_b)
    ):
        raise ValueError("the runs' targets differ: A and B must be evaluated on the same test set")
    generator = torch.Generator().manual_seed(seed)
    resamples = bootstrap_weights(len(targets), num_draws, generator)
    weights = torch.cat([torch.ones(1, len(targets), dtype=torch.float64), resamples])  # row 0: the test set

    regression = runs_a[0].regression
    if any(run.regression != regression for run in (*runs_a, *runs_b)):
        raise ValueError("A and B must both be classifiers or both be regressors")
    metric = weighted_regression_metrics if regression else weighted_classification_metrics
    names = REGRESSION_METRICS if regression else METRICS

    def scores(runs: Sequence[RunArrays]) -> dict[str, Tensor]:
        per_run = [metric(r.probs, r.targets, r.subsets, r.available, weights) for r in runs]
        return {name: torch.stack([m[name].cpu() for m in per_run]) for name in names}  # [R, 1 + B]

    scores_a, scores_b = scores(runs_a), scores(runs_b)
    rows = []
    for name in names:
        difference = scores_a[name] - scores_b[name]  # [R, 1 + B]
        interval = seed_and_test_interval(difference[:, 0], difference[:, 1:], level)
        rows.append(Comparison(**vars(interval), metric=name))
    return rows


def seed_interval(values: Sequence[float]) -> Interval:
    """The 95 % t-interval of a mean over seeds (:func:`seed_and_test_interval` without
    a test-sample part)."""
    per_seed = torch.tensor(list(values), dtype=torch.float64)
    return seed_and_test_interval(per_seed, per_seed.unsqueeze(1))
