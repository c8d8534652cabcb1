"""Devices and arithmetic: every method and the engine on the test device (``SIMMLM_TEST_DEVICE``, the CPU by
default), mixed precision (bfloat16 on the CPU), and CUDA's pinned batches."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

from conftest import INPUT_SHAPES, NUM_CLASSES, TEST_DEVICE, check_gate_weights, synthetic_splits
from simmlm.data.base import make_loader
from simmlm.engine.config import RunConfig
from simmlm.engine.train import pin_on_cuda, quiet_lightning, to_channels_last, train
from simmlm.evaluation.evaluate import classification_report
from simmlm.evaluation.inferers import predict_subsets
from simmlm.methods import create_method, list_methods
from simmlm.methods.base import outputs_for_subsets
from simmlm.subsets import all_subsets, bits_to_mask


@pytest.mark.parametrize("method", list_methods())
def test_every_method_trains_and_predicts_every_subset_on_the_test_device(method: str) -> None:
    model = create_method(method, input_shapes=INPUT_SHAPES, num_classes=NUM_CLASSES).to(TEST_DEVICE)
    inputs = {k: torch.randn(8, *s, device=TEST_DEVICE) for k, s in INPUT_SHAPES.items()}
    mask = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1]] * 2, dtype=torch.bool, device=TEST_DEVICE)
    target = torch.arange(8, device=TEST_DEVICE) % NUM_CLASSES
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    out = model(inputs, mask)
    loss = torch.nn.functional.cross_entropy(out.logits, target) + sum(out.aux_losses.values())
    loss.backward()
    optimizer.step()
    assert out.logits.device == TEST_DEVICE and torch.isfinite(loss)
    model.eval()
    subsets = [bits_to_mask(torch.full((8,), bits, device=TEST_DEVICE), 2) & mask for bits in all_subsets(2)]
    with torch.no_grad():
        outs = outputs_for_subsets(model, inputs, mask, [s for s in subsets if s.any(1).all()])
    for o, s in zip(outs, [s for s in subsets if s.any(1).all()], strict=True):
        assert o.logits.device == TEST_DEVICE and torch.isfinite(o.logits).all()
        if o.gate_weights is not None:
            check_gate_weights(o.gate_weights, s)


def _tiny(precision: str = "32", accelerator: str = "cpu") -> RunConfig:
    return RunConfig.model_validate(
        {
            "model": {"expert": {"a": "lenet", "b": "mlp"}},
            "train": {
                "batch_size": 16,
                "precision": precision,
                "accelerator": accelerator,
                "stage1": {"epochs": 2},
                "stage2": {"epochs": 2},
            },
        }
    )


def test_the_engine_trains_and_evaluates_on_the_test_device() -> None:
    quiet_lightning()
    splits = synthetic_splits(40)
    result = train(_tiny(accelerator="gpu" if TEST_DEVICE.type == "cuda" else "cpu"), splits, progress=False)
    report = classification_report(predict_subsets(result.model.to(TEST_DEVICE), splits.test), splits.modalities)
    assert set(report["subsets"]) == {"a", "b", "a+b"} and 0 <= report["average_accuracy"] <= 1


def test_bfloat16_mixed_precision_trains_on_the_cpu() -> None:
    """``train.precision: bf16-mixed`` is applied (the weights differ from 32-bit training with the same seed), the
    weights stay float32 and the evaluation (32-bit) is finite."""
    quiet_lightning()
    splits = synthetic_splits(40)
    mixed = train(_tiny("bf16-mixed"), splits, progress=False)
    full = train(_tiny("32"), splits, progress=False)
    weights = mixed.model.state_dict()
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())
    assert any(not torch.equal(weights[k], v) for k, v in full.model.state_dict().items())
    assert mixed.config.train.precision == "bf16-mixed"
    preds = predict_subsets(mixed.model, splits.test)
    assert all(torch.isfinite(logits).all() for logits in preds.logits)


def test_float16_mixed_precision_on_the_cpu_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="16-mixed needs a GPU.*bf16-mixed"):
        train(_tiny("16-mixed"), synthetic_splits(40), progress=False, checkpoint_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_batches_are_pinned_on_cuda_only() -> None:
    splits = synthetic_splits(40)
    on_cpu, on_cuda = (make_loader(splits.train, 16, shuffle=True) for _ in range(2))
    pin_on_cuda(on_cpu, SimpleNamespace(accelerator=CPUAccelerator()))  # type: ignore[arg-type]
    pin_on_cuda(on_cuda, SimpleNamespace(accelerator=CUDAAccelerator()))  # type: ignore[arg-type]
    assert not on_cpu.pin_memory and on_cuda.pin_memory


def test_precision_is_one_of_three_and_32_may_be_a_number() -> None:
    assert RunConfig.model_validate({"train": {"precision": 32}}).train.precision == "32"
    for wrong in (16, "bf16", "64-true", True):
        with pytest.raises(ValueError, match="precision"):
            RunConfig.model_validate({"train": {"precision": wrong}})


def test_channels_last_changes_the_layout_of_convolutions_only_not_their_outputs() -> None:
    """2-D and 3-D convolution weights become channels-last (linear layers and biases keep theirs), and the experts
    compute the same outputs up to float rounding, on the test device."""
    from simmlm.nn.experts import build_experts

    shapes = {"slice": (2, 16, 16), "volume": (1, 8, 8, 8)}
    options = {"channels": [4, 8], "strides": [2], "num_res_units": 1}
    torch.manual_seed(0)
    experts = torch.nn.ModuleDict(build_experts(shapes, 3, {"slice": "unet2d", "volume": "unet3d"}, options))
    experts.to(TEST_DEVICE).eval()
    inputs = {name: torch.randn(2, *shape, device=TEST_DEVICE) for name, shape in shapes.items()}
    with torch.no_grad():
        before = {name: expert(inputs[name]) for name, expert in experts.items()}
        to_channels_last(experts)
        after = {name: expert(inputs[name]) for name, expert in experts.items()}
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    weights = [p for p in experts.parameters() if p.ndim in formats]
    assert {p.ndim for p in weights} == {4, 5}
    assert all(p.is_contiguous(memory_format=formats[p.ndim]) for p in weights)
    # (a weight of one input channel, or of a 1x1 kernel, is both)
    assert all(not p.is_contiguous() for p in weights if p.shape[1] > 1 and p.shape[2:].numel() > 1)
    assert all(p.is_contiguous() for p in experts.parameters() if p.ndim < 4)
    for name in shapes:
        torch.testing.assert_close(after[name], before[name], rtol=1e-4, atol=1e-5)
