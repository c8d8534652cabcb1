"""Shapley values of real-valued subset games (``modality_shapley``, ``subset_value_table``) against brute force."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from simmlm.metrics.shapley import MAX_EXACT_VALUE_MODALITIES, modality_shapley, subset_value_table
from simmlm.subsets import all_subsets


def _random_game(seed: int, n: int, m: int) -> Tensor:
    """Random values ``[N, 2^M]`` in [0, 1) for every subset code (column 0 is ``v(∅)``)."""
    return torch.rand(n, 2**m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _lookup(table: Tensor, calls: list[Tensor] | None = None) -> Callable[[Tensor], Tensor]:
    """``value`` callable reading a game table ``[N, 2^M]``, optionally recording the codes it is called with."""

    def value(codes: Tensor) -> Tensor:
        assert codes.dtype == torch.long and codes.ndim == 1
        if calls is not None:
            calls.append(codes)
        return table[:, codes]

    return value


def _brute_force(table: Tensor) -> Tensor:
    """Shapley values as the mean over all ``M!`` orders of each modality's marginal contribution."""
    n, m = table.shape[0], table.shape[1].bit_length() - 1
    phi = torch.zeros(n, m, dtype=torch.float64)
    orders = list(itertools.permutations(range(m)))
    for order in orders:
        prefix = 0
        for i in order:
            phi[:, i] += table[:, prefix | 1 << i] - table[:, prefix]
            prefix |= 1 << i
    return phi / len(orders)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_exact_matches_brute_force_over_permutations(m: int) -> None:
    table = _random_game(m, n=7, m=m)
    calls: list[Tensor] = []
    phi = modality_shapley(_lookup(table, calls), 7, m)
    assert phi.dtype == torch.float64 and phi.shape == (7, m)
    torch.testing.assert_close(phi, _brute_force(table), rtol=0, atol=1e-12)
    assert len(calls) == 1 and sorted(calls[0].tolist()) == list(range(2**m))  # one call, every code once


def test_single_modality_gets_full_minus_empty() -> None:
    table = torch.tensor([[0.25, 1.0], [2.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(modality_shapley(_lookup(table), 2, 1), torch.tensor([[0.75], [-3.0]]).double())


def test_two_modalities_by_hand() -> None:
    # v(∅) = 0, v({0}) = 1, v({1}) = 3, v({0, 1}) = 6:
    # phi_0 = (v({0}) - v(∅)) / 2 + (v({0,1}) - v({1})) / 2 = (1 + 3) / 2 = 2, phi_1 = (3 + 5) / 2 = 4.
    table = torch.tensor([[0.0, 1.0, 3.0, 6.0]], dtype=torch.float64)
    torch.testing.assert_close(modality_shapley(_lookup(table), 1, 2), torch.tensor([[2.0, 4.0]]).double())


@pytest.mark.parametrize("mc_permutations", [None, 1, 7, 200])
def test_efficiency(mc_permutations: int | None) -> None:
    m = 5
    table = _random_game(11, n=6, m=m)
    generator = torch.Generator().manual_seed(3)
    phi = modality_shapley(_lookup(table), 6, m, mc_permutations=mc_permutations, generator=generator)
    torch.testing.assert_close(phi.sum(1), table[:, -1] - table[:, 0], rtol=0, atol=1e-12)


def _symmetric_game_with_null_player(seed: int, n: int) -> Tensor:
    """4 modalities: v depends on S only through |S ∩ {0, 1}| and whether 2 ∈ S; modality 3 is a null player."""
    g = torch.rand(n, 3, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    codes = torch.arange(16)
    pair = (codes & 1) + (codes >> 1 & 1)
    return g[:, pair, codes >> 2 & 1]


def test_symmetric_modalities_share_and_null_player_gets_zero() -> None:
    table = _symmetric_game_with_null_player(5, n=5)
    phi = modality_shapley(_lookup(table), 5, 4)
    torch.testing.assert_close(phi[:, 0], phi[:, 1], rtol=0, atol=1e-12)
    assert phi[:, 3].abs().max() < 1e-12
    assert (phi[:, 0] - phi[:, 2]).abs().max() > 1e-3  # the game is not symmetric in every modality
    # Monte-Carlo: a null player's marginal contribution is 0 along every permutation.
    mc = modality_shapley(_lookup(table), 5, 4, mc_permutations=9, generator=torch.Generator().manual_seed(0))
    assert mc[:, 3].abs().max() < 1e-12


def test_subset_value_table_with_a_missing_modality() -> None:
    m, n = 3, 4
    subsets = all_subsets(m)
    available = torch.tensor([0b111, 0b011, 0b101, 0b010])
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(len(subsets), n, generator=gen, dtype=torch.float64)
    codes = torch.tensor(subsets)
    covered = (codes.unsqueeze(1) & ~available.unsqueeze(0)) == 0  # [S, N]
    values[~covered] = math.nan  # rows a sample does not have: never read
    table = subset_value_table(values, subsets, available, m, empty_value=-0.5)
    assert table.shape == (n, 2**m) and not table.isnan().any()
    for k in range(n):
        for code in range(2**m):
            kept = code & int(available[k])
            expected = -0.5 if kept == 0 else values[subsets.index(kept), k].item()
            assert table[k, code].item() == expected

    phi = modality_shapley(_lookup(table), n, m)
    torch.testing.assert_close(phi.sum(1), table[:, -1] + 0.5, rtol=0, atol=1e-12)
    # Sample 1 lacks modality 2: the game on {0, 1} alone, brute-forced on its own 2-modality table.
    assert phi[1, 2].item() == 0.0
    reduced = torch.cat([torch.tensor([-0.5]).double(), values[[subsets.index(c) for c in (1, 2, 3)], 1]])
    torch.testing.assert_close(phi[1, :2], _brute_force(reduced.unsqueeze(0))[0], rtol=0, atol=1e-12)
    # Sample 3 has modality 1 only: it gets everything, the others nothing.
    torch.testing.assert_close(phi[3], torch.tensor([0.0, values[subsets.index(2), 3] + 0.5, 0.0]).double())
    assert phi[2, 1].item() == 0.0


def test_monte_carlo_close_to_exact() -> None:
    m = 5
    table = _random_game(21, n=4, m=m)
    exact = modality_shapley(_lookup(table), 4, m)
    mc = modality_shapley(_lookup(table), 4, m, mc_permutations=20000, generator=torch.Generator().manual_seed(1))
    # Marginal contributions lie in (-1, 1): the standard error is below 1/sqrt(20000) ≈ 0.007.
    torch.testing.assert_close(mc, exact, rtol=0, atol=0.03)
    assert not torch.equal(mc, exact)  # it is an estimate
    again = modality_shapley(_lookup(table), 4, m, mc_permutations=20000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mc, again)


def test_errors() -> None:
    table = _random_game(0, n=3, m=2)
    with pytest.raises(ValueError, match="mc_permutations"):
        modality_shapley(_lookup(_random_game(0, 1, 11)), 1, MAX_EXACT_VALUE_MODALITIES + 1)
    big = _random_game(0, 2, 11)
    phi = modality_shapley(_lookup(big), 2, 11, mc_permutations=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(phi.sum(1), big[:, -1] - big[:, 0], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="values"):
        modality_shapley(_lookup(table), 4, 2)  # value returns 3 rows, not 4
    with pytest.raises(ValueError, match="values"):
        modality_shapley(lambda codes: table[:, codes][:, :1], 3, 2)
    with pytest.raises(ValueError, match=">= 1"):
        modality_shapley(_lookup(table), 0, 2)
    with pytest.raises(ValueError, match="mc_permutations"):
        modality_shapley(_lookup(table), 3, 2, mc_permutations=0)

    subsets = all_subsets(2)
    values = torch.zeros(3, 2)
    available = torch.tensor([3, 1])
    with pytest.raises(ValueError, match="values must be"):
        subset_value_table(values.T, subsets, available, 2, 0.0)
    with pytest.raises(ValueError, match="available must be"):
        subset_value_table(values, subsets, available[:1], 2, 0.0)
    with pytest.raises(ValueError, match="non-empty subset codes"):
        subset_value_table(values, subsets, torch.tensor([3, 0]), 2, 0.0)
    with pytest.raises(ValueError, match="distinct codes"):
        subset_value_table(values, [1, 2, 4], available, 2, 0.0)
    with pytest.raises(ValueError, match="every non-empty subset"):
        subset_value_table(values[:2], [1, 3], available, 2, 0.0)  # sample 0 has {0, 1} but {1} is not listed
