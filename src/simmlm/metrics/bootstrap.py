"""Paired bootstrap comparison of two methods evaluated on the same test set under every modality subset.

A resample of the test set is a row of counts ``w [N]`` (:func:`bootstrap_weights`): sample ``n`` is counted
``w_n`` times. The report's metrics (:func:`simmlm.evaluate.classification_report`) are weighted sums of per-sample
statistics, so every resample's metrics come from matrix products (:func:`weighted_classification_metrics`), with
``c_sn = 1`` if sample ``n`` has every modality of subset ``s`` (covers it):

- accuracy of subset ``s``: ``acc_s = sum_n w_n c_sn correct_sn / sum_n w_n c_sn``; average accuracy: mean of
  ``acc_s`` over the subsets with weight;
- ECE of subset ``s`` (bins of the max probability): ``sum_b |sum_n w_n c_sn (conf_sn - correct_sn) 1[bin_sn = b]|
  / sum_n w_n c_sn``; reported ECE: mean over the subsets with weight;
- CR: ``sum_n w_n r_n / sum_n w_n h_n``, ``r_n`` the share of sample ``n``'s nested pairs ``S- ⊊ S+ ⊆ A_n`` in
  which it is right under ``S-`` but wrong under ``S+``, ``h_n = 1`` if it has such a pair.

Methods A and B are compared on the same resamples (paired), and the seeds (runs) are resampled too
(:func:`paired_difference`), so the interval pools the test-sample uncertainty with the spread over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from simmlm.subsets import bits_to_mask, mask_to_bits

METRICS = ("average_accuracy", "counterintuitive_rate", "ece")


@dataclass
class RunArrays:
    """One run's test-set predictions under every subset (as saved in ``predictions.npz``).

    Attributes:
        probs: ``[S, N, K]`` class probabilities per subset; NaN rows where the sample lacks a modality of it.
        targets: ``[N]`` labels.
        subsets: the ``S`` subsets' bit codes, in row order.
        available: ``[N]`` long bit codes of each sample's available modalities.
    """

    probs: Tensor
    targets: Tensor
    subsets: list[int]
    available: Tensor

    @classmethod
    def from_npz(cls, path: str | Path) -> RunArrays:
        """Read ``predictions.npz`` (``probs``, ``subsets``, ``targets``); a sample's available modalities are the
        union of the subsets whose row is not NaN for it."""
        with np.load(path) as npz:
            probs = torch.from_numpy(npz["probs"])
            subsets = [int(b) for b in npz["subsets"]]
            targets = torch.from_numpy(npz["targets"]).long()
        codes = torch.tensor(subsets, dtype=torch.long)
        num_modalities = max(subsets).bit_length() if subsets else 1
        predicted = ~probs.isnan().any(-1)  # [S, N]
        has = (predicted.T.double() @ bits_to_mask(codes, num_modalities).double()) > 0  # [N, M]
        return cls(probs=probs, targets=targets, subsets=subsets, available=mask_to_bits(has))


@dataclass
class Comparison:
    """One row of a comparison table: method A minus method B on one metric.

    Attributes:
        metric: the metric's name (one of :data:`METRICS`).
        difference: mean over seeds of ``A - B`` on the full test set (unit weights).
        low: lower end of the bootstrap percentile interval.
        high: upper end of the bootstrap percentile interval.
    """

    metric: str
    difference: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (never for a NaN interval)."""
        return self.low > 0 or self.high < 0


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

    With unit weights these are :func:`simmlm.evaluate.classification_report`'s numbers (ECE: the mean over the
    subsets with samples of each subset's ``ece``). A subset with no weight in a resample is left out of its
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
    if weights.ndim != 2 or weights.shape[1] != num_samples:
        raise ValueError(f"weights must be [B, {num_samples}], got {tuple(weights.shape)}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    device = probs.device
    weights = weights.to(device, torch.float64)
    available = available.to(device).long()
    codes = torch.tensor(list(subsets), dtype=torch.long, device=device).unsqueeze(1)
    covered = (codes & ~available.unsqueeze(0)) == 0  # [S, N]
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


def paired_difference(a: Tensor, b: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Bootstrap draws of the mean over seeds of ``A - B``, resampling the seeds too.

    Args:
        a: ``[R, B]`` a metric of method A for ``R`` seeds under ``B`` test-set resamples.
        b: ``[R, B]`` the same metric of method B under the same resamples (paired).
        generator: random generator for the seed resampling.

    Returns:
        ``[B]`` float64: draw ``k`` is ``mean_j (a - b)[r_kj, k]`` with ``r_k`` ``R`` seeds drawn with replacement.
    """
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 1:
        raise ValueError(f"a and b must both be [R, B] with R >= 1, got {tuple(a.shape)} and {tuple(b.shape)}")
    difference = a.double() - b.double().to(a.device)
    num_seeds, num_draws = difference.shape
    device = generator.device if generator is not None else None
    seeds = torch.randint(num_seeds, (num_draws, num_seeds), generator=generator, device=device).to(a.device)
    return difference[seeds, torch.arange(num_draws, device=a.device).unsqueeze(1)].mean(1)


def percentile_interval(draws: Tensor, level: float = 0.95) -> tuple[float, float]:
    """The equal-tailed percentile interval of bootstrap draws (NaN draws ignored; ``(nan, nan)`` if all are).

    The ends are the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (linear interpolation).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    kept = draws.flatten().double()
    kept = kept[~kept.isnan()]
    if not len(kept):
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    low, high = torch.quantile(kept, torch.tensor([tail, 1 - tail], dtype=torch.float64, device=kept.device))
    return low.item(), high.item()


def compare_runs(
    runs_a: Sequence[RunArrays],
    runs_b: Sequence[RunArrays],
    num_draws: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[Comparison]:
    """Method A minus method B on average accuracy, CR and ECE (:data:`METRICS`), with paired bootstrap intervals.

    Every run is scored on the same ``num_draws`` test-set resamples (drawn from ``seed``), and the seeds are
    resampled on top (:func:`paired_difference`).

    Args:
        runs_a: method A's runs, one per seed.
        runs_b: method B's runs for the same seeds in the same order.
        num_draws: number of bootstrap resamples.
        seed: seed of the generator of every random draw (reproducible results).
        level: coverage of the percentile intervals.

    Raises:
        ValueError: without runs, with different numbers of runs, or if the runs' targets differ (not the same
            test set).
    """
    if not runs_a or len(runs_a) != len(runs_b):
        raise ValueError(f"need the same number (>= 1) of runs of A and B, got {len(runs_a)} and {len(runs_b)}")
    targets = runs_a[0].targets
    if any(not torch.equal(run.targets.cpu(), targets.cpu()) for run in (*runs_a, *runs_b)):
        raise ValueError("the runs' targets differ: A and B must be evaluated on the same test set")
    generator = torch.Generator().manual_seed(seed)
    resamples = bootstrap_weights(len(targets), num_draws, generator)
    weights = torch.cat([torch.ones(1, len(targets), dtype=torch.float64), resamples])  # row 0: the test set

    def scores(runs: Sequence[RunArrays]) -> dict[str, Tensor]:
        per_run = [weighted_classification_metrics(r.probs, r.targets, r.subsets, r.available, weights) for r in runs]
        return {name: torch.stack([m[name].cpu() for m in per_run]) for name in METRICS}  # [R, 1 + B]

    scores_a, scores_b = scores(runs_a), scores(runs_b)
    rows = []
    for name in METRICS:
        a, b = scores_a[name], scores_b[name]
        draws = paired_difference(a[:, 1:], b[:, 1:], generator)
        low, high = percentile_interval(draws, level)
        rows.append(Comparison(name, (a[:, 0] - b[:, 0]).mean().item(), low, high))
    return rows
