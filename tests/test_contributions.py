"""Shapley contributions of each modality from the all-subset predictions: in reports and in ``simmlm predict``."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from simmlm.evaluation.evaluate import classification_report, modality_contributions
from simmlm.evaluation.inferers import SubsetPredictions
from simmlm.subsets import all_subsets


def _predictions(num_modalities: int = 3, n: int = 12, k: int = 4, lacking: int = 3) -> SubsetPredictions:
    generator = torch.Generator().manual_seed(0)
    subsets = all_subsets(num_modalities)
    logits = torch.randn(len(subsets), n, k, generator=generator)
    available = torch.full((n,), 2**num_modalities - 1)
    available[:lacking] = 0b011  # the first samples lack the last modality
    codes = torch.tensor(subsets).unsqueeze(1)
    logits[((codes & ~available.unsqueeze(0)) != 0)] = math.nan
    return SubsetPredictions(subsets, logits, None, torch.randint(0, k, (n,), generator=generator), available)


def test_contributions_are_efficient_and_a_missing_modality_contributes_nothing() -> None:
    preds = _predictions()
    probs = preds.logits.softmax(-1)
    phi = modality_contributions(probs, preds.targets, preds.subsets, preds.available, 3)
    full = [preds.subsets.index(int(a)) for a in preds.available]  # each sample's row of all its modalities
    p_full = probs[full, torch.arange(12)]  # [N, K]
    expected = {
        "probability": p_full.gather(1, preds.targets.unsqueeze(1)).squeeze(1) - 0.25,
        "correctness": (p_full.argmax(1) == preds.targets).double() - 0.25,
    }
    for name, value in phi.items():
        torch.testing.assert_close(value.sum(1), expected[name].double())
        assert value[:3, 2].abs().max() == 0  # the last modality is missing in the first three samples
    report = classification_report(preds, ["a", "b", "c"])
    assert sum(report["shapley"]["probability"].values()) == pytest.approx(
        expected["probability"].mean().item(), rel=1e-5
    )


def test_contributions_match_the_permutation_definition_for_one_sample() -> None:
    preds = _predictions(n=1, lacking=0)
    probs = preds.logits.softmax(-1)
    phi = modality_contributions(probs, preds.targets, preds.subsets, preds.available, 3)["probability"][0]
    y = int(preds.targets[0])

    def value(code: int) -> float:
        return 0.25 if code == 0 else float(probs[preds.subsets.index(code), 0, y])

    for i in range(3):
        marginals = []
        for order in itertools.permutations(range(3)):
            before = sum(1 << j for j in order[: order.index(i)])
            marginals.append(value(before | 1 << i) - value(before))
        assert phi[i].item() == pytest.approx(sum(marginals) / len(marginals))
