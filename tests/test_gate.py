"""Gate regularisation: uniform initialisation and the KL shrinkage toward the plain mean of the experts."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import synthetic_splits
from simmlm.engine.config import RunConfig
from simmlm.engine.train import quiet_lightning, train
from simmlm.losses.gate import gate_kl_to_uniform
from simmlm.methods import create_method
from simmlm.nn.functional import masked_softmax


def test_kl_to_uniform_is_zero_at_the_plain_mean_and_positive_elsewhere() -> None:
    mask = torch.tensor([[True, True, False], [True, False, False], [True, True, True]])
    uniform = masked_softmax(torch.zeros(3, 3), mask)
    torch.testing.assert_close(gate_kl_to_uniform(uniform, mask), torch.zeros(3))
    peaked = masked_softmax(torch.tensor([[3.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]), mask)
    kl = gate_kl_to_uniform(peaked, mask)
    assert kl[1] == 0 and kl[0] > 0 and kl[2] > 0  # a single available modality has nothing to shrink
    p = peaked[0, :2]
    assert kl[0].item() == pytest.approx((p * (p * 2).log()).sum().item(), rel=1e-6)
    per_channel = torch.stack([uniform, peaked], dim=-1)  # [B, M, K=2]: K divergences averaged
    torch.testing.assert_close(gate_kl_to_uniform(per_channel, mask), kl / 2)


def test_kl_gradient_is_finite_with_missing_modalities() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    mask = torch.tensor([[True, False, False], [True, True, False], [False, True, True], [True, True, True]])
    gate_kl_to_uniform(masked_softmax(logits, mask), mask).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_uniform_gate_initialisation_gives_the_plain_mean() -> None:
    shapes = {"a": (1, 12, 12), "b": (6,), "c": (4,)}
    model = create_method("simmlm", input_shapes=shapes, num_classes=3, expert="auto")
    model.reset_fusion_to_uniform()
    inputs = {k: torch.randn(5, *s) for k, s in shapes.items()}
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 1, 1]], dtype=torch.bool)
    weights = model(inputs, mask).gate_weights
    torch.testing.assert_close(weights, mask.float() / mask.sum(1, keepdim=True))


def test_shrinkage_pulls_the_trained_gate_toward_uniform() -> None:
    quiet_lightning()
    splits = synthetic_splits(48)

    def gate_spread(shrinkage: float) -> float:
        cfg = RunConfig.model_validate(
            {
                "model": {"expert": "auto"},
                "train": {
                    "batch_size": 16,
                    "stage1": {"epochs": 2},
                    "stage2": {"epochs": 3, "lr": 0.05},
                    "gate_shrinkage": shrinkage,
                },
            }
        )
        model = train(cfg, splits, progress=False).model
        inputs, mask, _ = splits.val[list(range(len(splits.val)))]
        weights = model(inputs, mask).gate_weights
        return gate_kl_to_uniform(weights, mask).mean().item()

    free, shrunk = gate_spread(0.0), gate_spread(100.0)
    assert shrunk < free and shrunk < 0.05 * math.log(2)


@pytest.mark.parametrize("channels", [None, 3])
def test_all_subsets_at_once_equal_the_gate_on_each_zero_filled_subset(channels: int | None) -> None:
    """The batched gate (encoders once, enc(0) for absent modalities, the head's first layer split per modality)
    is the paper's gate on each subset's zero-filled inputs, values and gradients."""
    from simmlm.methods.base import zero_fill
    from simmlm.subsets import all_subsets, bits_to_mask

    torch.manual_seed(0)
    shapes = {"a": (1, 12, 12), "b": (6,), "c": (2, 8, 8)}
    model = create_method("simmlm", input_shapes=shapes, num_classes=3, expert="auto", gate_channels=channels)
    inputs = {name: torch.randn(5, *shape) for name, shape in shapes.items()}
    available = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    masks = [bits_to_mask(torch.full((5,), code), 3) & available for code in all_subsets(3)]
    masks = [m for m in masks if m.any(1).all()]
    filled = zero_fill(inputs, available, model.modalities)
    batched = model.gate.subset_logits(filled, torch.stack(masks))
    one_by_one = torch.stack([model.gate(zero_fill(inputs, m, model.modalities)) for m in masks])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-6)
    grads = [torch.autograd.grad(x.square().sum(), list(model.gate.parameters())) for x in (batched, one_by_one)]
    for g_batched, g_each in zip(*grads, strict=True):
        torch.testing.assert_close(g_batched, g_each, rtol=1e-4, atol=1e-5)


def test_per_sample_evenness_is_one_for_the_plain_mean_and_zero_for_one_expert() -> None:
    from simmlm.evaluation.evaluate import classification_report
    from simmlm.evaluation.inferers import SubsetPredictions

    weights = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [0.9, 0.1]]])  # one subset (a+b), four samples
    preds = SubsetPredictions(
        logits=torch.zeros(1, 4, 2),
        targets=torch.zeros(4, dtype=torch.long),
        subsets=[3],
        available=torch.full((4,), 3),
        gate_weights=weights,
    )
    report = classification_report(preds, ["a", "b"])
    one_sample = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert report["gate_evenness"]["a+b"] == pytest.approx((1 + 0 + 0 + one_sample) / 4, rel=1e-5)
    assert report["gate_weights"]["a+b"] == {"a": pytest.approx(0.6), "b": pytest.approx(0.4)}  # mean: fairly even


def test_a_list_of_shrinkage_values_is_chosen_on_validation_and_equals_the_run_with_the_chosen_value() -> None:
    """``train.gate_shrinkage: [a, b]``: stage 2 once per value from the same stage 1, the best validation mean score
    kept (recorded with every value's score); the kept model is bit for bit the run with that value alone."""
    quiet_lightning()
    splits = synthetic_splits(48)

    def config(shrinkage: object, method: str = "simmlm") -> RunConfig:
        train_cfg = {"batch_size": 16, "stage1": {"epochs": 2}, "stage2": {"epochs": 2}, "gate_shrinkage": shrinkage}
        return RunConfig.model_validate({"method": method, "model": {"expert": "auto"}, "train": train_cfg})

    grid = train(config([5.0, 0.0]), splits, progress=False)
    record = grid.selected["gate_shrinkage"]
    scores = record["val_mean_score"]
    assert set(scores) == {"5", "0"} and all(0 <= s <= 1 for s in scores.values())
    key = {v: (scores[v], -record["val_mean_loss"][v]) for v in scores}  # accuracy, then the lower loss
    assert record["chosen"] == (5.0 if key["5"] >= key["0"] else 0.0)  # a full tie keeps the value listed first
    alone = train(config(record["chosen"]), splits, progress=False)
    for name, value in grid.model.state_dict().items():
        assert torch.equal(value, alone.model.state_dict()[name]), name
    assert "gate_shrinkage" not in train(config([5.0, 0.0], "late_fusion"), splits, progress=False).selected
    with pytest.raises(ValueError):
        config([])
    with pytest.raises(ValueError):
        config([1.0, -1.0])
