"""DMoME's reliability-aware gate (beyond the paper): the signals, and that the option starts as the plain gate."""

from __future__ import annotations

import math

import pytest
import torch

from simmlm.methods import create_method
from simmlm.nn.gating import RELIABILITY_SIGNALS, reliability_signals

SHAPES = {"a": (1, 16, 16), "b": (12,), "c": (8,)}


def test_signals_of_flat_confident_missing_and_disagreeing_experts() -> None:
    flat = torch.zeros(4)
    sure = torch.tensor([20.0, 0, 0, 0])
    other = torch.tensor([0, 20.0, 0, 0])
    logits = torch.stack([torch.stack([flat, sure, sure]), torch.stack([sure, other, other])])  # [2, 3, 4]
    available = torch.tensor([[True, True, False], [True, True, True]])
    s = reliability_signals(logits, available)
    assert s.shape == (2, 3, len(RELIABILITY_SIGNALS))
    entropy, top, energy, agreement = s.unbind(-1)
    assert entropy[0, 0] == pytest.approx(1.0) and top[0, 0] == pytest.approx(0.25)  # a flat output
    assert entropy[0, 1] == pytest.approx(0.0, abs=1e-6) and top[0, 1] == pytest.approx(1.0)
    assert energy[0, 0] == pytest.approx(-1.0)  # -logsumexp(0, 0, 0, 0) / log 4
    assert torch.equal(s[0, 2], torch.zeros(4))  # missing: zeros
    # the mean of the others puts half on its class: m = (1/4, 3/4), JS = (KL(p || m) + KL(q || m)) / 2, in bits
    js = (math.log(4 / 3) + 0.5 * math.log(2) + 0.5 * math.log(2 / 3)) / 2 / math.log(2)
    assert agreement[1, 1] == pytest.approx(1 - js, abs=1e-4)
    assert agreement[1, 0] == pytest.approx(0.0, abs=1e-3)  # the odd one out: no overlap with the others' mean
    single = reliability_signals(logits[:1], torch.tensor([[False, True, False]]))
    assert single[0, 1, 3] == 1.0  # nobody to disagree with


def test_signals_are_detached_and_batch_independent() -> None:
    logits = torch.randn(5, 3, 6, requires_grad=True)
    available = torch.rand(5, 3) > 0.3
    available[:, 0] = True
    s = reliability_signals(logits, available)
    assert not s.requires_grad
    assert torch.allclose(reliability_signals(logits[2:3], available[2:3]), s[2:3])
    assert torch.isfinite(s).all() and (s[..., 3] <= 1 + 1e-6).all() and (s[..., 3] >= -1e-6).all()


def test_the_option_starts_as_the_plain_gate_and_learns_only_its_own_term() -> None:
    torch.manual_seed(0)
    plain = create_method("simmlm", input_shapes=SHAPES, num_classes=4, expert="auto")
    torch.manual_seed(0)
    reliable = create_method("simmlm", input_shapes=SHAPES, num_classes=4, expert="auto", reliability=True)
    inputs = {k: torch.randn(6, *v) for k, v in SHAPES.items()}
    available = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    a, b = plain(inputs, available), reliable(inputs, available)
    assert torch.allclose(a.logits, b.logits) and torch.equal(a.gate_weights == 0, b.gate_weights == 0)
    b.logits.logsumexp(-1).sum().backward()
    assert reliable.reliability is not None and reliable.reliability.weight.grad is not None
    assert reliable.reliability.weight.grad.abs().sum() > 0
    subsets = [available, available & torch.tensor([True, False, True])]
    outs = reliable.forward_subsets(inputs, available, subsets)
    assert torch.allclose(outs[0].logits, b.logits, atol=1e-6)


def test_a_lower_reliability_logit_moves_weight_away() -> None:
    torch.manual_seed(0)
    model = create_method("simmlm", input_shapes=SHAPES, num_classes=4, expert="auto", reliability=True)
    inputs = {k: torch.randn(3, *v) for k, v in SHAPES.items()}
    available = torch.ones(3, 3, dtype=torch.bool)
    before = model(inputs, available).gate_weights
    with torch.no_grad():
        assert model.reliability is not None
        model.reliability.bias[1] = -math.log(100)
    after = model(inputs, available).gate_weights
    assert (after[:, 1] < before[:, 1] / 50).all()


def test_reliability_refuses_outputs_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="no gate per output channel"):
        create_method("simmlm", input_shapes=SHAPES, num_classes=3, expert="auto", gate_channels=3, reliability=True)


def test_corruption_degrades_the_asked_share_and_zeroes_some() -> None:
    from simmlm.data.augment import AugmentSpec, augment

    torch.manual_seed(0)
    x = torch.randn(4000, 1, 5, 5) + 3
    out = augment(x, AugmentSpec(kind="corrupt", prob=0.4, severity=2.0, zero_share=0.25))
    changed = (out != x).flatten(1).any(1)
    zeroed = (out == 0).flatten(1).all(1)
    assert out.shape == x.shape
    assert changed.float().mean().item() == pytest.approx(0.4, abs=0.03)
    assert zeroed.float().mean().item() == pytest.approx(0.1, abs=0.02)
    noise = (out - x)[changed & ~zeroed]
    assert 0 < noise.std().item() < 2.0 * x.std().item()  # sigma uniform in (0, 2 std]: rms about 1.15 std
    assert torch.equal(augment(x, AugmentSpec(kind="corrupt", prob=0.0)), x)


def test_corruption_can_zero_bands_and_blocks_and_refuses_shares_over_one() -> None:
    from pydantic import ValidationError

    from simmlm.data.augment import AugmentSpec, augment

    torch.manual_seed(0)
    x = torch.randn(4000, 1, 8, 8) + 3  # no exact zeros of its own
    spec = AugmentSpec(kind="corrupt", prob=1.0, zero_share=0.0, band_share=0.5, occlude_share=0.5)
    out = augment(x, spec)
    zeros = out == 0
    rows = zeros.all(-1).squeeze(1)  # [N, 8]: rows zeroed in full
    banded = rows.any(1)
    assert banded.float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert torch.equal(out != x, zeros) and (zeros[banded].flatten(1).sum(1) % 8 == 0).all()  # whole rows
    assert rows.sum(1).max().item() <= 4  # at most half the rows
    blocks = ~banded
    sides = zeros[blocks].any(-1).flatten(1).sum(1), zeros[blocks].any(-2).flatten(1).sum(1)
    assert (sides[0] >= 1).all() and (sides[0] <= 6).all() and (sides[1] <= 6).all()  # sides up to sqrt(1/2) * 8
    with pytest.raises(ValidationError, match="at most 1"):
        AugmentSpec(kind="corrupt", zero_share=0.5, band_share=0.5, occlude_share=0.1)


def test_a_stage_can_have_its_own_augmentation() -> None:
    from simmlm.engine.config import load_config

    cfg = load_config("avmnist", {"train.stage2.augment": {"audio": {"kind": "corrupt", "prob": 0.5}}})
    assert cfg.train.stage2.augment is not None and cfg.train.stage2.augment["audio"].prob == 0.5
    assert cfg.train.stage1.augment is None


def test_each_stage_takes_its_own_augmentation_or_the_common_one() -> None:
    from simmlm.engine.config import load_config, stage_augment

    cfg = load_config("avmnist", {"train.stage2.augment": {"audio": {"kind": "corrupt"}}})
    assert stage_augment(cfg.train, "stage1") == cfg.train.augment
    assert list(stage_augment(cfg.train, "stage2")) == ["audio"]
    assert stage_augment(cfg.train, "stage2")["audio"].kind == "corrupt"


def test_a_stage_augmentation_of_an_unknown_modality_is_refused_before_training() -> None:
    from conftest import synthetic_splits
    from simmlm.engine.config import RunConfig
    from simmlm.engine.train import train

    cfg = RunConfig.model_validate(
        {
            "model": {"expert": {"a": "lenet", "b": "mlp"}},
            "train": {"stage1": {"epochs": 1}, "stage2": {"epochs": 1, "augment": {"audio": {"kind": "corrupt"}}}},
        }
    )
    with pytest.raises(ValueError, match=r"train.stage2.augment names unknown modalities \['audio'\]"):
        train(cfg, synthetic_splits(20), progress=False)


def test_mixing_given_expert_outputs_reads_their_signals_without_a_second_expert_pass() -> None:
    torch.manual_seed(0)
    model = create_method("simmlm", input_shapes=SHAPES, num_classes=4, expert="auto", reliability=True)
    assert model.reliability is not None
    with torch.no_grad():
        model.reliability.weight.normal_()  # a term that matters, so wrong signals would show
    inputs = {k: torch.randn(5, *v) for k, v in SHAPES.items()}
    available = torch.ones(5, 3, dtype=torch.bool)
    plus = available & torch.tensor([True, True, False])
    outputs = model.expert_logits(inputs, available)
    calls = []
    handles = [e.register_forward_hook(lambda *_: calls.append(1)) for e in model.experts.values()]
    mixed = model.mix(outputs, inputs, plus)
    several = model.mix_subsets(outputs, inputs, available, [available, plus])
    for handle in handles:
        handle.remove()
    assert not calls
    assert torch.allclose(mixed.logits, model(inputs, plus).logits, atol=1e-6)
    assert torch.allclose(several[1].logits, model.forward_subsets(inputs, available, [available, plus])[1].logits)
