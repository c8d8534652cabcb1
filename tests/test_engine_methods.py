"""Every registered method trains through the engine and evaluates on every subset (tiny synthetic data)."""

from __future__ import annotations

import pytest
import torch

from conftest import synthetic_splits
from simmlm.engine.config import RunConfig
from simmlm.engine.runs import full_modality_flops
from simmlm.engine.train import quiet_lightning, train
from simmlm.evaluation.evaluate import classification_report
from simmlm.evaluation.inferers import predict_subsets
from simmlm.methods import DREAM, ExpertMixture, get_method, list_methods


@pytest.mark.parametrize("method", list_methods())
def test_method_trains_and_evaluates_on_every_subset(method: str) -> None:
    quiet_lightning()
    splits = synthetic_splits(40)
    cfg = RunConfig.model_validate(
        {
            "method": method,
            "model": {
                "expert": {"a": "lenet", "b": "mlp"},
                "method_options": get_method(method).smoke_options,
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
    from simmlm.engine.config import resolve_config

    default = resolve_config(RunConfig.model_validate({"method": method}))
    plugged = resolve_config(RunConfig.model_validate({"method": method, "train": {"mofe_lambda": 0.1}}))
    assert default.train.mofe_lambda == 0.0 and plugged.train.mofe_lambda == 0.1
    quiet_lightning()

    def run(lam: float) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        cfg = plugged.model_copy(
            update={
                "model": plugged.model.model_copy(update={"expert": {"a": "lenet", "b": "mlp"}}),
                "train": plugged.train.model_copy(
                    update={
                        "mofe_lambda": lam,
                        "batch_size": 16,
                        "stage1": plugged.train.stage1.model_copy(update={"epochs": 1}),
                        "stage2": plugged.train.stage2.model_copy(update={"epochs": 2}),
                    }
                ),
            }
        )
        result = train(cfg, synthetic_splits(40), progress=False)
        assert result.config.train.mofe_lambda == lam
        return result.model.state_dict(), result.mofe

    with_mofe, stats = run(0.1)
    without, stats_zero = run(0.0)
    # the hinge was active, so lambda changed the gradients: same seed, different weights
    assert stats["hinge_mean"] > 0 and stats["active_fraction"] > 0 and stats_zero["hinge_mean"] > 0
    assert any(not torch.equal(with_mofe[k], without[k]) for k in with_mofe)


def test_runs_without_progress_bars_log_one_line_per_epoch(caplog: pytest.LogCaptureFixture) -> None:
    quiet_lightning()
    cfg = RunConfig.model_validate(
        {
            "model": {"expert": {"a": "lenet", "b": "mlp"}},
            "train": {"batch_size": 16, "stage1": {"epochs": 2}, "stage2": {"epochs": 1}},
        }
    )
    with caplog.at_level("DEBUG", logger="simmlm"):
        train(cfg, synthetic_splits(40), progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("simmlm.")]
    heads = ["stage 1 (each expert alone)", "epoch 1/2", "epoch 2/2", "stage 2 (experts + gate)", "epoch 1/1"]
    assert [line.split(":")[0].strip() for line in lines] == heads
    assert "stage1/val_score_a" in lines[1] and "stage2/val_mean_score" in lines[4]
    # by default (INFO, what a piped benchmark prints) a stage's last epoch only; --verbose shows every epoch
    shown = [r.getMessage().split(":")[0].strip() for r in caplog.records if r.levelname == "INFO"]
    assert shown == ["stage 1 (each expert alone)", "epoch 2/2", "stage 2 (experts + gate)", "epoch 1/1"]


def test_one_stage_methods_log_one_stage_with_the_whole_budget(caplog: pytest.LogCaptureFixture) -> None:
    quiet_lightning()
    cfg = RunConfig.model_validate(
        {"method": "mmp", "train": {"batch_size": 16, "stage1": {"epochs": 1}, "stage2": {"epochs": 1}}}
    )
    with caplog.at_level("INFO", logger="simmlm"):
        train(cfg, synthetic_splits(40), progress=False)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("simmlm."))
    assert "one stage (no per-modality experts to train first): 2 epochs" in text
    assert "epoch 2/2: train/loss" in text and "stage2" not in text and "stage 1" not in text


def test_stage_two_can_train_the_experts_at_a_lower_rate() -> None:
    """``train.stage2.expert_lr_scale``: the experts in an Adam group of their own at ``lr`` times it, the gate at
    ``lr``; at 1 (the default) one group, as before the setting existed."""
    from simmlm.engine.stages import CooperativeStage
    from simmlm.methods import create_method

    model = create_method("simmlm", input_shapes={"a": (1, 12, 12), "b": (6,)}, num_classes=3, expert="mlp")
    split = CooperativeStage(model, None, 1e-3, 0.0, {}, 0.0, expert_lr_scale=0.1).configure_optimizers()
    experts = {id(p) for p in model.experts.parameters()}
    assert [g["lr"] for g in split.param_groups] == [1e-4, 1e-3]
    assert {id(p) for p in split.param_groups[0]["params"]} == experts
    assert not experts & {id(p) for p in split.param_groups[1]["params"]}
    assert sum(len(g["params"]) for g in split.param_groups) == len(list(model.parameters()))
    assert len(CooperativeStage(model, None, 1e-3, 0.0, {}, 0.0).configure_optimizers().param_groups) == 1


def test_settings_a_newer_simmlm_added_are_no_config_difference() -> None:
    """A run saved before ``expert_lr_scale`` existed had its default: resuming or guarding it finds no difference."""
    from simmlm.engine.config import config_differences

    current = RunConfig().model_dump(mode="json")
    older = RunConfig().model_dump(mode="json")
    for stage in ("stage1", "stage2"):
        del older["train"][stage]["expert_lr_scale"]
    assert config_differences(older, current) == []
    changed = RunConfig.model_validate({"train": {"stage2": {"epochs": 30, "expert_lr_scale": 0.1}}})
    assert config_differences(older, changed.model_dump(mode="json")) == ["train.stage2.expert_lr_scale"]
