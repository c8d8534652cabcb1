"""Building blocks: masked softmax, experts, gating network."""

from __future__ import annotations

import pytest
import torch

from simmlm.nn import (
    ConvGateEncoder,
    FlatGateEncoder,
    GatingNetwork,
    LeNet5,
    MLPExpert,
    build_expert,
    build_gate_encoder,
    masked_softmax,
)

MASK = torch.tensor(
    [
        [True, False, True],
        [False, True, False],
        [True, True, True],
        [False, False, True],
    ]
)


@pytest.mark.parametrize("extra", [(), (4,)], ids=["BM", "BMK"])
def test_masked_softmax_zero_for_missing_and_rows_sum_to_one(extra: tuple[int, ...]) -> None:
    logits = torch.randn(4, 3, *extra) * 5
    weights = masked_softmax(logits, MASK)
    assert weights.shape == logits.shape
    missing = ~MASK.reshape(4, 3, *([1] * len(extra))).expand_as(weights)
    assert torch.all(weights[missing] == 0.0)
    assert torch.all(weights[~missing] > 0.0)
    torch.testing.assert_close(weights.sum(1), torch.ones(4, *extra), rtol=0, atol=1e-6)
    assert torch.isfinite(weights).all()


def test_masked_softmax_matches_softmax_over_available_only() -> None:
    logits = torch.randn(4, 3)
    weights = masked_softmax(logits, MASK)
    for row in range(4):
        present = MASK[row]
        expected = torch.softmax(logits[row, present], dim=0)
        torch.testing.assert_close(weights[row, present], expected)


def test_masked_softmax_ignores_missing_logits_even_if_huge_or_nan() -> None:
    logits = torch.randn(4, 3)
    poisoned = logits.clone()
    poisoned[~MASK] = torch.tensor([1e30, float("nan"), float("inf"), -float("inf"), 3.0, float("nan")])[
        : int((~MASK).sum())
    ]
    assert torch.equal(masked_softmax(poisoned, MASK), masked_softmax(logits, MASK))


def test_masked_softmax_single_available_gets_weight_one() -> None:
    weights = masked_softmax(torch.tensor([[100.0, -3.0, 7.0]]), torch.tensor([[False, True, False]]))
    assert weights.tolist() == [[0.0, 1.0, 0.0]]


@pytest.mark.parametrize("extra", [(), (2,)], ids=["BM", "BMK"])
def test_masked_softmax_all_missing_row_raises_instead_of_nan(extra: tuple[int, ...]) -> None:
    mask = torch.tensor([[True, False], [False, False]])
    with pytest.raises(ValueError, match="no available modality"):
        masked_softmax(torch.randn(2, 2, *extra), mask)


def test_masked_softmax_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        masked_softmax(torch.randn(4, 2), MASK)


def test_masked_softmax_gradient_is_zero_for_missing() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    weights = masked_softmax(logits, MASK)
    (weights * torch.randn(4, 3)).sum().backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert torch.all(logits.grad[~MASK] == 0)


@pytest.mark.parametrize("size", [28, 20])
def test_lenet5_output_shape(size: int) -> None:
    net = LeNet5(num_classes=10, input_size=size)
    out = net(torch.randn(3, 1, size, size))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


def test_lenet5_channels_width_and_classes() -> None:
    net = LeNet5(num_classes=7, input_size=20, in_channels=2, width=2, dropout=0.5)
    assert net(torch.randn(2, 2, 20, 20)).shape == (2, 7)


def test_lenet5_too_small_input_raises() -> None:
    with pytest.raises(ValueError, match="too small"):
        LeNet5(num_classes=10, input_size=8)


def test_build_expert_lenet_and_mlp() -> None:
    lenet = build_expert("lenet", (1, 20, 20), 10)
    assert isinstance(lenet, LeNet5)
    assert lenet(torch.randn(2, 1, 20, 20)).shape == (2, 10)
    mlp = build_expert("mlp", (3, 5), 4, hidden=16)
    assert isinstance(mlp, MLPExpert)
    assert mlp(torch.randn(2, 3, 5)).shape == (2, 4)


@pytest.mark.parametrize(
    ("kind", "shape"),
    [
        ("resnet", (1, 28, 28)),
        ("lenet", (1, 28, 20)),  # not square
        ("lenet", (28, 28)),  # no channel axis
        ("lenet", (1, 1, 28, 28)),  # too many axes
    ],
)
def test_build_expert_bad_kind_or_shape_raises(kind: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        build_expert(kind, shape, 10)


def test_build_gate_encoder_kinds() -> None:
    assert isinstance(build_gate_encoder((1, 28, 28)), ConvGateEncoder)
    assert isinstance(build_gate_encoder((2, 16)), ConvGateEncoder)  # 1-D signal
    assert isinstance(build_gate_encoder((1, 8, 8, 8)), ConvGateEncoder)  # volume
    flat = build_gate_encoder((12,), width=4)
    assert isinstance(flat, FlatGateEncoder)
    assert flat(torch.randn(3, 12)).shape == (3, flat.out_features)


def _gate(num_channels: int | None) -> GatingNetwork:
    encoders = {
        "image": build_gate_encoder((1, 28, 28)),
        "audio": build_gate_encoder((1, 20, 20)),
        "vector": build_gate_encoder((6,)),
    }
    return GatingNetwork(encoders, num_channels=num_channels, hidden=16)


def _gate_inputs(batch: int) -> dict[str, torch.Tensor]:
    return {
        "image": torch.randn(batch, 1, 28, 28),
        "audio": torch.randn(batch, 1, 20, 20),
        "vector": torch.randn(batch, 6),
    }


def test_gating_network_output_shape_one_gate_per_modality() -> None:
    out = _gate(None)(_gate_inputs(5))
    assert out.shape == (5, 3)


def test_gating_network_output_shape_per_channel() -> None:
    out = _gate(4)(_gate_inputs(5))
    assert out.shape == (5, 3, 4)
    # and it feeds masked_softmax directly
    mask = torch.tensor([[True, False, True]] * 5)
    weights = masked_softmax(out, mask)
    assert torch.all(weights[:, 1] == 0)
    torch.testing.assert_close(weights.sum(1), torch.ones(5, 4))


@pytest.mark.parametrize(
    ("shape", "kind"),
    [((1, 28, 28), "lenet"), ((3, 12, 12), "lenet"), ((1, 8, 8), "mlp"), ((1, 16, 20), "mlp"), ((12,), "mlp")],
)
def test_auto_expert_picks_lenet_for_square_images_else_mlp(shape: tuple[int, ...], kind: str) -> None:
    from simmlm.nn import resolve_expert_kind

    assert resolve_expert_kind("auto", shape) == kind
    assert resolve_expert_kind("mlp", (1, 28, 28)) == "mlp"
    expert = build_expert("auto", shape, 5)
    assert expert(torch.randn(2, *shape)).shape == (2, 5)
