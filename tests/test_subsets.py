"""Modality subsets as bit masks: enumeration, naming, conversion, nested pairs and their sampling."""

from __future__ import annotations

import itertools

import pytest
import torch

from simmlm.subsets import (
    all_subsets,
    bits_to_mask,
    check_mask,
    mask_to_bits,
    nested_pairs,
    sample_nested_pairs,
    subset_from_names,
    subset_mask,
    subset_name,
)

MODS = ("image", "audio", "text")


@pytest.mark.parametrize("m", range(1, 7))
def test_all_subsets_count_order_and_uniqueness(m: int) -> None:
    subsets = all_subsets(m)
    assert len(subsets) == 2**m - 1
    assert len(set(subsets)) == len(subsets)
    assert set(subsets) == set(range(1, 2**m))
    sizes = [s.bit_count() for s in subsets]
    assert sizes == sorted(sizes)
    # within one size, ascending bit pattern
    assert subsets == sorted(subsets, key=lambda b: (b.bit_count(), b))


def test_all_subsets_small_cases_explicit() -> None:
    assert all_subsets(1) == [1]
    assert all_subsets(2) == [1, 2, 3]
    assert all_subsets(3) == [1, 2, 4, 3, 5, 6, 7]


@pytest.mark.parametrize("m", [0, -1])
def test_all_subsets_rejects_no_modalities(m: int) -> None:
    with pytest.raises(ValueError):
        all_subsets(m)


def test_subset_name_and_from_names_round_trip() -> None:
    assert subset_name(1, MODS) == "image"
    assert subset_name(2, MODS) == "audio"
    assert subset_name(5, MODS) == "image+text"
    assert subset_name(7, MODS) == "image+audio+text"
    for bits in all_subsets(len(MODS)):
        assert subset_from_names(subset_name(bits, MODS).split("+"), MODS) == bits


def test_subset_from_names_order_and_duplicates_do_not_matter() -> None:
    assert subset_from_names(["text", "image"], MODS) == 5
    assert subset_from_names(["audio", "audio"], MODS) == 2


def test_subset_from_names_unknown_name_raises() -> None:
    with pytest.raises(ValueError, match="video"):
        subset_from_names(["image", "video"], MODS)


@pytest.mark.parametrize("bits", [0, 8, 15])
def test_subset_name_rejects_empty_or_out_of_range(bits: int) -> None:
    with pytest.raises(ValueError):
        subset_name(bits, MODS)


def test_subset_mask() -> None:
    assert subset_mask(5, 3).tolist() == [True, False, True]
    assert subset_mask(5, 3).dtype == torch.bool


@pytest.mark.parametrize("m", range(1, 6))
def test_mask_bits_round_trip(m: int) -> None:
    codes = torch.arange(0, 2**m)
    mask = bits_to_mask(codes, m)
    assert mask.shape == (2**m, m)
    assert mask.dtype == torch.bool
    assert torch.equal(mask_to_bits(mask), codes)
    # bit m of the code is column m of the mask
    for code, row in zip(codes.tolist(), mask.tolist(), strict=True):
        assert row == [bool(code >> i & 1) for i in range(m)]


def test_mask_to_bits_explicit() -> None:
    mask = torch.tensor([[True, False, False], [False, True, True], [True, True, True]])
    assert mask_to_bits(mask).tolist() == [1, 6, 7]


def _brute_force_pairs(m: int) -> set[tuple[int, int]]:
    out = set()
    for plus_size in range(1, m + 1):
        for plus in itertools.combinations(range(m), plus_size):
            for minus_size in range(1, plus_size):
                for minus in itertools.combinations(plus, minus_size):
                    out.add((sum(1 << i for i in minus), sum(1 << i for i in plus)))
    return out


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_nested_pairs_matches_brute_force(m: int) -> None:
    pairs = nested_pairs(m)
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == _brute_force_pairs(m)


def test_nested_pairs_counts() -> None:
    # sum_k C(M,k) (2^k - 2) = 3^M - 2^(M+1) + 1
    for m in range(1, 6):
        assert len(nested_pairs(m)) == 3**m - 2 ** (m + 1) + 1


def _is_strict_subset(a: int, b: int) -> bool:
    return a != b and a & b == a


def test_sample_nested_pairs_validity_random_availability() -> None:
    m = 4
    gen = torch.Generator().manual_seed(1)
    codes = torch.randint(1, 2**m, (2000,), generator=gen)
    available = bits_to_mask(codes, m)
    minus, plus = sample_nested_pairs(available, generator=gen)
    assert minus.shape == plus.shape == available.shape
    assert minus.dtype == plus.dtype == torch.bool
    minus_bits, plus_bits = mask_to_bits(minus).tolist(), mask_to_bits(plus).tolist()
    for a, mi, pl in zip(codes.tolist(), minus_bits, plus_bits, strict=True):
        assert pl & a == pl, "S+ must be a subset of the available modalities"
        if a.bit_count() == 1:
            assert mi == pl == a
        else:
            assert mi != 0
            assert _is_strict_subset(mi, pl)


def test_sample_nested_pairs_covers_every_subset_m3_full() -> None:
    m = 3
    available = torch.ones(3000, m, dtype=torch.bool)
    minus, plus = sample_nested_pairs(available, generator=torch.Generator().manual_seed(0))
    minus_bits = set(mask_to_bits(minus).tolist())
    plus_bits = set(mask_to_bits(plus).tolist())
    assert minus_bits | plus_bits == set(range(1, 2**m))
    # singletons only ever appear as S-, the full set only as S+
    assert {1, 2, 4} <= minus_bits
    assert 7 in plus_bits and 7 not in minus_bits
    # every valid pair is drawn
    drawn = set(zip(mask_to_bits(minus).tolist(), mask_to_bits(plus).tolist(), strict=True))
    assert drawn == set(nested_pairs(m))


def test_sample_nested_pairs_is_roughly_uniform_over_pairs() -> None:
    m = 3
    n = 12000
    available = torch.ones(n, m, dtype=torch.bool)
    minus, plus = sample_nested_pairs(available, generator=torch.Generator().manual_seed(3))
    keys = (mask_to_bits(minus) * 8 + mask_to_bits(plus)).tolist()
    pairs = nested_pairs(m)
    expected = n / len(pairs)
    for mi, pl in pairs:
        count = keys.count(mi * 8 + pl)
        assert abs(count - expected) < 0.15 * expected


def test_sample_nested_pairs_single_modality_rows() -> None:
    available = torch.tensor([[True, False, False], [False, False, True], [True, True, False], [False, True, False]])
    minus, plus = sample_nested_pairs(available, generator=torch.Generator().manual_seed(0))
    for row in (0, 1, 3):
        assert torch.equal(minus[row], available[row])
        assert torch.equal(plus[row], available[row])
    # the two-modality row has exactly one kind of valid pair: a singleton below the pair
    assert plus[2].tolist() == [True, True, False]
    assert minus[2].sum().item() == 1 and (minus[2] & ~plus[2]).sum().item() == 0


def test_sample_nested_pairs_single_modality_dataset() -> None:
    available = torch.ones(5, 1, dtype=torch.bool)
    minus, plus = sample_nested_pairs(available)
    assert torch.equal(minus, available) and torch.equal(plus, available)


def test_sample_nested_pairs_reproducible_with_seeded_generator() -> None:
    available = bits_to_mask(torch.randint(1, 16, (500,)), 4)
    a = sample_nested_pairs(available, generator=torch.Generator().manual_seed(42))
    b = sample_nested_pairs(available, generator=torch.Generator().manual_seed(42))
    c = sample_nested_pairs(available, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))


def test_sample_nested_pairs_rejects_all_missing_row() -> None:
    available = torch.tensor([[True, False], [False, False]])
    with pytest.raises(ValueError):
        sample_nested_pairs(available)


def test_check_mask_accepts_valid_mask() -> None:
    check_mask(torch.tensor([[True, False], [False, True]]))


def test_check_mask_all_missing_row_raises() -> None:
    with pytest.raises(ValueError, match="no available modality"):
        check_mask(torch.tensor([[True, True], [False, False], [True, False]]))


@pytest.mark.parametrize(
    "mask",
    [
        torch.tensor([[1, 0], [0, 1]]),
        torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        torch.tensor([[1, 0], [0, 1]], dtype=torch.uint8),
    ],
)
def test_check_mask_non_bool_raises(mask: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="boolean"):
        check_mask(mask)


def test_check_mask_wrong_ndim_raises() -> None:
    with pytest.raises(ValueError):
        check_mask(torch.tensor([True, False]))
