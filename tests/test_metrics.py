"""Metrics against outside references (torchmetrics, scikit-learn) and brute-force definitions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from torchmetrics.functional.classification import multiclass_calibration_error

from simmlm.metrics import (
    accuracy,
    counterintuitive_rate,
    expected_calibration_error,
    static_calibration_error,
)
from simmlm.subsets import all_subsets

N_BINS = 20


def _random_probs(seed: int, n: int, k: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    temperature = 0.5 + 3 * torch.rand((), generator=gen)
    probs = torch.softmax(torch.randn(n, k, generator=gen, dtype=torch.float64) * temperature, -1).to(dtype)
    target = torch.randint(0, k, (n,), generator=gen)
    return probs, target


def _away_from_edges(values: np.ndarray, n_bins: int = N_BINS, eps: float = 1e-6) -> bool:
    scaled = values * n_bins
    return bool(np.all(np.abs(scaled - np.round(scaled)) > eps * n_bins))


# ---------------------------------------------------------------- accuracy


@pytest.mark.parametrize("seed", range(3))
def test_accuracy_matches_sklearn(seed: int) -> None:
    probs, target = _random_probs(seed, 300, 7)
    expected = accuracy_score(target.numpy(), probs.argmax(-1).numpy())
    assert accuracy(probs, target).item() == pytest.approx(expected, abs=1e-7)


def test_accuracy_works_on_logits_and_by_hand() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.0, 5.0], [3.0, 4.0], [-2.0, -3.0]])
    target = torch.tensor([0, 1, 0, 1])
    assert accuracy(logits, target).item() == pytest.approx(0.5)


# ---------------------------------------------------------------- ECE


@pytest.mark.parametrize(("seed", "k"), [(s, k) for s in range(3) for k in (2, 3, 5, 10)])
def test_ece_matches_torchmetrics(seed: int, k: int) -> None:
    probs, target = _random_probs(seed, 500, k)
    assert _away_from_edges(probs.max(-1).values.double().numpy(), eps=1e-7)
    ours = expected_calibration_error(probs, target, n_bins=N_BINS)
    reference = multiclass_calibration_error(probs, target, num_classes=k, n_bins=N_BINS, norm="l1")
    assert ours.item() == pytest.approx(reference.item(), abs=1e-6)


def test_ece_perfectly_calibrated_is_zero() -> None:
    # confidence 0.75 in every sample, 3 of 4 correct
    probs = torch.tensor([[0.75, 0.25]] * 4)
    target = torch.tensor([0, 0, 0, 1])
    assert expected_calibration_error(probs, target).item() == pytest.approx(0.0, abs=1e-7)
    assert static_calibration_error(probs, target).item() == pytest.approx(0.0, abs=1e-7)


def test_ece_hand_case() -> None:
    # bin (0.90, 0.95]: two samples, conf 0.92, both correct -> |1 - 0.92| = 0.08, weight 1/2
    # bin (0.60, 0.65]: two samples, conf 0.62, one correct -> |0.5 - 0.62| = 0.12, weight 1/2
    probs = torch.tensor([[0.92, 0.08], [0.08, 0.92], [0.62, 0.38], [0.62, 0.38]], dtype=torch.float64)
    target = torch.tensor([0, 1, 0, 1])
    assert expected_calibration_error(probs, target).item() == pytest.approx(0.10, abs=1e-12)


def test_ece_bin_edges_are_right_closed() -> None:
    # 0.5 lies in (0.45, 0.50]; 0.52 in (0.50, 0.55] -> two bins: (|1 - 0.5| + |0 - 0.52|) / 2 = 0.51.
    # (Had they shared a bin: |1 - 1.02| / 2 = 0.01.)
    probs = torch.tensor([[0.5, 0.5], [0.52, 0.48]], dtype=torch.float64)
    target = torch.tensor([0, 1])
    assert expected_calibration_error(probs, target).item() == pytest.approx(0.51, abs=1e-12)


def test_ece_confidence_one_is_in_last_bin() -> None:
    # 1.0 and 0.97 share the last bin (0.95, 1]: |1 - 0.985| * 2 / 2 = 0.015
    probs = torch.tensor([[1.0, 0.0], [0.97, 0.03]], dtype=torch.float64)
    target = torch.tensor([0, 0])
    assert expected_calibration_error(probs, target).item() == pytest.approx(0.015, abs=1e-12)


def test_ece_rejects_zero_bins() -> None:
    probs, target = _random_probs(0, 10, 3)
    with pytest.raises(ValueError):
        expected_calibration_error(probs, target, n_bins=0)


# ---------------------------------------------------------------- SCE


def _sce_brute_force(probs: np.ndarray, target: np.ndarray, n_bins: int = N_BINS) -> float:
    """Straight from the definition: (1/K) sum_k sum_b (n_bk / N) |acc_bk - conf_bk|."""
    n, k = probs.shape
    total = 0.0
    for c in range(k):
        for b in range(n_bins):
            lo, hi = b / n_bins, (b + 1) / n_bins
            members = [i for i in range(n) if (lo < probs[i, c] <= hi) or (b == 0 and probs[i, c] == 0.0)]
            if not members:
                continue
            acc = sum(1.0 for i in members if target[i] == c) / len(members)
            conf = sum(probs[i, c] for i in members) / len(members)
            total += len(members) / n * abs(acc - conf)
    return total / k


@pytest.mark.parametrize(("seed", "k"), [(s, k) for s in range(3) for k in (2, 3, 6, 10)])
def test_sce_matches_brute_force(seed: int, k: int) -> None:
    probs, target = _random_probs(100 + seed, 200, k, dtype=torch.float64)
    assert _away_from_edges(probs.numpy())
    expected = _sce_brute_force(probs.numpy(), target.numpy())
    assert static_calibration_error(probs, target).item() == pytest.approx(expected, abs=1e-10)


def test_sce_differs_from_ece_in_general() -> None:
    probs, target = _random_probs(7, 200, 5, dtype=torch.float64)
    assert static_calibration_error(probs, target).item() != pytest.approx(
        expected_calibration_error(probs, target).item(), abs=1e-6
    )


def test_sce_hand_case() -> None:
    # K = 2, N = 2: sample 0 p = (0.92, 0.08) label 0; sample 1 p = (0.62, 0.38) label 1.
    # class 0: bins (0.9,0.95] {0.92, acc 1} -> 0.08/2; (0.6,0.65] {0.62, acc 0} -> 0.62/2
    # class 1: bins (0.05,0.1] {0.08, acc 0} -> 0.08/2; (0.35,0.4] {0.38, acc 1} -> 0.62/2
    probs = torch.tensor([[0.92, 0.08], [0.62, 0.38]], dtype=torch.float64)
    target = torch.tensor([0, 1])
    expected = 0.5 * ((0.08 + 0.62) / 2 + (0.08 + 0.62) / 2)
    assert static_calibration_error(probs, target).item() == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- counterintuitive rate


def _cr_brute_force(scores: np.ndarray, subsets: list[int], available: np.ndarray | None) -> float:
    rates = []
    for i in range(scores.shape[0]):
        avail = (1 << 30) - 1 if available is None else int(available[i])
        pairs = [
            (a, b)
            for a, b in itertools.permutations(range(len(subsets)), 2)
            if subsets[a] & subsets[b] == subsets[a] and subsets[b] & avail == subsets[b]
        ]
        if not pairs:
            continue
        rates.append(sum(1.0 for a, b in pairs if scores[i, a] > scores[i, b]) / len(pairs))
    return float(np.mean(rates))


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("kind", ["binary", "dice"])
@pytest.mark.parametrize("with_available", [False, True])
def test_counterintuitive_rate_matches_brute_force(m: int, kind: str, with_available: bool) -> None:
    gen = torch.Generator().manual_seed(10 * m + (kind == "dice") + 2 * with_available)
    subsets = all_subsets(m)
    n = 60
    if kind == "binary":
        scores = torch.randint(0, 2, (n, len(subsets)), generator=gen).float()
    else:
        scores = torch.rand(n, len(subsets), generator=gen, dtype=torch.float64)
    available = torch.randint(1, 2**m, (n,), generator=gen) if with_available else None
    expected = _cr_brute_force(scores.numpy(), subsets, None if available is None else available.numpy())
    got = counterintuitive_rate(scores, subsets, available)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_counterintuitive_rate_subset_order_does_not_matter() -> None:
    gen = torch.Generator().manual_seed(5)
    subsets = all_subsets(3)
    scores = torch.randint(0, 2, (40, len(subsets)), generator=gen).float()
    perm = torch.randperm(len(subsets), generator=gen)
    shuffled_subsets = [subsets[j] for j in perm.tolist()]
    torch.testing.assert_close(
        counterintuitive_rate(scores, subsets), counterintuitive_rate(scores[:, perm], shuffled_subsets)
    )


def test_counterintuitive_rate_hand_case() -> None:
    # M = 2, columns image (1), audio (2), image+audio (3).
    # Correct on image only, wrong on audio and on both: (image, both) is counterintuitive, (audio, both) is not.
    scores = torch.tensor([[1.0, 0.0, 0.0]])
    assert counterintuitive_rate(scores, [1, 2, 3]).item() == pytest.approx(0.5)
    # a second sample with no counterintuitive pair halves the mean
    scores2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    assert counterintuitive_rate(scores2, [1, 2, 3]).item() == pytest.approx(0.25)


def test_counterintuitive_rate_ties_are_not_counterintuitive() -> None:
    scores = torch.ones(5, 3)
    assert counterintuitive_rate(scores, [1, 2, 3]).item() == 0.0


def test_counterintuitive_rate_skips_samples_without_pairs() -> None:
    # sample 1 has only image available: no pair, left out of the mean instead of counting as 0
    scores = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    available = torch.tensor([3, 1])
    assert counterintuitive_rate(scores, [1, 2, 3], available).item() == pytest.approx(0.5)


def test_counterintuitive_rate_errors() -> None:
    with pytest.raises(ValueError):
        counterintuitive_rate(torch.zeros(3, 2), [1, 2, 3])
    with pytest.raises(ValueError, match="no nested pair"):
        counterintuitive_rate(torch.zeros(3, 2), [1, 2])
    with pytest.raises(ValueError, match="no sample"):
        counterintuitive_rate(torch.zeros(2, 3), [1, 2, 3], torch.tensor([1, 2]))


def test_weighted_f1_and_sentiment_scores_match_scikit_learn_and_scipy() -> None:
    """Against the references the sentiment literature computes with (MMSA: sklearn's f1_score, weighted)."""
    import numpy as np
    from scipy.stats import pearsonr
    from sklearn.metrics import accuracy_score, f1_score

    from simmlm.metrics import sentiment_scores, weighted_f1

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)  # IEMOCAP-style four classes
    guesses = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 4, 200))
    guesses[guesses == 3] = 2  # a class never predicted: F1 0 for it, still weighted by its support
    expected = f1_score(labels, guesses, average="weighted")
    assert weighted_f1(torch.tensor(guesses), torch.tensor(labels)).item() == pytest.approx(expected, abs=1e-12)

    truth = np.round(rng.uniform(-3, 3, 300) * 5) / 5  # MOSI-style scores, some exactly 0
    truth[:10] = 0.0
    predicted = np.clip(truth + rng.normal(scale=1.0, size=300), -3.5, 3.5)
    got = sentiment_scores(torch.tensor(predicted), torch.tensor(truth))
    non0 = truth != 0
    reference = {
        "mae": np.abs(predicted - truth).mean(),
        "corr": pearsonr(predicted, truth)[0],
        "acc2_has0": accuracy_score(truth >= 0, predicted >= 0),
        "f1_has0": f1_score(truth >= 0, predicted >= 0, average="weighted"),
        "acc2_non0": accuracy_score(truth[non0] > 0, predicted[non0] > 0),
        "f1_non0": f1_score(truth[non0] > 0, predicted[non0] > 0, average="weighted"),
        "acc7": accuracy_score(np.round(np.clip(truth, -3, 3)), np.round(np.clip(predicted, -3, 3))),
    }
    assert got.keys() == reference.keys()
    for key, value in reference.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
