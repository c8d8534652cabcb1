"""Paired comparisons of classification metrics: weighted metrics against the report and by hand, intervals over
seeds and test samples and their false-positive rate, Holm, I/O."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import t as student_t
from torch import Tensor

from simmlm.evaluation.evaluate import classification_report
from simmlm.evaluation.inferers import SubsetPredictions
from simmlm.metrics.bootstrap import (
    METRICS,
    Comparison,
    RunArrays,
    bootstrap_weights,
    compare_runs,
    holm,
    seed_and_test_interval,
    weighted_classification_metrics,
)
from simmlm.subsets import all_subsets

MODALITIES = ("a", "b", "c")


def _predictions(seed: int, n: int, patterns: list[int], num_classes: int = 3, scale: float = 2.0) -> SubsetPredictions:
    """Random logits under every subset of 3 modalities, NaN where the sample lacks a modality of the subset."""
    gen = torch.Generator().manual_seed(seed)
    subsets = all_subsets(len(MODALITIES))
    available = torch.tensor(patterns)[torch.randint(len(patterns), (n,), generator=gen)]
    logits = scale * torch.randn(len(subsets), n, num_classes, generator=gen)
    targets = torch.randint(num_classes, (n,), generator=gen)
    preds = SubsetPredictions(subsets=subsets, logits=logits, gate_weights=None, targets=targets, available=available)
    preds.logits = torch.where(preds.covered.unsqueeze(-1), logits, math.nan)
    return preds


def _report_numbers(preds: SubsetPredictions, n_bins: int = 20) -> dict[str, float]:
    """The report's average accuracy, CR, and mean over subsets with samples of the per-subset ECE."""
    report = classification_report(preds, MODALITIES, n_bins)
    eces = [v["ece"] for v in report["subsets"].values() if v["samples"]]
    return {
        "average_accuracy": report["average_accuracy"],
        "counterintuitive_rate": report["counterintuitive_rate"],
        "ece": sum(eces) / len(eces) if eces else math.nan,
    }


def _run(preds: SubsetPredictions) -> RunArrays:
    return RunArrays(preds.logits.float().softmax(-1), preds.targets, preds.subsets, preds.available)


def _metrics(run: RunArrays, weights: Tensor, n_bins: int = 20) -> dict[str, Tensor]:
    return weighted_classification_metrics(run.probs, run.targets, run.subsets, run.available, weights, n_bins)


@pytest.mark.parametrize(
    "patterns",
    [
        [0b111],  # every modality present
        [0b111, 0b011, 0b110, 0b001, 0b100],  # missing modalities; some samples have no nested pair
        [0b011, 0b110, 0b010],  # no sample has a and c together: subsets a+c and a+b+c have no sample
    ],
)
def test_unit_weights_reproduce_classification_report(patterns: list[int]) -> None:
    preds = _predictions(0, 50, patterns)
    run = _run(preds)
    assert run.probs.isnan().any() == (patterns != [0b111])
    got = _metrics(run, torch.ones(1, 50, dtype=torch.float64))
    expected = _report_numbers(preds)
    for name in METRICS:
        assert got[name].shape == (1,)
        assert got[name].item() == pytest.approx(expected[name], abs=1e-6)


def test_integer_weights_equal_the_report_on_the_repeated_samples() -> None:
    preds = _predictions(1, 30, [0b111, 0b011, 0b101, 0b100])
    weights = bootstrap_weights(30, 4, torch.Generator().manual_seed(0))
    got = _metrics(_run(preds), weights)
    for b in range(4):
        picks = torch.repeat_interleave(torch.arange(30), weights[b].long())  # sample n, weights[b, n] times
        repeated = SubsetPredictions(
            preds.subsets, preds.logits[:, picks], None, preds.targets[picks], preds.available[picks]
        )
        expected = _report_numbers(repeated)
        for name in METRICS:
            assert got[name][b].item() == pytest.approx(expected[name], abs=1e-6)


def _tiny_run() -> RunArrays:
    """2 modalities, subsets {0}, {1}, {0,1}; samples 0 and 1 have both, sample 2 has modality 0 only.

    (probability of the predicted class, right?) per subset {0} / {1} / {0,1}:
    sample 0 (label 0): 0.9 right / 0.6 wrong / 0.7 wrong;
    sample 1 (label 1): 0.8 right / 0.6 wrong / 0.7 right;
    sample 2 (label 0): 0.6 right / -   / -.
    """
    nan = [math.nan, math.nan]
    probs = torch.tensor(
        [
            [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
            [[0.4, 0.6], [0.6, 0.4], nan],
            [[0.3, 0.7], [0.3, 0.7], nan],
        ]
    )
    return RunArrays(probs, torch.tensor([0, 1, 0]), [1, 2, 3], torch.tensor([3, 3, 1]))


def test_weighted_metrics_by_hand() -> None:
    # 4 bins: (0, .25], (.25, .5], (.5, .75], (.75, 1]; gap = confidence - correct.
    weights = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    got = _metrics(_tiny_run(), weights, n_bins=4)
    # Row 0, w = (2, 1, 0):
    #   accuracy {0} = (2 + 1) / 3 = 1, {1} = 0 / 3 = 0, {0,1} = (0 + 1) / 3 = 1/3; average 4/9.
    #   ECE {0}: bin 4 holds gaps -0.1 (x2) and -0.2 -> |-0.4| / 3; {1}: bin 3, 0.6 (x2) + 0.6 -> 1.8 / 3;
    #   {0,1}: bin 3, 0.7 (x2) - 0.3 -> 1.1 / 3 (gaps of one bin cancel); mean (0.4 + 1.8 + 1.1) / 9 = 1.1 / 3.
    #   CR: pairs ({0}, {0,1}) and ({1}, {0,1}); sample 0 is right with {0} but wrong with {0,1}: r = 1/2;
    #   sample 1: r = 0; sample 2 has no pair. CR = (2 * 1/2 + 1 * 0) / (2 + 1) = 1/3.
    # Row 1, w = (0, 0, 3): only subset {0} has weight: accuracy 1, ECE |3 * -0.4| / 3 = 0.4; no pair: CR NaN.
    # Row 2, unit weights: accuracy (1 + 0 + 1/2) / 3 = 1/2; ECE {0} = (|-0.1 - 0.2| + |-0.4|) / 3 = 0.7 / 3,
    #   {1} = 1.2 / 2, {0,1} = |0.7 - 0.3| / 2, mean (0.7 / 3 + 0.6 + 0.2) / 3; CR (1/2 + 0) / 2 = 1/4.
    expected = {
        "average_accuracy": [4 / 9, 1.0, 0.5],
        "counterintuitive_rate": [1 / 3, math.nan, 0.25],
        "ece": [1.1 / 3, 0.4, (0.7 / 3 + 0.8) / 3],
    }
    for name in METRICS:
        torch.testing.assert_close(got[name], torch.tensor(expected[name]).double(), atol=1e-6, rtol=0, equal_nan=True)


def test_bootstrap_weights() -> None:
    weights = bootstrap_weights(7, 500, torch.Generator().manual_seed(0))
    assert weights.shape == (500, 7) and weights.dtype == torch.float64
    assert (weights.sum(1) == 7).all() and torch.equal(weights, weights.round()) and (weights >= 0).all()
    assert weights.mean().item() == pytest.approx(1.0) and weights.std().item() > 0.5  # counts vary
    assert torch.equal(weights, bootstrap_weights(7, 500, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError):
        bootstrap_weights(0, 3)


def test_without_test_variance_the_interval_is_the_paired_t_interval_over_seeds() -> None:
    # per-seed differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.303 -> 2 ± 2.484 (the old bootstrap gave [1, 3])
    per_seed = torch.tensor([1.0, 2.0, 3.0])
    interval = seed_and_test_interval(per_seed, per_seed.unsqueeze(1).expand(3, 50))
    assert interval.difference == pytest.approx(2.0)
    assert (interval.low, interval.high) == pytest.approx((2 - 2.4841, 2 + 2.4841), abs=1e-4)
    assert interval.p_value == pytest.approx(0.0742, abs=1e-4) and not interval.significant  # t = 2 sqrt(3), 2 df


def test_a_test_set_part_shared_by_the_seeds_adds_to_their_spread_and_theirs_alone_does_not() -> None:
    gen = torch.Generator().manual_seed(0)
    noise = 0.5 * torch.randn(1, 20000, generator=gen, dtype=torch.float64)
    one_seed = seed_and_test_interval(torch.tensor([1.0]), 1.0 + noise)  # one seed: the test part alone, normal
    half = 1.959964 * (1.0 + noise).var().sqrt().item()
    assert (one_seed.low, one_seed.high) == pytest.approx((1 - half, 1 + half), rel=1e-6)
    per_seed = torch.tensor([1.0, 2.0, 3.0])
    shared = seed_and_test_interval(per_seed, per_seed.unsqueeze(1) + noise)  # the same noise for every seed
    variance = 1 / 3 + noise.var().item()  # s^2 / R + v_shared
    df = variance**2 / ((1 / 3) ** 2 / 2)
    assert shared.high - shared.difference == pytest.approx(student_t.ppf(0.975, df) * variance**0.5, rel=1e-9)
    assert shared.high - shared.difference == pytest.approx(shared.difference - shared.low)
    # noise of each seed's own (independent per seed): already in the seeds' spread, not counted again
    own = per_seed.unsqueeze(1) + 0.5 * torch.randn(3, 20000, generator=gen, dtype=torch.float64)
    seeds_only = seed_and_test_interval(per_seed, per_seed.unsqueeze(1).expand(3, 5))
    assert seed_and_test_interval(per_seed, own).high == pytest.approx(seeds_only.high, abs=0.02)


def test_interval_edge_cases() -> None:
    zero = seed_and_test_interval(torch.zeros(3), torch.zeros(3, 10))
    assert (zero.difference, zero.low, zero.high, zero.p_value) == (0.0, 0.0, 0.0, 1.0) and not zero.significant
    exact = seed_and_test_interval(torch.full((3,), 0.5), torch.full((3, 10), 0.5))
    assert (exact.low, exact.high) == (0.5, 0.5) and exact.significant
    nan = seed_and_test_interval(torch.tensor([math.nan, 1.0]), torch.ones(2, 4))
    assert math.isnan(nan.low) and not nan.significant
    with pytest.raises(ValueError):
        seed_and_test_interval(torch.ones(3), torch.ones(2, 4))
    with pytest.raises(ValueError):
        seed_and_test_interval(torch.ones(3), torch.ones(3, 4), level=1.0)


def test_holm_steps_down_and_ignores_nan() -> None:
    # sorted 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2: stop; NaN is not counted in m
    assert holm([0.01, 0.04, 0.03, 0.005, math.nan]) == [True, False, False, True, False]
    assert holm([0.04]) == [True] and holm([0.04, 0.04]) == [False, False] and holm([]) == []


def _coverage_module() -> Any:
    path = Path(__file__).resolve().parents[1] / "scripts" / "interval_coverage.py"
    spec = importlib.util.spec_from_file_location("interval_coverage", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("scenario", range(3), ids=["seeds-dominate", "own-sample-noise", "shared-sample-noise"])
def test_interval_keeps_its_false_positive_rate_and_finds_a_real_shift(scenario: int) -> None:
    coverage = _coverage_module()
    _, sigma, tau = coverage.SCENARIOS[scenario]
    rates = [
        coverage.rejection_rates(seeds, tau, replicates=500, samples=300, draws=100, sigma=sigma, seed=seeds)
        for seeds in (3, 5, 10)
    ]
    new = sum(r["new"] for r in rates) / 3  # 1,500 null replicates: sd of the rate 0.56 points at a true 5 %
    assert new <= 0.06 and max(r["new"] for r in rates) <= 0.075, rates
    if sigma >= 1:  # where the seeds dominate, the former bootstrap's excess (where test samples do, it is small)
        assert sum(r["old"] for r in rates) / 3 > new + 0.05, rates
    else:  # (the seeds' luck of the first scenario hides a 9-point shift at 5 seeds)
        shifted = coverage.rejection_rates(5, tau, replicates=100, shift=1.0, samples=300, draws=100, sigma=sigma)
        assert shifted["new"] >= 0.8, shifted


def test_comparison_significance() -> None:
    assert Comparison(0.1, 0.01, 0.2, 0.01, "ece").significant
    assert Comparison(-0.1, -0.2, -0.01, 0.01, "ece").significant
    assert not Comparison(0.0, -0.1, 0.1, 1.0, "ece").significant
    assert not Comparison(0.0, 0.0, 0.0, 1.0, "ece").significant
    assert not Comparison(math.nan, math.nan, math.nan, math.nan, "ece").significant


def test_identical_runs_differ_by_exactly_zero() -> None:
    first = _run(_predictions(0, 40, [0b111, 0b011]))
    second = RunArrays(first.probs.roll(1, dims=-1), first.targets, first.subsets, first.available)  # another seed
    runs = [first, second]
    rows = compare_runs(runs, runs, num_draws=200)
    assert [r.metric for r in rows] == list(METRICS)
    for row in rows:
        assert (row.difference, row.low, row.high) == (0.0, 0.0, 0.0)
        assert not row.significant


def _confident_run(targets: Tensor, right: Tensor, num_classes: int = 3) -> RunArrays:
    """Probability 0.9 on the label where ``right`` ([S, N]), else on the next class; every modality present."""
    predicted = torch.where(right, targets, (targets + 1) % num_classes)
    probs = torch.full((*right.shape, num_classes), 0.05).scatter_(-1, predicted.unsqueeze(-1), 0.9)
    return RunArrays(probs, targets, [1, 2, 3], torch.full((len(targets),), 3))


def test_clearly_better_method_is_significant() -> None:
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(3, (80,), generator=gen)
    runs_a = [_confident_run(targets, torch.ones(3, 80, dtype=torch.bool)) for _ in range(3)]
    runs_b = [_confident_run(targets, torch.rand(3, 80, generator=gen) < 0.5) for _ in range(3)]
    rows = {r.metric: r for r in compare_runs(runs_a, runs_b, num_draws=300, seed=1)}
    accuracy, cr, ece = rows["average_accuracy"], rows["counterintuitive_rate"], rows["ece"]
    b_accuracy = sum(r.probs.argmax(-1).eq(targets).double().mean(1).mean().item() for r in runs_b) / 3
    assert accuracy.difference == pytest.approx(1.0 - b_accuracy)
    assert accuracy.significant and 0 < accuracy.low <= accuracy.difference <= accuracy.high
    assert cr.significant and cr.high < 0  # A is never right with fewer modalities only
    assert ece.significant and ece.high < 0  # A: 0.9 confident, always right (ECE 0.1); B: 0.9, right half the time
    again = compare_runs(runs_a, runs_b, num_draws=300, seed=1)
    assert [(r.low, r.high) for r in again] == [(r.low, r.high) for r in rows.values()]


def test_from_npz_round_trip(tmp_path: Path) -> None:
    preds = _predictions(2, 25, [0b111, 0b011, 0b100, 0b010])
    run = _run(preds)
    path = tmp_path / "predictions.npz"
    probs = run.probs.numpy().astype(np.float32)
    np.savez_compressed(path, probs=probs, subsets=np.array(run.subsets), targets=run.targets.numpy())
    loaded = RunArrays.from_npz(path)
    torch.testing.assert_close(loaded.probs, run.probs, equal_nan=True, rtol=0, atol=0)
    assert loaded.subsets == run.subsets and torch.equal(loaded.targets, run.targets)
    assert torch.equal(loaded.available, run.available)


def test_mismatched_runs_raise() -> None:
    run = _run(_predictions(0, 20, [0b111]))
    other = RunArrays(run.probs, (run.targets + 1) % 3, run.subsets, run.available)
    with pytest.raises(ValueError, match="targets"):
        compare_runs([run], [other], num_draws=10)
    with pytest.raises(ValueError, match="targets"):
        compare_runs([run, other], [run, run], num_draws=10)
    with pytest.raises(ValueError, match="number"):
        compare_runs([run, run], [run], num_draws=10)
    with pytest.raises(ValueError, match="weights"):
        weighted_classification_metrics(run.probs, run.targets, run.subsets, run.available, torch.ones(2, 3))
