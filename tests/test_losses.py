"""MoFe ranking loss (SimMLM eqs. 3-4) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from simmlm.losses import MoFeLoss, mofe_loss, mofe_terms, per_sample_cross_entropy


def _ce(logits: list[float], target: int) -> float:
    """Cross-entropy by hand: -log softmax(logits)[target]."""
    z = sum(math.exp(v) for v in logits)
    return -math.log(math.exp(logits[target]) / z)


# Two samples, two classes, target 0 for both.
# Sample 0: o+ is worse than o- (hinge active); sample 1: o+ is much better (hinge inactive).
LOGITS_PLUS = [[0.0, 2.0], [3.0, 0.0]]
LOGITS_MINUS = [[0.0, 0.0], [0.0, 3.0]]
TARGET = [0, 0]
L_PLUS = [_ce(LOGITS_PLUS[i], TARGET[i]) for i in range(2)]
L_MINUS = [_ce(LOGITS_MINUS[i], TARGET[i]) for i in range(2)]


def _tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(LOGITS_PLUS, dtype=torch.float64),
        torch.tensor(LOGITS_MINUS, dtype=torch.float64),
        torch.tensor(TARGET),
    )


def _expected_total(lam: float) -> float:
    mean_plus = sum(L_PLUS) / 2
    mean_minus = sum(L_MINUS) / 2
    hinge = sum(max(0.0, p - m) for p, m in zip(L_PLUS, L_MINUS, strict=True)) / 2
    return mean_plus + mean_minus + lam * hinge


def test_hand_case_is_constructed_as_intended() -> None:
    # sample 0's hinge is active, sample 1's is not, and the batch means point the other way
    assert L_PLUS[0] > L_MINUS[0]
    assert L_PLUS[1] < L_MINUS[1]
    assert sum(L_PLUS) < sum(L_MINUS)


def test_per_sample_cross_entropy_by_hand() -> None:
    plus, _, target = _tensors()
    torch.testing.assert_close(per_sample_cross_entropy(plus, target), torch.tensor(L_PLUS, dtype=torch.float64))


@pytest.mark.parametrize("lam", [0.0, 0.1, 1.0, 7.5])
def test_mofe_loss_total_by_hand(lam: float) -> None:
    plus, minus, target = _tensors()
    total = mofe_loss(plus, minus, target, lam=lam)
    assert total.ndim == 0
    assert total.item() == pytest.approx(_expected_total(lam), rel=1e-12)


def test_mofe_terms_by_hand() -> None:
    plus, minus, target = _tensors()
    terms = mofe_terms(plus, minus, target, lam=0.5)
    assert terms.task_plus.item() == pytest.approx(sum(L_PLUS) / 2, rel=1e-12)
    assert terms.task_minus.item() == pytest.approx(sum(L_MINUS) / 2, rel=1e-12)
    assert terms.hinge.item() == pytest.approx((L_PLUS[0] - L_MINUS[0]) / 2, rel=1e-12)
    assert terms.active_fraction.item() == pytest.approx(0.5)
    assert terms.total.item() == pytest.approx(_expected_total(0.5), rel=1e-12)


def test_hinge_is_per_sample_not_batch_level() -> None:
    plus, minus, target = _tensors()
    terms = mofe_terms(plus, minus, target, lam=1.0)
    batch_level = max(0.0, terms.task_plus.item() - terms.task_minus.item())
    assert batch_level == 0.0
    assert terms.hinge.item() > 0.0
    assert terms.total.item() > terms.task_plus.item() + terms.task_minus.item()


def test_active_fraction_counts_strictly_positive_gaps() -> None:
    target = torch.tensor([0, 0, 0, 0])
    # equal logits -> gap exactly 0 (inactive); two samples with o+ worse (active)
    plus = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 2.0], [2.0, 0.0]])
    minus = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    terms = mofe_terms(plus, minus, target)
    assert terms.active_fraction.item() == pytest.approx(0.5)


def test_lam_zero_is_the_sum_of_task_losses() -> None:
    torch.manual_seed(0)
    plus, minus = torch.randn(16, 5), torch.randn(16, 5)
    target = torch.randint(0, 5, (16,))
    expected = torch.nn.functional.cross_entropy(plus, target) + torch.nn.functional.cross_entropy(minus, target)
    torch.testing.assert_close(mofe_loss(plus, minus, target, lam=0.0), expected)


def test_identical_outputs_have_zero_hinge() -> None:
    logits = torch.randn(8, 3)
    target = torch.randint(0, 3, (8,))
    terms = mofe_terms(logits, logits, target, lam=10.0)
    assert terms.hinge.item() == 0.0
    assert terms.active_fraction.item() == 0.0
    torch.testing.assert_close(terms.total, 2 * torch.nn.functional.cross_entropy(logits, target))


def test_negative_lambda_raises() -> None:
    plus, minus, target = _tensors()
    with pytest.raises(ValueError, match="lambda"):
        mofe_loss(plus, minus, target, lam=-0.1)
    with pytest.raises(ValueError, match="lambda"):
        MoFeLoss(lam=-1.0)


def test_function_and_module_agree() -> None:
    torch.manual_seed(1)
    plus, minus = torch.randn(10, 4), torch.randn(10, 4)
    target = torch.randint(0, 4, (10,))
    module = MoFeLoss(lam=0.3)
    assert torch.equal(module(plus, minus, target), mofe_loss(plus, minus, target, lam=0.3))
    terms_f = mofe_terms(plus, minus, target, lam=0.3)
    terms_m = module.terms(plus, minus, target)
    for field in ("total", "task_plus", "task_minus", "hinge", "active_fraction"):
        assert torch.equal(getattr(terms_f, field), getattr(terms_m, field)), field


def test_custom_task_loss_is_used() -> None:
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def first_logit(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append((logits, target))
        return logits[:, 0]

    plus = torch.tensor([[3.0, 9.0], [1.0, 9.0]])
    minus = torch.tensor([[1.0, 9.0], [2.0, 9.0]])
    target = torch.tensor([1, 1])
    # l+ = [3, 1], l- = [1, 2] -> means 2 and 1.5, hinge mean((2, 0)) = 1
    expected = 2.0 + 1.5 + 0.25 * 1.0
    assert mofe_loss(plus, minus, target, lam=0.25, task_loss=first_logit).item() == pytest.approx(expected)
    assert len(calls) == 2
    assert MoFeLoss(lam=0.25, task_loss=first_logit)(plus, minus, target).item() == pytest.approx(expected)


def test_non_per_sample_task_loss_raises() -> None:
    plus, minus, target = _tensors()

    def mean_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return per_sample_cross_entropy(logits, target).mean()

    with pytest.raises(ValueError, match=r"\[B\]"):
        mofe_loss(plus, minus, target, task_loss=mean_loss)


def test_gradients_flow_through_both_branches() -> None:
    plus, minus, target = _tensors()
    plus.requires_grad_(True)
    minus.requires_grad_(True)
    MoFeLoss(lam=1.0)(plus, minus, target).backward()
    assert plus.grad is not None and minus.grad is not None
    assert torch.isfinite(plus.grad).all() and torch.isfinite(minus.grad).all()
    assert plus.grad.abs().sum() > 0 and minus.grad.abs().sum() > 0


def test_hinge_gradient_by_hand() -> None:
    """With lam, the active sample's o+ gets (1 + lam) times and its o- (1 - lam) times the CE gradient / B."""
    plus, minus, target = _tensors()
    lam = 0.5
    plus.requires_grad_(True)
    minus.requires_grad_(True)
    mofe_loss(plus, minus, target, lam=lam).backward()
    # d CE / d logits = softmax - onehot
    grad_ce_plus = torch.softmax(plus.detach(), -1) - torch.nn.functional.one_hot(target, 2)
    grad_ce_minus = torch.softmax(minus.detach(), -1) - torch.nn.functional.one_hot(target, 2)
    scale_plus = torch.tensor([1 + lam, 1.0], dtype=torch.float64).unsqueeze(1) / 2
    scale_minus = torch.tensor([1 - lam, 1.0], dtype=torch.float64).unsqueeze(1) / 2
    torch.testing.assert_close(plus.grad, grad_ce_plus * scale_plus)
    torch.testing.assert_close(minus.grad, grad_ce_minus * scale_minus)


def test_mean_terms_averages_pairs_and_keeps_one_pair_unchanged() -> None:
    from simmlm.losses.mofe import mean_terms, mofe_terms

    target = torch.tensor([0, 1, 2])
    a = mofe_terms(torch.randn(3, 3, requires_grad=True), torch.randn(3, 3), target, 0.1)
    b = mofe_terms(torch.randn(3, 3), torch.randn(3, 3), target, 0.1)
    assert mean_terms([a]) is a
    both = mean_terms([a, b])
    torch.testing.assert_close(both.total, (a.total + b.total) / 2)
    torch.testing.assert_close(both.active_fraction, (a.active_fraction + b.active_fraction) / 2)
    both.total.backward()  # the average keeps the graph


def test_pairs_per_sample_trains_and_one_pair_is_the_default_behaviour() -> None:
    from conftest import synthetic_splits
    from simmlm.engine.config import RunConfig
    from simmlm.engine.train import quiet_lightning, train

    quiet_lightning()
    splits = synthetic_splits(36)

    def weights(**train_options: object) -> dict[str, torch.Tensor]:
        cfg = RunConfig.model_validate(
            {
                "model": {"expert": "auto"},
                "train": {"batch_size": 12, "stage1": {"epochs": 1}, "stage2": {"epochs": 2}, **train_options},
            }
        )
        return train(cfg, splits, progress=False).model.state_dict()

    default, one, three = weights(), weights(pairs_per_sample=1), weights(pairs_per_sample=3)
    assert all(torch.equal(default[k], one[k]) for k in default)
    assert any(not torch.equal(default[k], three[k]) for k in default)
    assert all(torch.isfinite(v).all() for v in three.values() if v.is_floating_point())


def test_a_degenerate_pair_counts_its_task_loss_once() -> None:
    """A sample with one available modality gets S- = S+: its loss must not count twice (hinge 0 either way)."""
    from simmlm.losses.mofe import mofe_terms

    torch.manual_seed(0)
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    other = torch.randn(4, 3)
    minus = torch.where(torch.tensor([True, False, False, True]).unsqueeze(1), logits, other)  # rows 0, 3: S- = S+
    same = torch.tensor([True, False, False, True])
    terms = mofe_terms(logits, minus, target, 0.1, same=same)
    l_plus = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    l_minus = torch.nn.functional.cross_entropy(minus, target, reduction="none")
    torch.testing.assert_close(terms.task_minus, torch.where(same, 0.0, l_minus).mean())
    hinge = (l_plus - l_minus).clamp(min=0).mean()
    torch.testing.assert_close(terms.total, l_plus.mean() + torch.where(same, 0.0, l_minus).mean() + 0.1 * hinge)
    unmarked = mofe_terms(logits, minus, target, 0.1, same=torch.zeros(4, dtype=torch.bool))
    torch.testing.assert_close(unmarked.total, mofe_terms(logits, minus, target, 0.1).total, rtol=0, atol=0)


def test_degenerate_pairs_add_no_hinge_even_from_two_views() -> None:
    """A sample with one modality has S- = S+: one task loss and no ranking term, also when x+ and x- are two
    independently augmented views whose outputs differ (before: their positive gap counted as a hinge)."""
    plus = torch.tensor([[0.0, 3.0], [0.0, 3.0]])
    minus = torch.tensor([[3.0, 0.0], [0.0, 3.0]])  # sample 0: l+ > l- by 6 nats, from two views of one subset
    target = torch.tensor([0, 1])
    terms = mofe_terms(plus, minus, target, lam=1.0, same=torch.tensor([True, False]))
    assert terms.hinge.item() == 0.0 and terms.active_fraction.item() == 0.0
    loss = torch.nn.functional.cross_entropy
    torch.testing.assert_close(terms.task_plus, loss(plus, target))
    torch.testing.assert_close(terms.task_minus, loss(minus[1:], target[1:]) / 2)
    torch.testing.assert_close(terms.total, terms.task_plus + terms.task_minus)
