"""Methods: the shared ``forward(inputs, mask) -> ModelOutput`` contract, DMoME's expert reuse, predictions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import INPUT_SHAPES, MODALITIES, NUM_CLASSES, check_gate_weights, random_inputs
from simmlm.data.base import TensorMultimodalDataset
from simmlm.evaluation.inferers import predict_subsets
from simmlm.methods import DMoME, ModelOutput, create_method, get_method, list_methods
from simmlm.methods.base import outputs_for_subsets
from simmlm.subsets import all_subsets, bits_to_mask

M = len(MODALITIES)
SUBSETS = all_subsets(M)


def _build(name: str, **options: object) -> nn.Module:
    model = create_method(name, input_shapes=INPUT_SHAPES, num_classes=NUM_CLASSES, **options)
    return model.eval()


@pytest.fixture(scope="module", params=list_methods())
def method(request: pytest.FixtureRequest) -> nn.Module:
    torch.manual_seed(0)
    return _build(request.param)


@pytest.fixture(scope="module")
def dmome() -> DMoME:
    torch.manual_seed(1)
    model = _build("simmlm")
    assert isinstance(model, DMoME)
    return model


def _subset_mask(bits: int, batch: int) -> torch.Tensor:
    return bits_to_mask(torch.full((batch,), bits, dtype=torch.long), M)


def test_registry_lists_known_methods() -> None:
    names = list_methods()
    assert names == sorted(names)
    assert {"simmlm", "dmome", "late_fusion", "mmp", "dream"} <= set(names)
    assert get_method("simmlm").train_defaults["mofe_lambda"] > 0
    assert get_method("dmome").train_defaults["mofe_lambda"] == 0
    with pytest.raises(ValueError, match="unknown method"):
        get_method("no-such-method")


def test_a_method_sets_only_the_training_settings_a_config_leaves_open() -> None:
    """``register_method`` refuses a misspelt or foreign training default at once (it used to become a "train
    default" that failed much later), and the keys it allows are exactly the config's open ones."""
    from simmlm.engine.config import TrainConfig
    from simmlm.methods.registry import METHOD_TRAIN_KEYS, register_method

    assert {k for k, f in TrainConfig.model_fields.items() if f.default is None} == METHOD_TRAIN_KEYS
    builder = get_method("late_fusion").builder
    with pytest.raises(ValueError, match=r"train_defaults \['mofe_lamda'\] are not for a method to set"):
        register_method("late_fusion_typo", builder, "x", train_defaults={"mofe_lamda": 0.1})
    assert "late_fusion_typo" not in list_methods()


@pytest.mark.parametrize("bits", SUBSETS)
def test_forward_every_subset_shapes_and_gate_weights(method: nn.Module, bits: int) -> None:
    batch = 3
    mask = _subset_mask(bits, batch)
    with torch.no_grad():
        out = method(random_inputs(batch), mask)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (batch, NUM_CLASSES)
    assert torch.isfinite(out.logits).all()
    check_gate_weights(out.gate_weights, mask)


def test_forward_mixed_masks_in_one_batch(method: nn.Module) -> None:
    mask = torch.tensor([[True, False], [False, True], [True, True], [True, False]])
    with torch.no_grad():
        out = method(random_inputs(4), mask)
    assert out.logits.shape == (4, NUM_CLASSES)
    check_gate_weights(out.gate_weights, mask)


def test_forward_all_missing_row_raises(method: nn.Module) -> None:
    mask = torch.tensor([[True, True], [False, False]])
    with pytest.raises(ValueError, match="no available modality"):
        method(random_inputs(2), mask)


def test_forward_unknown_modality_key_raises(method: nn.Module) -> None:
    inputs = random_inputs(2)
    inputs["video"] = torch.randn(2, 3)
    with pytest.raises(ValueError, match="video"):
        method(inputs, torch.ones(2, M, dtype=torch.bool))


def test_forward_absent_modality_key_raises(method: nn.Module) -> None:
    inputs = random_inputs(2)
    del inputs["audio"]
    with pytest.raises(ValueError, match="audio"):
        method(inputs, torch.tensor([[True, False], [True, False]]))


def test_forward_batch_size_mismatch_raises(method: nn.Module) -> None:
    inputs = random_inputs(3)
    with pytest.raises(ValueError, match="batch size"):
        method(inputs, torch.ones(2, M, dtype=torch.bool))


def test_forward_mask_column_count_mismatch_raises(method: nn.Module) -> None:
    with pytest.raises(ValueError):
        method(random_inputs(2), torch.ones(2, M + 1, dtype=torch.bool))


def test_gate_channels_give_per_channel_weights() -> None:
    model = _build("simmlm", gate_channels=NUM_CLASSES)
    mask = torch.tensor([[True, False], [True, True]])
    with torch.no_grad():
        out = model(random_inputs(2), mask)
    assert out.gate_weights is not None
    assert out.gate_weights.shape == (2, M, NUM_CLASSES)
    check_gate_weights(out.gate_weights, mask)


_special = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 3.4e38, 0.0])


@settings(max_examples=50)
@given(
    name=st.sampled_from(list_methods()),
    rows=st.lists(st.sampled_from(SUBSETS), min_size=1, max_size=4),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(1e-3, 1e30),
    special=_special,
    special_fraction=st.floats(0.0, 1.0),
)
def test_missing_content_never_changes_outputs(
    name: str, rows: list[int], seed: int, scale: float, special: float, special_fraction: float
) -> None:
    model = _CACHED_MODELS[name]
    batch = len(rows)
    mask = bits_to_mask(torch.tensor(rows), M)
    gen = torch.Generator().manual_seed(seed)
    inputs = random_inputs(batch, gen)
    poisoned = {}
    for m, key in enumerate(MODALITIES):
        junk = torch.randn(inputs[key].shape, generator=gen) * scale
        junk[torch.rand(junk.shape, generator=gen) < special_fraction] = special
        missing = ~mask[:, m].reshape(-1, *([1] * (junk.ndim - 1)))
        poisoned[key] = torch.where(missing, junk, inputs[key])
    with torch.no_grad():
        clean_out = model(inputs, mask)
        poisoned_out = model(poisoned, mask)
    assert torch.equal(clean_out.logits, poisoned_out.logits)
    assert torch.isfinite(poisoned_out.logits).all()
    if clean_out.gate_weights is None:
        assert poisoned_out.gate_weights is None
    else:
        assert poisoned_out.gate_weights is not None
        assert torch.equal(clean_out.gate_weights, poisoned_out.gate_weights)


def _make_cached_models() -> dict[str, nn.Module]:
    state = torch.random.get_rng_state()
    torch.manual_seed(123)
    models = {name: _build(name) for name in list_methods()}
    torch.random.set_rng_state(state)
    return models


_CACHED_MODELS = _make_cached_models()


def test_missing_content_changes_nothing_but_present_content_does(dmome: DMoME) -> None:
    """Sanity check of the property above: changing *present* content must change the outputs."""
    mask = torch.tensor([[True, False], [True, True]])
    inputs = random_inputs(2)
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["image"] = changed["image"] + 1.0
    with torch.no_grad():
        assert not torch.equal(dmome(inputs, mask).logits, dmome(changed, mask).logits)


def test_dmome_expert_reuse_is_exact(dmome: DMoME) -> None:
    batch = 5
    inputs = random_inputs(batch)
    available = torch.ones(batch, M, dtype=torch.bool)
    masks = [_subset_mask(bits, batch) for bits in SUBSETS]
    masks.append(torch.tensor([[True, False], [False, True], [True, True], [False, True], [True, False]]))
    with torch.no_grad():
        experts = dmome.expert_logits(inputs, available)
        assert experts.shape == (batch, M, NUM_CLASSES)
        for mask in masks:
            reused = dmome.mix(experts, inputs, mask)
            direct = dmome(inputs, mask)
            assert torch.equal(reused.logits, direct.logits)
            assert reused.gate_weights is not None and direct.gate_weights is not None
            assert torch.equal(reused.gate_weights, direct.gate_weights)
        via_helper = outputs_for_subsets(dmome, inputs, available, masks)  # every subset in one call
        for mask, out in zip(masks, via_helper, strict=True):
            torch.testing.assert_close(out.logits, dmome(inputs, mask).logits, rtol=1e-5, atol=1e-6)


def test_dmome_mix_ignores_non_finite_expert_logits_of_missing_modalities(dmome: DMoME) -> None:
    inputs = random_inputs(3)
    available = torch.ones(3, M, dtype=torch.bool)
    image_only = _subset_mask(1, 3)
    with torch.no_grad():
        experts = dmome.expert_logits(inputs, available)
        poisoned = experts.clone()
        poisoned[0, 1] = float("nan")
        poisoned[1, 1] = float("inf")
        poisoned[2, 1] = -float("inf")
        clean_out = dmome.mix(experts, inputs, image_only)
        poisoned_out = dmome.mix(poisoned, inputs, image_only)
    assert torch.isfinite(poisoned_out.logits).all()
    assert torch.equal(clean_out.logits, poisoned_out.logits)


def test_dmome_logits_are_gate_weighted_expert_logits(dmome: DMoME) -> None:
    inputs = random_inputs(3)
    mask = torch.tensor([[True, True], [True, False], [False, True]])
    with torch.no_grad():
        out = dmome(inputs, mask)
        image_only = dmome.experts["image"](inputs["image"])
        audio_only = dmome.experts["audio"](inputs["audio"])
    assert out.gate_weights is not None
    w = out.gate_weights
    expected_full = w[0, 0] * image_only[0] + w[0, 1] * audio_only[0]
    torch.testing.assert_close(out.logits[0], expected_full)
    torch.testing.assert_close(out.logits[1], image_only[1])
    torch.testing.assert_close(out.logits[2], audio_only[2])


def test_dmome_gradients_reach_experts_and_gate() -> None:
    model = _build("simmlm").train()
    mask = torch.tensor([[True, True], [True, False]])
    model(random_inputs(2), mask).logits.sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
    assert any(p.grad.abs().sum() > 0 for p in model.gate.parameters())


def _dataset(n: int, available: torch.Tensor | None = None) -> TensorMultimodalDataset:
    mask = torch.ones(n, M, dtype=torch.bool) if available is None else available
    return TensorMultimodalDataset(random_inputs(n), mask, torch.randint(0, NUM_CLASSES, (n,)))


def test_predict_subsets_shapes_and_values(method: nn.Module) -> None:
    n = 7
    data = _dataset(n)
    preds = predict_subsets(method, data, batch_size=3)
    assert preds.subsets == SUBSETS
    assert preds.logits.shape == (len(SUBSETS), n, NUM_CLASSES)
    assert torch.equal(preds.targets, data.targets)
    assert preds.available.tolist() == [3] * n
    if preds.gate_weights is not None:
        assert preds.gate_weights.shape == (len(SUBSETS), n, M)
    inputs, mask, _ = data[list(range(n))]
    with torch.no_grad():
        for s, bits in enumerate(SUBSETS):
            direct = method(inputs, _subset_mask(bits, n) & mask)
            torch.testing.assert_close(preds.logits[s], direct.logits, rtol=1e-5, atol=1e-5)


def test_predict_subsets_restores_training_mode(dmome: DMoME) -> None:
    dmome.train()
    try:
        predict_subsets(dmome, _dataset(4), batch_size=4)
        assert dmome.training
    finally:
        dmome.eval()


def test_predict_subsets_with_given_subsets_and_partial_availability(dmome: DMoME) -> None:
    available = torch.tensor([[True, True], [True, False], [True, True], [True, False]])
    data = _dataset(4, available)
    preds = predict_subsets(dmome, data, subsets=[1, 3], batch_size=2)
    assert preds.logits.shape == (2, 4, NUM_CLASSES)
    assert preds.available.tolist() == [3, 1, 3, 1]
    assert preds.covered.tolist() == [[True] * 4, [True, False, True, False]]
    # a sample without audio has no prediction under image+audio (NaN), only under image
    assert torch.isnan(preds.logits[1, 1]).all() and torch.isnan(preds.logits[1, 3]).all()
    assert preds.gate_weights is not None and torch.isnan(preds.gate_weights[1, 1]).all()
    inputs, mask, _ = data[[0, 1, 2, 3]]
    with torch.no_grad():
        torch.testing.assert_close(preds.logits[1, [0, 2]], dmome(inputs, mask).logits[[0, 2]])
        torch.testing.assert_close(preds.logits[0], dmome(inputs, _subset_mask(1, 4)).logits)
    audio_only = predict_subsets(dmome, data, subsets=[2], batch_size=2)  # no longer raises
    assert audio_only.covered.tolist() == [[True, False, True, False]]
    assert torch.isfinite(audio_only.logits[0, [0, 2]]).all() and torch.isnan(audio_only.logits[0, [1, 3]]).all()


def test_expert_mixtures_intersect_every_subset_with_the_available_modalities(dmome: DMoME) -> None:
    """As MMP and DREAM do: a subset naming a modality the sample lacks is the subset of what the sample has."""
    inputs = random_inputs(4)
    available = torch.tensor([[True, False], [True, True], [False, True], [True, True]])
    both = torch.ones(4, M, dtype=torch.bool)
    poisoned = {k: v.clone() for k, v in inputs.items()}
    for m, name in enumerate(dmome.modalities):
        poisoned[name][~available[:, m]] = float("nan")  # what a sample lacks may hold anything
    with torch.no_grad():
        (out,) = outputs_for_subsets(dmome, poisoned, available, [both])
        (expected,) = outputs_for_subsets(dmome, inputs, available, [available])
    torch.testing.assert_close(out.logits, expected.logits)
    assert out.gate_weights is not None and torch.all(out.gate_weights[~available] == 0)


def test_gate_channels_other_than_the_output_channels_fail_at_build_time() -> None:
    shapes = {"image": (1, 28, 28), "audio": (1, 20, 20)}
    with pytest.raises(ValueError, match=r"gate_channels \(3\) must equal the experts' output channels \(10"):
        create_method("simmlm", input_shapes=shapes, num_classes=10, gate_channels=3)
    assert create_method("simmlm", input_shapes=shapes, num_classes=3, gate_channels=3) is not None


def test_a_subset_disjoint_from_a_samples_modalities_is_one_clear_error(method: nn.Module) -> None:
    """Every method: a subset that shares no modality with a sample has no prediction (before: NaN logits from the
    expert mixtures, a prediction from nothing from MMP, an error from DREAM only)."""
    available = torch.tensor([[True, False], [True, True]])
    audio = torch.tensor([[False, True], [False, True]])  # sample 0 has no audio
    with pytest.raises(ValueError, match="subset mask 0 has no modality that sample 0 has"):
        outputs_for_subsets(method, random_inputs(2), available, [audio])


def test_batch_norm_statistics_come_from_present_rows_only() -> None:
    """A BatchNorm expert in training mode never sees the zero-filled rows of samples lacking its modality: its running
    mean moves as if the batch held the present rows only (before: pulled toward 0 by the absent rows)."""
    torch.manual_seed(0)
    model = create_method("simmlm", input_shapes=INPUT_SHAPES, num_classes=NUM_CLASSES, expert="bncnn").train()
    image = MODALITIES[0]
    inputs = {k: v + 3.0 for k, v in random_inputs(8).items()}  # inputs far from 0: zero rows would stand out
    mask = torch.ones(8, M, dtype=torch.bool)
    mask[:6, 0] = False  # 75 % of the images absent
    alone = create_method("simmlm", input_shapes=INPUT_SHAPES, num_classes=NUM_CLASSES, expert="bncnn").train()
    alone.load_state_dict(model.state_dict())
    model.expert_logits(inputs, mask)
    alone.experts[image](inputs[image][6:])  # the two present rows alone
    bn = [m for m in model.experts[image].modules() if isinstance(m, nn.BatchNorm2d)][0]
    expected = [m for m in alone.experts[image].modules() if isinstance(m, nn.BatchNorm2d)][0]
    torch.testing.assert_close(bn.running_mean, expected.running_mean)
    torch.testing.assert_close(bn.running_var, expected.running_var)
    out = model.expert_logits(inputs, mask)
    assert torch.all(out[:6, 0] == 0) and torch.isfinite(out).all()
    none = torch.zeros(8, M, dtype=torch.bool)
    none[:, 1] = True
    assert torch.all(model.expert_logits(inputs, none)[:, 0] == 0)  # no image at all: an empty batch, no error


def test_a_method_describes_itself_in_the_benchmark_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """The protocol text names the expert mixtures and takes every other method's clause from its registry entry
    (a preset's note goes into its base method's clause when the benchmark runs it); smoke options are checked."""
    from simmlm.methods import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    builder = get_method("mmp").builder
    registry.register_method("solo", builder, "x", protocol="solo trains alone{presets}", smoke_options={"dim": 8})
    registry.register_method("solo_small", builder, "x", option_defaults={"dim": 4}, protocol="solo_small at dim 4")
    assert "solo" not in registry.expert_mixtures() and "simmlm" in registry.expert_mixtures()
    assert "solo trains alone" in registry.protocol_clauses(["simmlm"])
    assert "solo trains alone; solo_small at dim 4" in registry.protocol_clauses(["solo_small"])
    assert get_method("solo").smoke_options == {"dim": 8}
    with pytest.raises(ValueError, match="method_options of 'solo_typo': unknown option dimm"):
        registry.register_method("solo_typo", builder, "x", protocol="y", smoke_options={"dimm": 8})
    assert "solo_typo" not in registry.list_methods()
