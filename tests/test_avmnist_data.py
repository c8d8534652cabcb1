"""avMNIST helpers (no MFCC extraction of real data) and the in-memory dataset / loader."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from simmlm.data.base import TensorMultimodalDataset, make_loader
from simmlm.datasets.avmnist.loader import check_files, read_idx, required_files, stratified_val_indices


def _write_idx(path: Path, array: np.ndarray, *, drop: int = 0) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    body = array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(header + body[: len(body) - drop])


# ---------------------------------------------------------------- read_idx


def test_read_idx_images(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    path = tmp_path / "images-idx3-ubyte.gz"
    _write_idx(path, images)
    out = read_idx(path)
    assert out.dtype == np.uint8
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, images)


def test_read_idx_labels(tmp_path: Path) -> None:
    labels = np.array([5, 0, 4, 1, 9, 2], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte.gz"
    _write_idx(path, labels)
    np.testing.assert_array_equal(read_idx(path), labels)


def test_read_idx_large_dimension_is_big_endian(tmp_path: Path) -> None:
    labels = np.arange(300) % 256
    path = tmp_path / "labels.gz"
    _write_idx(path, labels)
    assert read_idx(path).shape == (300,)


def test_read_idx_truncated_raises(tmp_path: Path) -> None:
    path = tmp_path / "short.gz"
    _write_idx(path, np.zeros((2, 3, 3), dtype=np.uint8), drop=4)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_read_idx_wrong_magic_raises(tmp_path: Path) -> None:
    path = tmp_path / "float.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + b"\x00" * 8)  # float32 IDX
    with pytest.raises(ValueError, match="unsigned-byte"):
        read_idx(path)


# ---------------------------------------------------------------- check_files


def test_check_files_empty_dir_names_missing_files_and_count(tmp_path: Path) -> None:
    expected_total = len(required_files(tmp_path))
    assert expected_total == 4 + 3 * 10 * 50
    with pytest.raises(FileNotFoundError) as info:
        check_files(tmp_path)
    message = str(info.value)
    assert f"{expected_total} of {expected_total}" in message
    assert "train-images-idx3-ubyte.gz" in message
    assert "more" in message


def test_check_files_counts_only_what_is_missing(tmp_path: Path) -> None:
    files = required_files(tmp_path)
    for f in files[:-3]:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    with pytest.raises(FileNotFoundError) as info:
        check_files(tmp_path)
    message = str(info.value)
    assert f"3 of {len(files)}" in message
    for f in files[-3:]:
        assert f.name in message
    assert "more" not in message
    for f in files[-3:]:
        f.touch()
    assert check_files(tmp_path) == files


# ---------------------------------------------------------------- stratified_val_indices


@pytest.mark.parametrize("fraction", [0.15, 0.3, 0.5])
def test_stratified_val_indices_per_class_counts(fraction: float) -> None:
    rng = np.random.default_rng(1)
    labels = rng.permutation(np.repeat(np.arange(5), [7, 10, 13, 21, 40]))
    idx = stratified_val_indices(labels, fraction, seed=0)
    assert len(np.unique(idx)) == len(idx)
    assert np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < len(labels)
    for c in range(5):
        n_c = int((labels == c).sum())
        assert int((labels[idx] == c).sum()) == round(fraction * n_c)


def test_stratified_val_indices_seeded() -> None:
    labels = np.repeat(np.arange(10), 30)
    a = stratified_val_indices(labels, 0.2, seed=0)
    b = stratified_val_indices(labels, 0.2, seed=0)
    c = stratified_val_indices(labels, 0.2, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_val_indices_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_val_indices(np.arange(10) % 2, fraction)


# ---------------------------------------------------------------- TensorMultimodalDataset / make_loader


def _data(n: int = 6) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    inputs = {"image": torch.randn(n, 1, 4, 4) + 5.0, "audio": torch.randn(n, 3) + 5.0}
    mask = torch.ones(n, 2, dtype=torch.bool)
    mask[1, 0] = False
    mask[3, 1] = False
    mask[4, 0] = False
    return inputs, mask, torch.arange(n)


def test_dataset_zero_fills_missing_content() -> None:
    inputs, mask, targets = _data()
    inputs["image"][1] = float("nan")
    inputs["audio"][3] = float("inf")
    ds = TensorMultimodalDataset(inputs, mask, targets)
    assert ds.modalities == ["image", "audio"]
    assert len(ds) == 6
    for m, name in enumerate(ds.modalities):
        for i in range(6):
            if mask[i, m]:
                assert torch.equal(ds.inputs[name][i], inputs[name][i])
            else:
                assert torch.all(ds.inputs[name][i] == 0)


def test_dataset_indexing_single_and_batch() -> None:
    inputs, mask, targets = _data()
    ds = TensorMultimodalDataset(inputs, mask, targets)
    x, m, y = ds[2]
    assert x["image"].shape == (1, 4, 4) and x["audio"].shape == (3,)
    assert m.tolist() == [True, True] and y.item() == 2
    xb, mb, yb = ds[[4, 0, 3]]
    assert xb["image"].shape == (3, 1, 4, 4) and xb["audio"].shape == (3, 3)
    assert mb.tolist() == [[False, True], [True, True], [True, False]]
    assert yb.tolist() == [4, 0, 3]


def test_dataset_rejects_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        TensorMultimodalDataset({"image": torch.zeros(0, 2)}, torch.zeros(0, 1, dtype=torch.bool), torch.zeros(0))


@pytest.mark.parametrize(
    "mask",
    [
        torch.ones(6, 3, dtype=torch.bool),  # too many columns
        torch.ones(5, 2, dtype=torch.bool),  # too few rows
        torch.ones(6, dtype=torch.bool),  # not 2-D
        torch.ones(6, 2, dtype=torch.int64),  # not bool
    ],
)
def test_dataset_rejects_bad_mask(mask: torch.Tensor) -> None:
    inputs, _, targets = _data()
    with pytest.raises(ValueError, match="mask"):
        TensorMultimodalDataset(inputs, mask, targets)


def test_dataset_rejects_mismatched_modality_length() -> None:
    inputs, mask, targets = _data()
    inputs["audio"] = inputs["audio"][:5]
    with pytest.raises(ValueError, match="audio"):
        TensorMultimodalDataset(inputs, mask, targets)


def test_make_loader_sequential_batches() -> None:
    inputs, mask, targets = _data(10)
    ds = TensorMultimodalDataset(inputs, mask, targets)
    batches = list(make_loader(ds, batch_size=4, shuffle=False))
    assert [len(b[2]) for b in batches] == [4, 4, 2]
    for x, m, y in batches:
        assert isinstance(x, dict) and set(x) == {"image", "audio"}
        assert x["image"].shape == (len(y), 1, 4, 4)
        assert x["audio"].shape == (len(y), 3)
        assert m.shape == (len(y), 2) and m.dtype == torch.bool
    assert torch.cat([b[2] for b in batches]).tolist() == list(range(10))
    first_x, first_m, _ = batches[0]
    assert torch.equal(first_x["image"], ds.inputs["image"][:4])
    assert torch.equal(first_m, mask[:4])


def test_make_loader_shuffle_is_a_seeded_permutation() -> None:
    inputs, mask, targets = _data(10)
    ds = TensorMultimodalDataset(inputs, mask, targets)
    order = [torch.cat([b[2] for b in make_loader(ds, 3, shuffle=True, seed=s)]).tolist() for s in (0, 0, 1)]
    assert sorted(order[0]) == list(range(10))
    assert order[0] == order[1]
    assert order[0] != order[2]
    # each batch keeps its rows aligned across modalities, mask and targets
    for x, m, y in make_loader(ds, 3, shuffle=True, seed=2):
        assert torch.equal(x["audio"], ds.inputs["audio"][y])
        assert torch.equal(m, mask[y])


def test_make_loader_number_of_batches() -> None:
    ds = TensorMultimodalDataset(*_data(8))
    assert len(make_loader(ds, 8, shuffle=False)) == 1
    assert len(make_loader(ds, 3, shuffle=True)) == 3


def test_message_mentions_where_to_point(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        check_files(tmp_path)


def _tone_wav(path: Path, seconds: float = 0.5, freq: float = 1800.0) -> Path:
    import soundfile

    t = np.arange(int(8000 * seconds)) / 8000
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 8000, subtype="PCM_16")
    return path


def test_literature_front_end_keeps_what_the_anti_alias_filter_removes(tmp_path: Path) -> None:
    """A 1.8 kHz tone lies above the 1.33 kHz Nyquist of the resampled signal: slicing folds it into the band
    (to 0.87 kHz), filtered decimation removes it, so the anti-aliased map carries almost no energy."""
    from simmlm.datasets.avmnist.loader import AUDIO_FRONTENDS, mfcc_map

    wav = _tone_wav(tmp_path / "tone.wav")
    literature, real = mfcc_map(wav, AUDIO_FRONTENDS["literature"])
    clean, real_clean = mfcc_map(wav, AUDIO_FRONTENDS["antialiased"])
    assert literature.shape == clean.shape == (20, 20) and real == real_clean == 3  # 1,334 samples, hop 512
    assert (literature[:, real:] == 0).all()  # zero-padded to 20 frames
    assert literature[0, :real].mean() > clean[0, :real].mean() + 100  # MFCC 0 ~ log energy


def test_front_end_options_each_change_the_map(tmp_path: Path) -> None:
    from simmlm.datasets.avmnist.loader import AUDIO_FRONTENDS, mfcc_map, resolve_frontend

    wav = _tone_wav(tmp_path / "tone.wav", freq=600.0)
    base = mfcc_map(wav, AUDIO_FRONTENDS["literature"])[0]
    for variant in (
        resolve_frontend("literature", mfcc_rate=8000 / 3),
        resolve_frontend("literature", pad_mode="constant"),
    ):
        assert not np.allclose(base, mfcc_map(wav, variant)[0])
    assert resolve_frontend("antialiased", pad_mode="reflect").resample == "decimate"
    with pytest.raises(ValueError, match="audio_frontend must be one of 'literature', 'antialiased'"):
        resolve_frontend("sliced")


def test_cache_name_depends_on_the_front_end(tmp_path: Path) -> None:
    from simmlm.datasets.avmnist.loader import AUDIO_FRONTENDS, fingerprint

    wav = _tone_wav(tmp_path / "tone.wav")
    names = {fingerprint([wav], frontend) for frontend in AUDIO_FRONTENDS.values()}
    assert len(names) == len(AUDIO_FRONTENDS)
