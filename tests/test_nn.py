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
from simmlm.nn.sequence import SequenceGateEncoder

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
    sequence = build_gate_encoder((5, 16), width=4)  # [T, D] feature sequence: frames averaged
    assert isinstance(sequence, SequenceGateEncoder) and sequence(torch.randn(3, 5, 16)).shape == (3, 8)
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


def test_bncnn_is_smils_audio_network() -> None:
    from simmlm.nn.experts import BNConvNet, build_expert

    net = build_expert("bncnn", (1, 20, 20), 10)
    assert isinstance(net, BNConvNet)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(320, 160), (160, 32), (32, 10)]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 3
    assert net(torch.randn(4, 1, 20, 20)).shape == (4, 10)
    with pytest.raises(ValueError, match="'bncnn' needs a \\[C, S, S\\] input"):
        build_expert("bncnn", (1, 20, 10), 10)


def test_mlp_expert_hidden_layers() -> None:
    from simmlm.nn.experts import build_expert

    net = build_expert("mlp", (1, 20, 20), 10, hidden=[256, 128], dropout=0.3)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(400, 256), (256, 128), (128, 10)]
    one = build_expert("mlp", (6,), 3, hidden=16)
    assert [m.out_features for m in one.modules() if isinstance(m, torch.nn.Linear)] == [16, 3]


def test_expert_options_per_modality() -> None:
    from simmlm.methods import create_method, expert_options_for

    shapes = {"image": (1, 28, 28), "audio": (1, 20, 20)}
    assert expert_options_for("audio", list(shapes), {"image": {"width": 2}, "audio": {"hidden": [8]}}) == {
        "hidden": [8]
    }
    assert expert_options_for("audio", list(shapes), {"dropout": 0.5}) == {"dropout": 0.5}  # shared by all
    options = {"image": {"width": 2}, "audio": {"hidden": [32, 16]}}
    for method in ("simmlm", "late_fusion", "mmp", "dream"):
        model = create_method(
            method,
            input_shapes=shapes,
            num_classes=10,
            expert={"image": "lenet", "audio": "mlp"},
            expert_options=options,
        )
        out = model({k: torch.randn(2, *s) for k, s in shapes.items()}, torch.ones(2, 2, dtype=torch.bool))
        assert out.logits.shape == (2, 10)
    with pytest.raises(ValueError, match="expert_options\\['audio'\\] must be a mapping"):
        expert_options_for("audio", list(shapes), {"audio": 3})


def test_bncnn_tokens_for_mmp() -> None:
    from simmlm.methods.mmp import build_token_encoder

    encoder = build_token_encoder("bncnn", (1, 20, 20), 16, hidden=[4])
    assert encoder(torch.randn(3, 1, 20, 20)).shape == (3, 16, 16)  # 4x4 positions of 20 channels -> 16 tokens


def test_band_masks_zero_whole_rows_and_columns() -> None:
    from simmlm.data.augment import AugmentSpec, augment

    torch.manual_seed(3)
    x = torch.ones(64, 1, 20, 20)
    out = augment(x, AugmentSpec(kind="mask", freq_width=4, time_width=3, masks=1))
    zero_rows = (out == 0).all(dim=3).sum(dim=(1, 2))  # rows (coefficients) zeroed per sample
    zero_cols = (out == 0).all(dim=2).sum(dim=(1, 2))
    assert zero_rows.max() <= 4 and zero_cols.max() <= 3 and zero_rows.max() > 0
    assert ((out == 0) | (out == 1)).all()
    # every zero lies in a zeroed row or a zeroed column: bands, never scattered cells
    rows = (out == 0).all(dim=3, keepdim=True)
    cols = (out == 0).all(dim=2, keepdim=True)
    assert ((out != 0) | rows | cols).all()
    unchanged = augment(x, AugmentSpec(kind="mask", freq_width=0, time_width=0))
    assert torch.equal(unchanged, x)
    with pytest.raises(ValueError, match="mask augmentation needs"):
        augment(torch.ones(2, 20), AugmentSpec(kind="mask"))


def test_explain_expert_says_which_expert_and_why_and_spots_a_series_read_as_an_image() -> None:
    from simmlm.nn.experts import explain_expert

    assert explain_expert("image", "auto", (1, 28, 28)) == (
        "lenet",
        "lenet (auto: a square 1×28×28 image, at least 12 px)",
    )
    kind, why = explain_expert("acc", "auto", (1, 100, 3))  # a [100, 3] series in a folder dataset
    assert kind == "mlp" and "flattened" in why and "series of 100 steps of 3 channels" in why
    assert "data.sequences=[acc]" in why
    assert explain_expert("acc", "auto", (100, 3))[0] == "gru"
    assert "set by model.expert" in explain_expert("x", "mlp", (1, 8, 8))[1]
    assert "series" not in explain_expert("spectrum", "auto", (1, 20, 20))[1]  # square: an image, no hint
