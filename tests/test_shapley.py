"""Shapley contributions (DREAM eqs. 1-4) against a brute-force implementation of the formulas and by hand."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from simmlm.metrics import ShapleyScores, shapley_contributions
from simmlm.metrics.shapley import _exact_coalitions, _permutation_coalitions, _shapley_from_coalitions
from simmlm.subsets import mask_to_bits

Predict = Callable[[Tensor], Tensor]


def _lookup_predictor(table: Tensor, calls: list[Tensor] | None = None) -> Predict:
    """Predictor given as a lookup table ``[N, 2^M]``: ``ŷ_n(S) = table[n, code(S)]`` (column 0 unused)."""

    def predict(mask: Tensor) -> Tensor:
        assert mask.dtype == torch.bool and mask.shape == (table.shape[0], table.shape[1].bit_length() - 1)
        assert mask.any(1).all(), "predict was given an all-missing row"
        codes = mask_to_bits(mask)
        if calls is not None:
            calls.append(codes)
        return table[torch.arange(len(table)), codes]

    return predict


def _random_case(seed: int, n: int, m: int, num_classes: int = 3) -> tuple[Tensor, Tensor, Tensor]:
    """Random lookup table, labels and availability (every row non-empty). Few classes so ties are common."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.randint(0, num_classes, (n, 2**m), generator=gen)
    targets = torch.randint(0, num_classes, (n,), generator=gen)
    available = torch.rand(n, m, generator=gen) < 0.6
    available[torch.arange(n), torch.randint(0, m, (n,), generator=gen)] = True
    return table, targets, available


def _brute_force(table: Tensor, targets: Tensor, available: Tensor | None) -> tuple[Tensor, Tensor]:
    """PSS and PAS straight from DREAM eqs. 1-4, sample by sample, subset by subset.

    ``ŷ(S)`` is the table's prediction for ``S ∩ A`` and ``None`` (no prediction) when that is empty;
    ``V(S) = |S ∩ A|`` if ``ŷ(S) == y`` else 0.
    """
    n, m = table.shape[0], table.shape[1].bit_length() - 1
    pss = torch.zeros(n, m, dtype=torch.float64)
    pas = torch.zeros(n, m, dtype=torch.float64)
    for k in range(n):
        present = {j for j in range(m) if available is None or available[k, j]}

        def y_hat(subset: set[int], k: int = k, present: set[int] = present) -> int | None:
            kept = subset & present
            return int(table[k, sum(1 << j for j in kept)]) if kept else None

        def value(subset: set[int], k: int = k, present: set[int] = present) -> int:
            return len(subset & present) if y_hat(subset) == int(targets[k]) else 0

        for i in range(m):
            others = [j for j in range(m) if j != i]
            for size in range(m):
                weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                for subset_tuple in itertools.combinations(others, size):
                    subset = set(subset_tuple)
                    pss[k, i] += weight * (y_hat(subset | {i}) != y_hat(subset))
                    pas[k, i] += weight * (value(subset | {i}) - value(subset))
    return pss, pas


def _assert_scores(scores: ShapleyScores, pss: Tensor, pas: Tensor, atol: float = 1e-6) -> None:
    torch.testing.assert_close(scores.pss.double(), pss, atol=atol, rtol=0)
    torch.testing.assert_close(scores.pas.double(), pas, atol=atol, rtol=0)


# ---------------------------------------------------------------- exact mode against brute force


@pytest.mark.parametrize("with_available", [False, True])
@pytest.mark.parametrize(("m", "seed"), [(m, s) for m in (1, 2, 3, 4) for s in range(3)])
def test_exact_matches_brute_force(m: int, seed: int, with_available: bool) -> None:
    table, targets, available = _random_case(seed, n=12, m=m)
    mask = available if with_available else None
    scores = shapley_contributions(_lookup_predictor(table), 12, m, targets=targets, available=mask)
    assert scores.pss.shape == scores.pas.shape == (12, m)
    assert scores.pss.dtype == torch.get_default_dtype()
    _assert_scores(scores, *_brute_force(table, targets, mask))


def test_hand_case_only_modality_0_matters() -> None:
    # Two modalities; the prediction is class 3 whenever modality 0 is present, else class 5:
    #   ŷ(∅) = none, ŷ({0}) = 3, ŷ({1}) = 5, ŷ({0,1}) = 3. Both weights of eq. 2 are 1/2 for M = 2.
    # PSS_0 = 1/2 m(∅,0) + 1/2 m({1},0) = 1/2 * 1 + 1/2 * 1[3 != 5] = 1
    # PSS_1 = 1/2 m(∅,1) + 1/2 m({0},1) = 1/2 * 1 + 1/2 * 1[3 != 3] = 0.5  (only via the empty-set term)
    # Sample a has label 3: V(∅)=0, V({0})=1, V({1})=0, V({0,1})=2
    #   PAS_0 = 1/2 (1 - 0) + 1/2 (2 - 0) = 1.5,  PAS_1 = 1/2 (0 - 0) + 1/2 (2 - 1) = 0.5  (sum 2 = V(M))
    # Sample b has label 5: V({0})=0, V({1})=1, V({0,1})=0
    #   PAS_0 = 1/2 (0 - 0) + 1/2 (0 - 1) = -0.5,  PAS_1 = 1/2 (1 - 0) + 1/2 (0 - 0) = 0.5  (sum 0 = V(M))
    def predict(mask: Tensor) -> Tensor:
        return torch.where(mask[:, 0], 3, 5)

    scores = shapley_contributions(predict, 2, 2, targets=torch.tensor([3, 5]))
    torch.testing.assert_close(scores.pss, torch.tensor([[1.0, 0.5], [1.0, 0.5]]))
    torch.testing.assert_close(scores.pas, torch.tensor([[1.5, 0.5], [-0.5, 0.5]]))


def test_hand_case_missing_second_modality() -> None:
    # Same predictor, modality 1 missing: the game is modality 0 alone, ŷ(∅) = none, ŷ({0}) = 3.
    # PSS_0 = m(∅,0) = 1 (weight 0!0!/1! = 1 in the 1-player game), PAS_0 = V({0}) - V(∅) = 1 for label 3.
    def predict(mask: Tensor) -> Tensor:
        return torch.where(mask[:, 0], 3, 5)

    available = torch.tensor([[True, False]])
    scores = shapley_contributions(predict, 1, 2, targets=torch.tensor([3]), available=available)
    torch.testing.assert_close(scores.pss, torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(scores.pas, torch.tensor([[1.0, 0.0]]))


# ---------------------------------------------------------------- Shapley axioms


@pytest.mark.parametrize("seed", range(3))
def test_symmetric_modalities_get_equal_scores(seed: int) -> None:
    # M = 3 where modalities 0 and 1 are interchangeable: ŷ depends on (how many of {0, 1}, whether 2).
    gen = torch.Generator().manual_seed(seed)
    n = 16
    by_role = torch.randint(0, 3, (n, 3, 2), generator=gen)
    codes = torch.arange(8)
    table = by_role[:, (codes & 1) + ((codes >> 1) & 1), (codes >> 2) & 1]
    targets = torch.randint(0, 3, (n,), generator=gen)
    scores = shapley_contributions(_lookup_predictor(table), n, 3, targets=targets)
    torch.testing.assert_close(scores.pss[:, 0], scores.pss[:, 1])
    torch.testing.assert_close(scores.pas[:, 0], scores.pas[:, 1])
    assert not torch.equal(scores.pss[:, 0], scores.pss[:, 2])  # the check can tell modalities apart


@pytest.mark.parametrize("with_available", [False, True])
@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_pas_is_efficient(m: int, with_available: bool) -> None:
    # sum_i PAS_i = V(M) - V(∅) = V(M ∩ A): |A| if the prediction from all available modalities is right.
    n = 20
    table, targets, available = _random_case(m, n=n, m=m)
    mask = available if with_available else torch.ones(n, m, dtype=torch.bool)
    scores = shapley_contributions(_lookup_predictor(table), n, m, targets=targets, available=mask)
    full = mask_to_bits(mask)
    expected = (table[torch.arange(n), full] == targets).float() * mask.sum(1)
    torch.testing.assert_close(scores.pas.sum(1), expected)
    assert expected.any()  # some sample is right, so the check is not only 0 == 0


@pytest.mark.parametrize("mc_permutations", [None, 50])
def test_missing_modality_is_a_null_player(mc_permutations: int | None) -> None:
    # Modality 2 missing for every sample: it gets PSS 0 and PAS 0, and modalities 0 and 1 get the scores of
    # the two-modality game (null-player property).
    n = 10
    table, targets, _ = _random_case(7, n=n, m=3)
    available = torch.tensor([[True, True, False]]).repeat(n, 1)
    scores = shapley_contributions(
        _lookup_predictor(table),
        n,
        3,
        targets=targets,
        available=available,
        mc_permutations=mc_permutations,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(scores.pss[:, 2], torch.zeros(n))
    assert torch.equal(scores.pas[:, 2], torch.zeros(n))
    if mc_permutations is None:
        pss2, pas2 = _brute_force(table[:, :4], targets, None)
        _assert_scores(ShapleyScores(scores.pss[:, :2], scores.pas[:, :2]), pss2, pas2)
    assert (scores.pss[:, :2] > 0).all()  # available modalities do count


def test_pas_zero_without_targets() -> None:
    table, _, available = _random_case(3, n=6, m=3)
    scores = shapley_contributions(_lookup_predictor(table), 6, 3, available=available)
    assert torch.equal(scores.pas, torch.zeros(6, 3))
    assert (scores.pss.sum(1) > 0).all()


# ---------------------------------------------------------------- cost: which subsets are predicted


def test_exact_predicts_each_nonempty_subset_once() -> None:
    m, n = 4, 5
    table, targets, _ = _random_case(0, n=n, m=m)
    calls: list[Tensor] = []
    shapley_contributions(_lookup_predictor(table, calls), n, m, targets=targets)
    assert len(calls) == 2**m - 1
    assert all((codes == codes[0]).all() for codes in calls)  # one subset for the whole batch per call
    assert sorted(int(codes[0]) for codes in calls) == list(range(1, 2**m))


def test_monte_carlo_predicts_each_subset_at_most_once() -> None:
    m, n = 7, 4
    table, targets, _ = _random_case(1, n=n, m=m)
    calls: list[Tensor] = []
    gen = torch.Generator().manual_seed(0)
    shapley_contributions(_lookup_predictor(table, calls), n, m, targets=targets, mc_permutations=30, generator=gen)
    subsets = [int(codes[0]) for codes in calls]
    assert len(subsets) == len(set(subsets)) < 2**m - 1


# ---------------------------------------------------------------- Monte-Carlo mode


def test_all_permutations_enumerated_equal_exact() -> None:
    m, n = 4, 9
    table, targets, available = _random_case(5, n=n, m=m)
    perms = torch.tensor(list(itertools.permutations(range(m))))
    predict = _lookup_predictor(table)
    by_perms = _shapley_from_coalitions(predict, _permutation_coalitions(perms), n, m, targets, available)
    exact = _shapley_from_coalitions(predict, _exact_coalitions(m), n, m, targets, available)
    _assert_scores(by_perms, exact.pss.double(), exact.pas.double())


@pytest.mark.parametrize("with_available", [False, True])
def test_monte_carlo_approximates_exact(with_available: bool) -> None:
    m, n = 4, 8
    table, targets, available = _random_case(11, n=n, m=m)
    mask = available if with_available else None
    predict = _lookup_predictor(table)
    exact = shapley_contributions(predict, n, m, targets=targets, available=mask)
    gen = torch.Generator().manual_seed(0)
    mc = shapley_contributions(predict, n, m, targets=targets, available=mask, mc_permutations=20000, generator=gen)
    assert (mc.pss - exact.pss).abs().max() < 0.05
    assert (mc.pas - exact.pas).abs().max() < 0.05


def test_monte_carlo_seven_modalities_pas_efficient_and_reproducible() -> None:
    # Along every permutation the PAS contributions telescope to V(M), so the estimate is exactly efficient.
    m, n = 7, 6
    table, targets, _ = _random_case(2, n=n, m=m, num_classes=2)
    predict = _lookup_predictor(table)

    def run(seed: int) -> ShapleyScores:
        gen = torch.Generator().manual_seed(seed)
        return shapley_contributions(predict, n, m, targets=targets, mc_permutations=40, generator=gen)

    first, again = run(0), run(0)
    assert torch.equal(first.pss, again.pss) and torch.equal(first.pas, again.pas)
    expected = (table[:, -1] == targets).float() * m
    torch.testing.assert_close(first.pas.sum(1), expected)


def test_monte_carlo_pss_of_a_constant_predictor_is_exact_and_never_zero() -> None:
    """Review finding: 5 permutations gave a constant predictor PSS [0, 0, .2, 0, .2, .2, .4] over 7 modalities, so
    sampled and exact modes flagged different modalities as uninformative (PSS = 0 triggers DREAM's enhancement).
    The empty coalition's terms are now exact: every available modality gets 1/|A|, as the exact value."""
    m, n = 7, 3
    available = torch.ones(n, m, dtype=torch.bool)
    available[1, 3:] = False  # a sample with 3 modalities
    gen = torch.Generator().manual_seed(0)
    scores = shapley_contributions(
        lambda mask: torch.zeros(len(mask), dtype=torch.long),
        n,
        m,
        available=available,
        mc_permutations=5,
        generator=gen,
    )
    expected = available.double() / available.sum(1, keepdim=True)
    torch.testing.assert_close(scores.pss.double(), expected)


def test_monte_carlo_with_the_exact_empty_coalition_is_still_unbiased() -> None:
    """Every permutation once (the estimator's expectation) still gives the exact values."""
    m, n = 4, 9
    table, targets, available = _random_case(5, n=n, m=m)
    perms = torch.tensor(list(itertools.permutations(range(m))))
    predict = _lookup_predictor(table)
    for mask in (available, None):
        by_perms = _shapley_from_coalitions(predict, _permutation_coalitions(perms), n, m, targets, mask, sampled=True)
        exact = _shapley_from_coalitions(predict, _exact_coalitions(m), n, m, targets, mask)
        _assert_scores(by_perms, exact.pss.double(), exact.pas.double())


# ---------------------------------------------------------------- errors


def test_seven_modalities_need_mc_permutations() -> None:
    table, _, _ = _random_case(0, n=2, m=7)
    with pytest.raises(ValueError, match="mc_permutations"):
        shapley_contributions(_lookup_predictor(table), 2, 7)


@pytest.mark.parametrize(
    ("prediction", "message"),
    [
        (torch.zeros(3), "integer class ids"),
        (torch.zeros(2, dtype=torch.long), r"shape \[3\]"),
        (torch.full((3,), -1), "negative class id"),
    ],
)
def test_malformed_predictions_raise(prediction: Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shapley_contributions(lambda mask: prediction, 3, 2)


def test_bad_arguments_raise() -> None:
    predict = _lookup_predictor(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        shapley_contributions(predict, 2, 2, targets=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="available"):
        shapley_contributions(predict, 2, 2, available=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="no available modality"):
        shapley_contributions(predict, 2, 2, available=torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="mc_permutations"):
        shapley_contributions(predict, 2, 2, mc_permutations=0)


@pytest.mark.parametrize("predict_empty", [False, True])
def test_monte_carlo_agrees_with_exact_in_expectation(predict_empty: bool) -> None:
    """Exact and Monte-Carlo Shapley values of the same game agree (here within 0.02 with 20,000 permutations),
    with the "no prediction" sentinel for ∅ and with a predicted ∅ alike."""
    torch.manual_seed(0)
    n, m = 6, 4
    table = torch.randint(0, 3, (n, 2**m))  # an arbitrary prediction for every sample and subset code
    rows = torch.arange(n)
    targets = torch.randint(0, 3, (n,))

    def predict(mask: torch.Tensor) -> torch.Tensor:
        return table[rows, mask_to_bits(mask)]

    exact = shapley_contributions(predict, n, m, targets, predict_empty=predict_empty)
    sampled = shapley_contributions(
        predict, n, m, targets, mc_permutations=20_000, generator=torch.Generator().manual_seed(1),
        predict_empty=predict_empty,
    )  # fmt: skip
    torch.testing.assert_close(sampled.pss, exact.pss, atol=0.02, rtol=0)
    torch.testing.assert_close(sampled.pas, exact.pas, atol=0.05, rtol=0)


def test_a_predicted_empty_set_lets_a_modality_that_changes_nothing_score_zero() -> None:
    def constant(mask: Tensor) -> Tensor:
        return torch.zeros(len(mask), dtype=torch.long)

    sentinel = shapley_contributions(constant, 2, 3)
    torch.testing.assert_close(sentinel.pss, torch.full((2, 3), 1 / 3))  # every modality "shifts" ∅
    predicted = shapley_contributions(constant, 2, 3, predict_empty=True)
    torch.testing.assert_close(predicted.pss, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="available=None"):
        shapley_contributions(constant, 2, 3, available=torch.ones(2, 3, dtype=torch.bool), predict_empty=True)
