"""MulT / MMSA sequence-feature pickles: layout, labels, simulated missingness and error messages."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from simmlm.data.base import TensorMultimodalDataset, make_loader
from simmlm.data.frames import SequenceFeatureDataset
from simmlm.datasets.seqfeatures.loader import load_seqfeatures

DIMS = {"text": 3, "audio": 4, "vision": 2}
T = 5
SPLIT_SIZES = {"train": 12, "valid": 8, "test": 6}


def _split(n: int, rng: np.random.Generator, frames: int = T) -> dict[str, Any]:
    # Features bounded away from 0, so a zero value always means "zeroed by the loader".
    content: dict[str, Any] = {
        name: (rng.uniform(0.5, 1.5, size=(n, frames, d)) * rng.choice([-1, 1], size=(n, frames, d)))
        for name, d in DIMS.items()
    }
    content["regression_labels"] = rng.uniform(-3, 3, size=n).astype(np.float32)
    content["id"] = np.array([f"clip{i}" for i in range(n)])
    return content


def _data(sizes: dict[str, int] | None = None, frames: int = T, seed: int = 0) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return {split: _split(n, rng, frames) for split, n in (sizes or SPLIT_SIZES).items()}


def _write(tmp_path: Path, data: Any, name: str = "mosi.pkl") -> Path:
    path = tmp_path / name
    with path.open("wb") as fh:
        pickle.dump(data, fh)
    return path


def _edited(tmp_path: Path, edit: Callable[[dict[str, Any]], object]) -> Path:
    """The default data, changed by ``edit``, written to ``edited.pkl``."""
    data = _data()
    edit(data)
    return _write(tmp_path, data, "edited.pkl")


def _frames(dataset: TensorMultimodalDataset) -> dict[str, torch.Tensor]:
    assert isinstance(dataset, SequenceFeatureDataset)
    return dataset.frame_masks


@pytest.fixture
def data() -> dict[str, dict[str, Any]]:
    return _data()


@pytest.fixture
def path(tmp_path: Path, data: dict[str, dict[str, Any]]) -> Path:
    return _write(tmp_path, data)


# ---------------------------------------------------------------- layout


def test_round_trip_shapes_and_values(path: Path, data: dict[str, dict[str, Any]]) -> None:
    splits = load_seqfeatures(path)
    assert splits.modalities == ["text", "audio", "vision"]
    assert splits.num_classes == 2
    for ours, theirs in (("train", "train"), ("val", "valid"), ("test", "test")):
        dataset = getattr(splits, ours)
        assert isinstance(dataset, SequenceFeatureDataset)
        assert len(dataset) == SPLIT_SIZES[theirs]
        for name, d in DIMS.items():
            assert dataset.inputs[name].shape == (SPLIT_SIZES[theirs], T, d)
            assert dataset.inputs[name].dtype == torch.float32
            np.testing.assert_allclose(dataset.inputs[name].numpy(), data[theirs][name], rtol=1e-6)
            assert _frames(dataset)[name].shape == (SPLIT_SIZES[theirs], T)
            assert _frames(dataset)[name].all()
        assert dataset.mask.all()
    inputs, mask, target = splits.train[0]
    assert set(inputs) == set(DIMS) and inputs["audio"].shape == (T, 4)
    assert mask.tolist() == [True, True, True] and target.dtype == torch.int64


def test_nan_to_num_replaces_nonfinite_values(tmp_path: Path) -> None:
    data = _data()
    data["train"]["audio"][0, 1, :] = -np.inf
    data["train"]["audio"][2, 0, 0] = np.nan
    data["test"]["vision"][1, 1, 1] = np.inf
    splits = load_seqfeatures(_write(tmp_path, data))
    audio = splits.train.inputs["audio"]
    assert torch.isfinite(audio).all()
    assert (audio[0, 1] == 0).all() and audio[2, 0, 0] == 0
    assert splits.test.inputs["vision"][1, 1, 1] == 0
    np.testing.assert_allclose(audio[1].numpy(), data["train"]["audio"][1], rtol=1e-6)
    assert "5 in train/audio" in splits.description and "1 in test/vision" in splits.description


def test_nonfinite_values_raise_without_nan_to_num(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda d: d["valid"]["audio"].__setitem__((0, 0, 0), -np.inf))
    with pytest.raises(ValueError, match=r"split 'valid'.*modality 'audio'.*non-finite"):
        load_seqfeatures(path, nan_to_num=False)


def test_input_arrays_are_not_modified(tmp_path: Path) -> None:
    data = _data()
    data["train"]["audio"] = data["train"]["audio"].astype(np.float32)
    data["train"]["audio"][0, 0, 0] = -np.inf
    path = _write(tmp_path, data)
    load_seqfeatures(path, intra_missing_ratio=0.5)
    with path.open("rb") as fh:
        assert np.isneginf(pickle.load(fh)["train"]["audio"][0, 0, 0])


@pytest.mark.parametrize("val_name", ["valid", "val", "dev"])
def test_validation_split_names(tmp_path: Path, val_name: str) -> None:
    data = _data()
    data[val_name] = data.pop("valid")
    splits = load_seqfeatures(_write(tmp_path, data))
    assert len(splits.val) == SPLIT_SIZES["valid"]
    assert f"validation split {val_name!r}" in splits.description


def test_custom_modality_keys(tmp_path: Path) -> None:
    data = _data()
    for content in data.values():
        content["text_bert"] = content.pop("text")
    splits = load_seqfeatures(_write(tmp_path, data), modalities=("vision", "text_bert"))
    assert splits.modalities == ["vision", "text_bert"]
    assert splits.train.inputs["text_bert"].shape == (12, T, 3)
    assert splits.train.mask.shape == (12, 2)


def test_description_names_what_was_loaded(path: Path) -> None:
    text = load_seqfeatures(path, task="classes7", missing_rate=0.25, intra_missing_ratio=0.4, seed=3).description
    for part in ("mosi.pkl", "train 12, val 8, test 6", "text (T=5, D=3)", "audio (T=5, D=4)", "vision (T=5, D=2)"):
        assert part in text
    for part in (
        "'regression_labels'",
        "classes7",
        "rate 0.25",
        "by split: train 0.4, val 0.4, test 0.4",
        "Seed 3",
        "No non-finite",
    ):
        assert part in text


def test_sequence_length_may_differ_between_splits(tmp_path: Path) -> None:
    data = _data()
    data["test"] = _data(frames=7)["test"]
    splits = load_seqfeatures(_write(tmp_path, data))
    assert splits.test.inputs["text"].shape[1] == 7
    assert "T=5/5/7" in splits.description


# ---------------------------------------------------------------- labels


def _with_labels(
    tmp_path: Path, scores: list[float], key: str = "regression_labels", shape: tuple[int, ...] = ()
) -> Path:
    data = _data({"train": len(scores), "valid": len(scores), "test": len(scores)})
    for content in data.values():
        del content["regression_labels"]
        content[key] = np.asarray(scores, dtype=np.float32).reshape(len(scores), *shape)
    return _write(tmp_path, data)


SCORES = [-3.4, -2.5, -0.5, 0.0, 0.49, 0.5, 1.5, 2.6, 3.7, -1e-3, 1e-3]


def test_binary_labels_positive_vs_non_positive(tmp_path: Path) -> None:
    splits = load_seqfeatures(_with_labels(tmp_path, SCORES), task="binary")
    assert splits.test.targets.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1]
    assert splits.num_classes == 2


def test_classes7_labels_round_half_to_even(tmp_path: Path) -> None:
    splits = load_seqfeatures(_with_labels(tmp_path, SCORES), task="classes7")
    assert splits.train.targets.tolist() == [0, 1, 3, 3, 3, 3, 5, 6, 6, 3, 3]
    assert splits.num_classes == 7


def test_regression_labels_are_float_scores(tmp_path: Path) -> None:
    splits = load_seqfeatures(_with_labels(tmp_path, SCORES, shape=(1,)), task="regression")
    assert splits.val.targets.dtype == torch.float32
    np.testing.assert_allclose(splits.val.targets.numpy(), SCORES, rtol=1e-6)
    assert splits.num_classes == 1


def test_mult_labels_key_is_detected(tmp_path: Path) -> None:
    splits = load_seqfeatures(_with_labels(tmp_path, SCORES, key="labels", shape=(1, 1)))
    assert splits.train.targets.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1]
    assert "'labels'" in splits.description


def test_explicit_label_key(tmp_path: Path) -> None:
    data = _data()
    for content in data.values():
        content["score"] = -content["regression_labels"]
    splits = load_seqfeatures(_write(tmp_path, data), label_key="score", task="regression")
    np.testing.assert_allclose(splits.train.targets.numpy(), -data["train"]["regression_labels"])


# ---------------------------------------------------------------- inter-modal missingness


def test_random_missing_rate_never_all_missing(tmp_path: Path) -> None:
    path = _write(tmp_path, _data({"train": 3000, "valid": 20, "test": 20}, frames=2))
    p = 0.4
    splits = load_seqfeatures(path, missing_rate=p, missing_modalities="random", seed=1)
    mask = splits.train.mask
    assert mask.any(1).all()
    expected = (p - p**3) / (1 - p**3)  # per-modality rate after redrawing all-missing samples
    rates = (~mask).float().mean(0)
    assert torch.allclose(rates, torch.full((3,), expected), atol=0.03), rates
    for m, name in enumerate(splits.modalities):
        missing = ~mask[:, m]
        assert (splits.train.inputs[name][missing] == 0).all()
        assert (splits.train.inputs[name][~missing] != 0).all()
        assert not _frames(splits.train)[name][missing].any()
        assert _frames(splits.train)[name][~missing].all()


def test_fixed_missing_modality(path: Path) -> None:
    splits = load_seqfeatures(path, missing_modalities=["audio"])
    for dataset in (splits.train, splits.val, splits.test):
        assert dataset.mask.tolist() == [[True, False, True]] * len(dataset)
        assert (dataset.inputs["audio"] == 0).all() and (dataset.inputs["text"] != 0).all()
    assert "audio dropped for every sample" in splits.description


# ---------------------------------------------------------------- intra-modal missingness


def test_intra_ratio_zeroes_frames_and_frame_masks_agree(path: Path, data: dict[str, dict[str, Any]]) -> None:
    splits = load_seqfeatures(path, intra_missing_ratio=0.4)  # round(0.4 * 5) = 2 of 5 frames per sequence
    for name in DIMS:
        frames = _frames(splits.train)[name]
        assert frames.dtype == torch.bool
        assert (frames.sum(1) == 3).all()
        zeroed = (splits.train.inputs[name] == 0).all(-1)
        assert torch.equal(zeroed, ~frames)
        kept = splits.train.inputs[name][frames].numpy()
        np.testing.assert_allclose(kept, data["train"][name][frames.numpy()], rtol=1e-6)
    assert splits.train.mask.all()


def test_intra_ratio_over_many_samples_and_with_dropped_modalities(tmp_path: Path) -> None:
    path = _write(tmp_path, _data({"train": 400, "valid": 10, "test": 10}, frames=20))
    splits = load_seqfeatures(path, intra_missing_ratio=0.25, missing_rate=0.3)
    for m, name in enumerate(splits.modalities):
        frames, present = _frames(splits.train)[name], splits.train.mask[:, m]
        assert (frames[present].sum(1) == 15).all()
        assert not frames[~present].any()
        # each frame position is dropped about equally often
        assert ((~frames[present]).float().mean(0) - 0.25).abs().max() < 0.12


def test_dataset_zero_fills_frames_and_works_with_loader() -> None:
    inputs = {"a": torch.ones(4, 3, 2), "b": torch.ones(4, 2, 5)}
    mask = torch.tensor([[True, True], [True, False], [False, True], [True, True]])
    frames = {"a": torch.tensor([[True, False, True]] * 4), "b": torch.ones(4, 2, dtype=torch.bool)}
    dataset = SequenceFeatureDataset(inputs, mask, torch.arange(4), frames)
    assert (dataset.inputs["a"][:, 1] == 0).all() and (dataset.inputs["a"][2] == 0).all()
    assert _frames(dataset)["b"][1].tolist() == [False, False]
    assert inputs["a"].all()  # the caller's tensors are untouched
    batch_inputs, batch_mask, batch_targets = next(iter(make_loader(dataset, batch_size=4, shuffle=False)))
    assert batch_inputs["b"].shape == (4, 2, 5) and batch_mask.shape == (4, 2) and len(batch_targets) == 4
    with pytest.raises(ValueError, match="frame mask of 'a'"):
        SequenceFeatureDataset(
            inputs, mask, torch.arange(4), {"a": torch.ones(4, 2, dtype=torch.bool), "b": frames["b"]}
        )
    with pytest.raises(ValueError, match="frame_masks has keys"):
        SequenceFeatureDataset(inputs, mask, torch.arange(4), {"a": frames["a"]})


# ---------------------------------------------------------------- determinism


def test_missingness_is_deterministic_given_seed(path: Path) -> None:
    def load(seed: int, ratio: float = 0.4) -> Any:
        return load_seqfeatures(path, missing_rate=0.3, intra_missing_ratio=ratio, seed=seed)

    a, b, c = load(0), load(0), load(1)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).mask, getattr(b, split).mask)
        for name in DIMS:
            assert torch.equal(getattr(a, split).inputs[name], getattr(b, split).inputs[name])
            assert torch.equal(_frames(getattr(a, split))[name], _frames(getattr(b, split))[name])
    assert not torch.equal(a.train.mask, c.train.mask)
    assert not torch.equal(_frames(a.train)["text"], _frames(c.train)["text"])
    # splits get their own draws
    assert not torch.equal(_frames(a.val)["text"], _frames(a.train)["text"][: len(a.val)])
    # the inter-modal draw does not depend on the intra-modal ratio
    assert torch.equal(load(0, ratio=0.0).train.mask, a.train.mask)


# ---------------------------------------------------------------- errors


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pkl does not exist"):
        load_seqfeatures(tmp_path / "nope.pkl")
    with pytest.raises(FileNotFoundError, match="is not a file"):
        load_seqfeatures(tmp_path)


def test_not_a_pickle_raises(tmp_path: Path) -> None:
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match=r"cannot read .*broken.pkl \(UnpicklingError.*or the .npz"):
        load_seqfeatures(path)
    path.write_bytes(pickle.dumps(_data())[:200])
    with pytest.raises(ValueError, match="truncated"):
        load_seqfeatures(path)


def test_wrong_top_level_and_split_types_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds a list"):
        load_seqfeatures(_write(tmp_path, [1, 2]))
    with pytest.raises(ValueError, match="split 'test' of .* is a list"):
        load_seqfeatures(_edited(tmp_path, lambda d: d.__setitem__("test", [1])))


def test_missing_or_ambiguous_split_raises(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"no 'valid' / 'val' / 'dev' split; its top-level keys are \['test', 'train'\]"
    ):
        load_seqfeatures(_edited(tmp_path, lambda d: d.pop("valid")))
    with pytest.raises(ValueError, match="no 'test' split"):
        load_seqfeatures(_edited(tmp_path, lambda d: d.pop("test")))
    with pytest.raises(ValueError, match=r"several validation splits \['valid', 'dev'\]"):
        load_seqfeatures(_edited(tmp_path, lambda d: d.__setitem__("dev", d["valid"])))


def test_missing_modality_key_lists_available_keys(path: Path) -> None:
    with pytest.raises(ValueError, match=r"split 'train'.*no modality key 'text_bert'; available keys: \['audio'"):
        load_seqfeatures(path, modalities=("text_bert", "audio"))


def test_missing_label_key_lists_available_keys(tmp_path: Path, path: Path) -> None:
    with pytest.raises(ValueError, match=r"no label key 'score'; available keys: \['audio', 'id'"):
        load_seqfeatures(path, label_key="score")
    no_labels = _edited(tmp_path, lambda d: [c.pop("regression_labels") for c in d.values()])
    with pytest.raises(ValueError, match=r"none of the label keys \['regression_labels', 'labels', 'label'\]"):
        load_seqfeatures(no_labels)


def test_labels_with_several_values_per_sample_raise(tmp_path: Path) -> None:
    path = _with_labels(tmp_path, [0.0] * 8, key="labels", shape=(1,))
    with path.open("rb") as fh:
        data = pickle.load(fh)
    data["train"]["labels"] = np.zeros((8, 4, 2))  # MulT's IEMOCAP layout
    with pytest.raises(ValueError, match=r"labels 'labels' have shape \(8, 4, 2\); expected one sentiment score"):
        load_seqfeatures(_write(tmp_path, data))


def test_nonfinite_labels_raise(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda d: d["test"]["regression_labels"].__setitem__(0, np.nan))
    with pytest.raises(ValueError, match="split 'test'.*non-finite"):
        load_seqfeatures(path)


def test_mismatched_sample_counts_raise(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda d: d["valid"].__setitem__("vision", d["valid"]["vision"][:5]))
    with pytest.raises(ValueError, match="split 'valid'.*modality 'vision' has 5 samples but labels"):
        load_seqfeatures(path)
    path = _edited(tmp_path, lambda d: d["train"].__setitem__("regression_labels", np.zeros(11)))
    with pytest.raises(ValueError, match="split 'train'.*has 12 samples but labels 'regression_labels' have 11"):
        load_seqfeatures(path)


def test_non_3d_and_non_numeric_arrays_raise(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda d: d["train"].__setitem__("audio", d["train"]["audio"].mean(-1)))
    with pytest.raises(ValueError, match=r"modality 'audio' must be a 3-D array \[N, T, D\], got shape \(12, 5\)"):
        load_seqfeatures(path)
    path = _edited(tmp_path, lambda d: d["train"].__setitem__("text", np.full((12, 5, 3), "x")))
    with pytest.raises(ValueError, match="modality 'text' must be numeric"):
        load_seqfeatures(path)


def test_feature_size_mismatch_between_splits_raises(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda d: d["test"].__setitem__("audio", np.ones((6, T, 7))))
    with pytest.raises(ValueError, match=r"modality 'audio' has a different feature size D per split"):
        load_seqfeatures(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "classes5"}, "task must be one of"),
        ({"missing_rate": 1.0}, r"missing_rate must be in \[0, 1\)"),
        ({"missing_rate": -0.1}, "missing_rate must be in"),
        ({"intra_missing_ratio": 1.5}, r"intra_missing_ratio must be in \[0, 1\]"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"modalities": "text"}, "modalities must be a sequence of keys"),
        ({"modalities": ("text", "text")}, "duplicates"),
        ({"missing_modalities": "audio"}, r"list of modality names such as \['audio'\]"),
        ({"missing_modalities": ["speech"]}, r"unknown modalities \['speech'\]"),
        ({"missing_modalities": ["text", "audio", "vision"]}, "drops every modality"),
        ({"missing_modalities": ["audio"], "missing_rate": 0.2}, "not both"),
    ],
)
def test_invalid_options_raise(path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_seqfeatures(path, **kwargs)


class _RunsCode:
    """What a crafted pickle holds: unpickling it calls ``Path.touch`` on a marker file (it could be anything)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    data = _data()
    data["train"]["id"] = _RunsCode(marker)  # type: ignore[assignment]
    evil = _write(tmp_path, data, "evil.pkl")
    with pytest.raises(ValueError, match=r"refusing .*evil\.pkl: it references pathlib.*nothing in the file was run"):
        load_seqfeatures(evil)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_feature_pickles_of_every_protocol_are_read(tmp_path: Path, protocol: int) -> None:
    from simmlm.data.feature_files import load_feature_pickle

    path = tmp_path / "mosi.pkl"
    path.write_bytes(pickle.dumps(_data(), protocol=protocol))
    loaded = load_feature_pickle(path)
    np.testing.assert_array_equal(loaded["train"]["text"], _data()["train"]["text"])
    assert list(loaded["test"]["id"]) == [f"clip{i}" for i in range(SPLIT_SIZES["test"])]


def test_the_npz_conversion_loads_to_the_same_splits(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from simmlm.cli import app

    data = _data()
    data["train"]["id"] = np.array([f"clip{i}".encode() for i in range(SPLIT_SIZES["train"])], dtype=object)
    data["train"]["ragged"] = [np.zeros(2), np.zeros(3)]  # not a plain array: left out, and said so
    source = _write(tmp_path, data)
    result = CliRunner().invoke(app, ["convert-features", str(source)])
    assert result.exit_code == 0, result.output
    assert "left out, not plain arrays: train/ragged" in result.output
    target = tmp_path / "mosi.npz"
    with np.load(target, allow_pickle=False) as arrays:  # nothing in it needs unpickling
        assert arrays["train/id"].tolist() == [f"clip{i}" for i in range(SPLIT_SIZES["train"])]
    for kwargs in ({}, {"missing_rate": 0.3, "intra_missing_ratio": 0.2, "seed": 3}):
        a, b = load_seqfeatures(source, **kwargs), load_seqfeatures(target, **kwargs)  # type: ignore[arg-type]
        for split in ("train", "val", "test"):
            x, y = getattr(a, split), getattr(b, split)
            assert torch.equal(x.mask, y.mask) and torch.equal(x.targets, y.targets)
            assert all(torch.equal(x.inputs[m], y.inputs[m]) for m in x.inputs)


def test_the_converter_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from simmlm.cli import app

    marker = tmp_path / "PWNED"
    data = _data()
    data["train"]["id"] = _RunsCode(marker)  # type: ignore[assignment]
    evil = _write(tmp_path, data, "evil.pkl")
    result = CliRunner().invoke(app, ["convert-features", str(evil)])
    assert result.exit_code == 2 and "refusing" in result.output and "nothing in the file was run" in result.output
    assert not marker.exists() and not (tmp_path / "evil.npz").exists()
