"""Property tests over every registered method, random modality counts, masks and batch sizes.

``test_methods.py`` checks the avMNIST shapes (M = 2) and that missing content never leaks; here M varies (2-4, one
image-like and several vector modalities), and for every method: output shapes, gate weights (0 for missing, summing
to 1), a sample's result not depending on the other samples of its batch, and the per-subset predictions of
``predict_subsets`` (real where the sample has the subset, NaN elsewhere).
"""

from __future__ import annotations

from functools import cache

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import check_gate_weights
from simmlm.data.base import TensorMultimodalDataset
from simmlm.evaluation.evaluate import classification_report
from simmlm.evaluation.inferers import predict_subsets
from simmlm.methods import create_method, get_method, list_methods
from simmlm.subsets import all_subsets, bits_to_mask, subset_name

NUM_CLASSES = 4
METHODS = list_methods()


def _shapes(num_modalities: int) -> dict[str, tuple[int, ...]]:
    return {f"m{i}": (1, 12, 12) if i == 0 else (2 + i,) for i in range(num_modalities)}


@cache
def _model(name: str, num_modalities: int) -> nn.Module:
    state = torch.random.get_rng_state()
    torch.manual_seed(7)
    options = get_method(name).smoke_options
    model = create_method(name, input_shapes=_shapes(num_modalities), num_classes=NUM_CLASSES, expert="auto", **options)
    torch.random.set_rng_state(state)
    return model.eval()


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, int, torch.Tensor, int]:
    name = draw(st.sampled_from(METHODS))
    num_modalities = draw(st.integers(2, 4))
    rows = draw(st.lists(st.integers(1, 2**num_modalities - 1), min_size=1, max_size=6))
    seed = draw(st.integers(0, 2**16))
    return name, num_modalities, bits_to_mask(torch.tensor(rows), num_modalities), seed


def _inputs(num_modalities: int, batch: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(batch, *s, generator=g) for k, s in _shapes(num_modalities).items()}


@settings(max_examples=25)
@given(case=_cases())
def test_shapes_and_gate_weights_for_any_mask_and_batch(case: tuple[str, int, torch.Tensor, int]) -> None:
    name, num_modalities, mask, seed = case
    with torch.no_grad():
        out = _model(name, num_modalities)(_inputs(num_modalities, len(mask), seed), mask)
    assert out.logits.shape == (len(mask), NUM_CLASSES)
    assert torch.isfinite(out.logits).all()
    check_gate_weights(out.gate_weights, mask)


@settings(max_examples=25)
@given(case=_cases(), data=st.data())
def test_a_samples_result_does_not_depend_on_the_rest_of_its_batch(
    case: tuple[str, int, torch.Tensor, int], data: st.DataObject
) -> None:
    name, num_modalities, mask, seed = case
    model = _model(name, num_modalities)
    inputs = _inputs(num_modalities, len(mask), seed)
    order = torch.tensor(data.draw(st.permutations(range(len(mask)))))
    with torch.no_grad():
        batched = model(inputs, mask)
        shuffled = model({k: v[order] for k, v in inputs.items()}, mask[order])
        i = data.draw(st.integers(0, len(mask) - 1))
        alone = model({k: v[[i]] for k, v in inputs.items()}, mask[[i]])
    torch.testing.assert_close(shuffled.logits, batched.logits[order], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone.logits[0], batched.logits[i], rtol=1e-4, atol=1e-5)
    if batched.gate_weights is not None:
        assert alone.gate_weights is not None
        torch.testing.assert_close(alone.gate_weights[0], batched.gate_weights[i], rtol=1e-4, atol=1e-5)


@settings(max_examples=15)
@given(case=_cases(), batch_size=st.integers(1, 4))
def test_predict_subsets_is_real_exactly_where_the_sample_has_the_subset(
    case: tuple[str, int, torch.Tensor, int], batch_size: int
) -> None:
    name, num_modalities, mask, seed = case
    model = _model(name, num_modalities)
    inputs = _inputs(num_modalities, len(mask), seed)
    targets = torch.arange(len(mask)) % NUM_CLASSES
    preds = predict_subsets(model, TensorMultimodalDataset(inputs, mask, targets), batch_size=batch_size)
    subsets = all_subsets(num_modalities)
    assert preds.logits.shape == (len(subsets), len(mask), NUM_CLASSES)
    for s, bits in enumerate(subsets):
        wanted = bits_to_mask(torch.full((len(mask),), bits), num_modalities)
        has = ~(wanted & ~mask).any(1)
        assert torch.equal(preds.covered[s], has)
        assert torch.isfinite(preds.logits[s][has]).all() and torch.isnan(preds.logits[s][~has]).all()
        if has.any():
            with torch.no_grad():
                direct = model({k: v[has] for k, v in inputs.items()}, wanted[has])
            torch.testing.assert_close(preds.logits[s][has], direct.logits, rtol=1e-4, atol=1e-5)
            if preds.gate_weights is not None:
                check_gate_weights(preds.gate_weights[s][has], wanted[has])
    report = classification_report(preds, list(_shapes(num_modalities)))
    for s, bits in enumerate(subsets):
        assert report["subsets"][subset_name(bits, list(_shapes(num_modalities)))]["samples"] == int(
            preds.covered[s].sum()
        )
