"""Data with missing modalities: stage 1 and stage 2 train only on what a sample has; subsets are evaluated over
the samples that have them; any number of modalities (M = 2, 3, 6) trains through the folder loader and engine."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from simmlm.data.base import Splits, TensorMultimodalDataset
from simmlm.datasets.folder.loader import load_folder
from simmlm.engine.config import RunConfig
from simmlm.engine.runs import build_model
from simmlm.engine.stages import CooperativeStage, ExpertStage
from simmlm.engine.train import quiet_lightning, train
from simmlm.evaluation.evaluate import classification_report
from simmlm.evaluation.inferers import SubsetPredictions, predict_subsets
from simmlm.methods import DMoME, get_method
from simmlm.metrics import accuracy, counterintuitive_rate, expected_calibration_error
from simmlm.subsets import all_subsets, mask_to_bits, subset_name
from test_folder_data import write_folder

SHAPES = {"a": (1, 12, 12), "b": (5,), "c": (3,)}


def _dataset(mask: list[list[bool]], seed: int = 0) -> TensorMultimodalDataset:
    g = torch.Generator().manual_seed(seed)
    n = len(mask)
    y = torch.arange(n) % 3
    inputs = {k: torch.randn(n, *s, generator=g) + y.view(-1, *[1] * len(s)) for k, s in SHAPES.items()}
    return TensorMultimodalDataset(inputs, torch.tensor(mask), y)


def _model() -> DMoME:
    torch.manual_seed(0)
    model = build_model(RunConfig.model_validate({"model": {"expert": "auto"}}), SHAPES, 3)
    assert isinstance(model, DMoME)
    return model.eval()


PARTIAL = [[True, True, False], [True, False, False], [False, True, True], [True, True, True], [False, False, True]] * 3


def test_report_scores_each_subset_on_the_samples_that_have_it() -> None:
    data, model = _dataset(PARTIAL), _model()
    preds = predict_subsets(model, data, batch_size=4)
    report = classification_report(preds, list(SHAPES))
    inputs, mask, y = data[list(range(len(data)))]
    for bits in preds.subsets:
        have = (mask_to_bits(mask) & bits) == bits
        entry = report["subsets"][subset_name(bits, list(SHAPES))]
        assert entry["samples"] == int(have.sum())
        subset = torch.tensor([[bool(bits >> m & 1) for m in range(3)]] * int(have.sum()))
        with torch.no_grad():
            probs = model({k: v[have] for k, v in inputs.items()}, subset).logits.softmax(-1)
        assert entry["accuracy"] == pytest.approx(accuracy(probs, y[have]).item())
        assert entry["ece"] == pytest.approx(expected_calibration_error(probs, y[have]).item(), abs=1e-6)
        weights = report["gate_weights"][subset_name(bits, list(SHAPES))]
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert report["average_accuracy"] == pytest.approx(
        sum(v["accuracy"] for v in report["subsets"].values()) / len(preds.subsets)
    )
    correct = (preds.logits.argmax(-1) == preds.targets).float().T
    expected_cr = counterintuitive_rate(correct, preds.subsets, preds.available).item()
    assert report["counterintuitive_rate"] == pytest.approx(expected_cr)


def test_subset_that_no_sample_has_is_nan_and_left_out_of_the_average() -> None:
    data = _dataset([[True, True, False], [True, False, False], [False, True, False]] * 2)  # nobody has c
    report = classification_report(predict_subsets(_model(), data), list(SHAPES))
    assert report["subsets"]["c"]["samples"] == 0 and math.isnan(report["subsets"]["c"]["accuracy"])
    assert math.isnan(report["subsets"]["a+b+c"]["ece"])
    real = [v["accuracy"] for v in report["subsets"].values() if v["samples"]]
    assert len(real) == 3 and report["average_accuracy"] == pytest.approx(sum(real) / 3)
    single = _dataset([[True, False, False], [False, True, False]])  # nobody has two modalities: no nested pair
    assert math.isnan(classification_report(predict_subsets(_model(), single), list(SHAPES))["counterintuitive_rate"])


def test_report_of_hand_made_predictions_ignores_uncovered_rows() -> None:
    logits = torch.full((3, 2, 2), float("nan"))
    logits[0] = torch.tensor([[5.0, 0.0], [0.0, 5.0]])  # subset 1: both samples have it, both right
    logits[1, 0] = torch.tensor([5.0, 0.0])  # subset 2: only sample 0 has it, right
    logits[2, 0] = torch.tensor([0.0, 5.0])  # subset 3: only sample 0 has it, wrong
    preds = SubsetPredictions([1, 2, 3], logits, None, torch.tensor([0, 1]), torch.tensor([3, 1]))
    report = classification_report(preds, ["x", "y"])
    assert report["subsets"]["x"]["accuracy"] == 1.0 and report["subsets"]["x"]["samples"] == 2
    y_only = report["subsets"]["y"]
    assert y_only["samples"] == 1 and y_only["accuracy"] == 1.0
    assert y_only["ece"] == pytest.approx(1 - math.exp(5) / (1 + math.exp(5)), rel=1e-4)
    assert report["subsets"]["x+y"]["accuracy"] == 0.0
    assert report["counterintuitive_rate"] == pytest.approx(1.0)  # sample 0: right with x and y, wrong with x+y


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_stage1_loss_uses_only_samples_that_have_the_modality() -> None:
    data, model = _dataset(PARTIAL), _model().train()
    stage = ExpertStage(model, data, 1e-3, 0.0, {})
    inputs, mask, y = data[list(range(len(data)))]
    torch.manual_seed(0)
    loss = stage.training_step((inputs, mask, y), 0)
    model.eval()
    with torch.no_grad():
        loss_eval = stage.training_step((inputs, mask, y), 0)
        expected = sum(
            F.cross_entropy(expert(inputs[name][mask[:, m]]), y[mask[:, m]])
            for m, (name, expert) in enumerate(model.experts.items())
        )
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss_eval, expected)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_stage2_pairs_stay_inside_each_samples_available_modalities(monkeypatch: pytest.MonkeyPatch) -> None:
    import simmlm.engine.stages as stages

    seen: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
    original = stages.outputs_for_subsets

    def spy(model, inputs, available, masks, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((available, list(masks)))
        return original(model, inputs, available, masks, *args, **kwargs)

    monkeypatch.setattr(stages, "outputs_for_subsets", spy)
    data, model = _dataset(PARTIAL), _model().train()
    stage = CooperativeStage(model, data, 1e-3, 0.0, {}, 0.1)
    for _ in range(20):
        stage.training_step(data[list(range(len(data)))], 0)
    for available, (plus, minus) in seen:
        assert not (plus & ~available).any() and not (minus & ~plus).any()
        assert minus.any(1).all()
        several = available.sum(1) > 1  # samples with >= 2 modalities get a strict pair
        assert ((plus != minus).any(1) == several).all()


def test_training_with_missing_modalities_in_every_split_selects_on_covered_samples() -> None:
    quiet_lightning()
    train_set = _dataset(PARTIAL * 2, seed=1)
    val = _dataset([[True, False, False], [True, True, False], [False, True, False]] * 2, seed=2)  # no c in val
    splits = Splits(train_set, val, _dataset(PARTIAL, seed=3), num_classes=3, description="partial")
    cfg = RunConfig.model_validate(
        {"model": {"expert": "auto"}, "train": {"batch_size": 8, "stage1": {"epochs": 2}, "stage2": {"epochs": 2}}}
    )
    result = train(cfg, splits, progress=False)
    assert set(result.selected["stage1"]) == {"a", "b"}  # c has no validation sample: it keeps its last epoch
    assert 0.0 <= result.selected["stage2"]["val_mean_score"] <= 1.0


@pytest.mark.parametrize(
    ("num_modalities", "method"),
    [(2, "simmlm"), (3, "simmlm"), (3, "late_fusion"), (3, "mmp"), (3, "dream"), (6, "simmlm"), (6, "mmp")],
)
def test_any_number_of_modalities_through_folder_and_engine(tmp_path: Path, num_modalities: int, method: str) -> None:
    quiet_lightning()
    shapes = {f"m{i}": (3,) if i % 2 else (12, 12) for i in range(num_modalities)}
    names = list(shapes)
    missing = {i: [names[i % num_modalities]] for i in range(0, 24, 3)}  # one modality missing in every third row
    root = write_folder(tmp_path / "d", shapes, splits=(24, 8, 8), num_classes=3, missing=missing)
    splits = load_folder(root)
    assert splits.modalities == names and not splits.train.mask.all()
    cfg = RunConfig.model_validate(
        {
            "method": method,
            "model": {"expert": "auto", "method_options": get_method(method).smoke_options},
            "train": {"batch_size": 12, "stage1": {"epochs": 1}, "stage2": {"epochs": 1}},
        }
    )
    result = train(cfg, splits, progress=False)
    report = classification_report(predict_subsets(result.model, splits.test), splits.modalities)
    assert len(report["subsets"]) == 2**num_modalities - 1 == len(all_subsets(num_modalities))
    assert all(0.0 <= v["accuracy"] <= 1.0 for v in report["subsets"].values())
