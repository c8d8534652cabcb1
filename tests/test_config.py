"""Run configuration: strict YAML loading and dotted overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simmlm.engine.config import ConfigError, RunConfig, load_config


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_without_file() -> None:
    cfg = load_config(None)
    assert isinstance(cfg, RunConfig)
    assert cfg.method == "simmlm"
    assert cfg.train.stage1.epochs == 40
    assert cfg.train.stage2.epochs == 30
    assert cfg.train.mofe_lambda is None


def test_yaml_values_are_read(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "method": "dmome",
            "data": {"val_fraction": 0.2, "audio_scaling": "minmax"},
            "model": {"gate_channels": 3},
            "train": {"seed": 7, "stage2": {"epochs": 2, "lr": 0.01}, "augment": {"image": {"kind": "affine"}}},
        },
    )
    cfg = load_config(path)
    assert cfg.method == "dmome"
    assert cfg.data.val_fraction == 0.2
    assert cfg.data.audio_scaling == "minmax"
    assert cfg.model.gate_channels == 3
    assert cfg.train.seed == 7
    assert cfg.train.stage2.epochs == 2
    assert cfg.train.stage2.lr == 0.01
    assert cfg.train.augment["image"].kind == "affine"


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == load_config(None)


@pytest.mark.parametrize(
    "data",
    [
        {"unknown_top_level": 1},
        {"train": {"epochs": 3}},  # epochs belongs to a stage
        {"train": {"stage1": {"epochs": 3, "momentum": 0.9}}},
        {"data": {"datadir": "/tmp"}},
        {"train": {"augment": {"image": {"kind": "affine", "angle": 5}}}},
    ],
)
def test_unknown_key_is_an_error(tmp_path: Path, data: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_config(_write(tmp_path, data))


@pytest.mark.parametrize(
    "data",
    [
        {"train": {"seed": "three"}},
        {"train": {"batch_size": 0}},
        {"train": {"stage2": {"epochs": -1}}},
        {"train": {"stage2": {"epochs": 5, "lr": "fast"}}},
        {"train": {"mofe_lambda": -0.1}},
        {"train": {"mofe_views": "mixed"}},
        {"data": {"val_fraction": 1.5}},
        {"data": {"dataset": "mnist"}},
        {"model": {"gate_width": 0}},
        {"train": {"stage1": 40}},
    ],
)
def test_wrong_type_or_value_is_an_error(tmp_path: Path, data: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_config(_write(tmp_path, data))


def test_non_mapping_yaml_raises(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(path)


def test_dotted_overrides_apply(tmp_path: Path) -> None:
    path = _write(tmp_path, {"train": {"seed": 1, "stage2": {"epochs": 30, "lr": 0.002}}})
    cfg = load_config(path, {"train.seed": 3, "train.stage2.epochs": 5, "method": "dmome"})
    assert cfg.train.seed == 3
    assert cfg.train.stage2.epochs == 5
    assert cfg.train.stage2.lr == 0.002  # sibling keys from the file are kept
    assert cfg.method == "dmome"


def test_dotted_overrides_create_missing_sections() -> None:
    cfg = load_config(None, {"train.stage1.epochs": 2, "model.gate_hidden": 8})
    assert cfg.train.stage1.epochs == 2
    assert cfg.train.stage1.lr == 1e-3
    assert cfg.model.gate_hidden == 8


def test_overrides_are_validated_too() -> None:
    with pytest.raises(ConfigError):
        load_config(None, {"train.sede": 3})
    with pytest.raises(ConfigError):
        load_config(None, {"train.stage2.epochs": "many"})


def test_default_sections_are_not_shared_between_configs() -> None:
    first = load_config(None)
    first.train.stage1.epochs = 99
    first.model.expert_options["dropout"] = 0.5
    second = load_config(None)
    assert second.train.stage1.epochs == 40
    assert second.model.expert_options == {}


def test_each_dataset_has_its_own_section_and_other_options_fail_at_load() -> None:
    from simmlm.datasets.avmnist import AvmnistData
    from simmlm.datasets.brats import BratsData
    from simmlm.datasets.folder import FolderData

    assert isinstance(load_config(None).data, AvmnistData)  # no dataset key: avMNIST
    assert isinstance(load_config(None, {"data.dataset": "folder"}).data, FolderData)
    assert isinstance(load_config(None, {"data.dataset": "brats"}).data, BratsData)
    with pytest.raises(ValueError, match="audio_scaling"):  # an avMNIST option on a folder dataset
        load_config(None, {"data.dataset": "folder", "data.audio_scaling": "minmax"})
    with pytest.raises(ValueError, match="manifets"):  # a typo
        load_config(None, {"data.dataset": "folder", "data.manifets": "m.csv"})
    with pytest.raises(ValueError, match="data.dataset: unknown dataset 'cifar'; choose one of avmnist, brats, folder"):
        load_config(None, {"data.dataset": "cifar"})


def test_method_options_are_checked_against_the_method_at_load() -> None:
    cfg = load_config(None, {"method": "mmp", "model.method_options": {"dim": 16, "heads": 2}})
    assert cfg.model.method_options == {"dim": 16, "heads": 2}
    with pytest.raises(
        ValueError,
        match="method_options of 'mmp': unknown option dimm \\(did you mean dim\\?\\).*its options: dim, num_agg",
    ):
        load_config(None, {"method": "mmp", "model.method_options": {"dimm": 16}})
    with pytest.raises(ValueError, match="method_options of 'dream': depth"):
        load_config(None, {"method": "dream", "model.method_options": {"depth": "deep"}})
    with pytest.raises(ValueError, match="method_options of 'simmlm'.*its options: reliability"):
        load_config(None, {"method": "simmlm", "model.method_options": {"dim": 16}})
    with pytest.raises(ValueError, match="unknown method 'simlm'"):
        load_config(None, {"method": "simlm"})


def test_gate_options_reach_only_methods_with_a_gate() -> None:
    from simmlm.methods import create_method, get_method

    assert get_method("simmlm").gate and get_method("dream").gate
    assert not get_method("late_fusion").gate and not get_method("mmp").gate
    shapes = {"a": (1, 12, 12), "b": (6,)}
    for method in ("late_fusion", "mmp"):  # accepted and dropped, not passed to a builder that has no gate
        create_method(method, input_shapes=shapes, num_classes=3, expert="auto", gate_channels=3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.epoch": 3}, "unknown key train.epoch (did you mean train.stage1.epochs or train.stage2.epochs?)"),
        ({"train.sede": 3}, "unknown key train.sede (did you mean train.seed?); the keys here are: seed, batch_size"),
        (
            {"data.dataset": "folder", "data.manifets": "m.csv"},
            "unknown key data.manifets (did you mean data.manifest?)",
        ),
        ({"trian.seed": 1}, "unknown key trian (did you mean train?)"),
        ({"model.expert": "cnn"}, "model.expert: unknown expert kind 'cnn'; choose one of auto, lenet"),
        ({"model.expert": {"image": "lenet", "audio": "resnet"}}, "unknown expert kind 'resnet'"),
        ({"train.stage2.epochs": "many"}, "train.stage2.epochs: Input should be a valid integer"),
    ],
)
def test_config_errors_name_the_key_and_suggest_the_nearest(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    assert message in str(caught.value)
    assert "Extra inputs are not permitted" not in str(caught.value) and "pydantic" not in str(caught.value)


def test_frame_missing_on_avmnist_needs_the_sequence_layout() -> None:
    from simmlm.datasets.avmnist import AvmnistData

    with pytest.raises(ValueError, match="needs layout: sequences"):
        AvmnistData(frame_missing=0.3)
    data = AvmnistData(layout="sequences", frame_missing=0.3, frame_missing_splits=("test",))
    assert data.frame_ratios() == {"test": 0.3}
