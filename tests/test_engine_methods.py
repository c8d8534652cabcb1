"""Every registered method trains through the engine and evaluates on every subset (tiny synthetic data)."""

from __future__ import annotations

import pytest
import torch

from simmlm.benchmark import full_modality_flops
from simmlm.data.base import Splits, TensorMultimodalDataset
from simmlm.engine.config import RunConfig
from simmlm.engine.train import quiet_lightning, train
from simmlm.evaluate import classification_report
from simmlm.methods import DREAM, ExpertMixture, list_methods
from simmlm.methods.predict import predict_subsets


def _splits() -> Splits:
    g = torch.Generator().manual_seed(0)

    def part(n: int) -> TensorMultimodalDataset:
        y = torch.randint(0, 3, (n,), generator=g)
        return TensorMultimodalDataset(
            {"a": torch.randn(n, 1, 12, 12, generator=g) + y.view(-1, 1, 1, 1), "b": torch.randn(n, 6, generator=g)},
            torch.ones(n, 2, dtype=torch.bool),
            y,
        )

    return Splits(part(40), part(16), part(16), num_classes=3, description="synthetic")


@pytest.mark.parametrize("method", list_methods())
def test_method_trains_and_evaluates_on_every_subset(method: str) -> None:
    quiet_lightning()
    splits = _splits()
    cfg = RunConfig.model_validate(
        {
            "method": method,
            "model": {
                "expert": {"a": "lenet", "b": "mlp"},
                "method_options": {"dim": 16} if method in ("mmp", "dream") else {},
            },
            "train": {"batch_size": 16, "stage1": {"epochs": 1}, "stage2": {"epochs": 1}},
        }
    )
    result = train(cfg, splits, progress=False)
    assert result.train_seconds > 0
    assert "stage2" in result.selected
    assert ("stage1" in result.selected) == isinstance(result.model, ExpertMixture)
    if isinstance(result.model, DREAM):
        assert result.selected["scorer"]["method"] == "late_fusion"
        assert result.model.prediction_cache is None  # the training-set cache is dropped after training
    report = classification_report(predict_subsets(result.model, splits.test), splits.modalities)
    assert set(report["subsets"]) == {"a", "b", "a+b"}
    assert 0.0 <= report["average_accuracy"] <= 1.0
    assert full_modality_flops(result.model, splits) > 0  # the benchmark counts FLOPs of every method


@pytest.mark.parametrize("method", ["late_fusion", "mmp"])
def test_mofe_is_a_plug_in_for_other_methods(method: str) -> None:
    from simmlm.engine.train import resolve_config

    default = resolve_config(RunConfig.model_validate({"method": method}))
    plugged = resolve_config(RunConfig.model_validate({"method": method, "train": {"mofe_lambda": 0.1}}))
    assert default.train.mofe_lambda == 0.0 and plugged.train.mofe_lambda == 0.1
    quiet_lightning()
    cfg = plugged.model_copy(
        update={
            "model": plugged.model.model_copy(update={"expert": {"a": "lenet", "b": "mlp"}}),
            "train": plugged.train.model_copy(
                update={
                    "batch_size": 16,
                    "stage1": plugged.train.stage1.model_copy(update={"epochs": 1}),
                    "stage2": plugged.train.stage2.model_copy(update={"epochs": 1}),
                }
            ),
        }
    )
    result = train(cfg, _splits(), progress=False)
    assert result.config.train.mofe_lambda == 0.1
    assert result.mofe["active_fraction"] >= 0.0 and result.mofe["hinge_mean"] >= 0.0


def test_runs_without_progress_bars_log_one_line_per_epoch(caplog: pytest.LogCaptureFixture) -> None:
    quiet_lightning()
    cfg = RunConfig.model_validate(
        {
            "model": {"expert": {"a": "lenet", "b": "mlp"}},
            "train": {"batch_size": 16, "stage1": {"epochs": 2}, "stage2": {"epochs": 1}},
        }
    )
    with caplog.at_level("INFO", logger="simmlm"):
        train(cfg, _splits(), progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "simmlm"]
    assert [line.split(":")[0].strip() for line in lines] == ["epoch 1/2", "epoch 2/2", "epoch 1/1"]
    assert "stage1/val_score_a" in lines[0] and "stage2/val_mean_score" in lines[2]
