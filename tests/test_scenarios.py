"""Robustness scenarios (simmlm.data.scenarios): dropping and corrupting a modality, on small hand-made datasets."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from simmlm.data.base import TensorMultimodalDataset
from simmlm.data.scenarios import CORRUPTIONS, corrupt, corruption_scale, drop_modality

N = 20
SHAPES = {"image": (1, 8, 8), "vector": (6,), "sequence": (5, 4)}
SEVERITY = {"noise": 0.5, "occlude": 0.5, "band": 0.5, "zeros": 0.0}


def make_mask() -> torch.Tensor:
    """Every modality is missing somewhere; rows 1, 2 and 9 have the image only; no row is all-missing."""
    i = torch.arange(N)
    mask = torch.stack([i % 5 != 0, i % 3 != 0, i % 4 != 1], dim=1)
    mask[[1, 2], 1:] = False
    return mask


def make_dataset(fill: str = "random", dtype: torch.dtype = torch.float32) -> TensorMultimodalDataset:
    """N samples of an image [1, 8, 8], a vector [6] and a sequence [5, 4]; content all ones or shifted noise."""
    generator = torch.Generator().manual_seed(123)
    if fill == "ones":
        inputs = {name: torch.ones(N, *shape, dtype=dtype) for name, shape in SHAPES.items()}
    else:  # never zero, and a mean far from 0 so that zero-filled absent samples would change the std
        inputs = {name: (torch.randn(N, *shape, generator=generator) + 3).to(dtype) for name, shape in SHAPES.items()}
    return TensorMultimodalDataset(inputs, make_mask(), torch.arange(N) % 3)


def present(dataset: TensorMultimodalDataset, modality: str) -> torch.Tensor:
    return dataset.mask[:, dataset.modalities.index(modality)]


def changed_rows(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Bool [N]: the samples whose content differs."""
    return (before != after).flatten(1).any(1)


def expected_count(fraction: float, candidates: int) -> int:
    return math.floor(fraction * candidates + 0.5)


@pytest.mark.parametrize("modality", list(SHAPES))
@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_keeps_mask_absent_zeros_and_other_modalities(kind: str, modality: str) -> None:
    dataset = make_dataset()
    out = corrupt(dataset, modality, kind, SEVERITY[kind], fraction=1.0, seed=3)
    assert out is not dataset
    assert out.mask.dtype == torch.bool and torch.equal(out.mask, dataset.mask)
    assert torch.equal(out.targets, dataset.targets)
    absent = ~present(dataset, modality)
    assert absent.any() and (out.inputs[modality][absent] == 0).all()
    for other in SHAPES:
        if other != modality:
            assert torch.equal(out.inputs[other], dataset.inputs[other])
    # with fraction 1 every present sample is corrupted
    assert torch.equal(changed_rows(dataset.inputs[modality], out.inputs[modality]), present(dataset, modality))


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_exact_count_among_present(kind: str, fraction: float) -> None:
    dataset = make_dataset()
    has = present(dataset, "image")
    out = corrupt(dataset, "image", kind, SEVERITY[kind], fraction=fraction, seed=1)
    changed = changed_rows(dataset.inputs["image"], out.inputs["image"])
    assert int(changed.sum()) == expected_count(fraction, int(has.sum()))
    assert not (changed & ~has).any()


def test_counts_round_half_up() -> None:
    dataset = make_dataset()
    has = int(present(dataset, "vector").sum())  # 11 samples have the vector
    assert has == 11
    out = corrupt(dataset, "vector", "zeros", 0.0, fraction=0.5, seed=0)  # 5.5 -> 6 (round() would give 6 too)
    assert int(changed_rows(dataset.inputs["vector"], out.inputs["vector"]).sum()) == 6
    out = corrupt(dataset, "image", "zeros", 0.0, fraction=0.5 / 16 * 5, seed=0)  # 16 present: 2.5 -> 3, not 2
    assert int(changed_rows(dataset.inputs["image"], out.inputs["image"]).sum()) == 3


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_seeded(kind: str) -> None:
    dataset = make_dataset()
    first = corrupt(dataset, "image", kind, SEVERITY[kind], fraction=0.3, seed=7)
    again = corrupt(dataset, "image", kind, SEVERITY[kind], fraction=0.3, seed=7)
    other = corrupt(dataset, "image", kind, SEVERITY[kind], fraction=0.3, seed=8)
    assert torch.equal(first.inputs["image"], again.inputs["image"])
    chosen = changed_rows(dataset.inputs["image"], first.inputs["image"])
    assert not torch.equal(chosen, changed_rows(dataset.inputs["image"], other.inputs["image"]))


def zero_block(sample: torch.Tensor) -> tuple[int, int, int]:
    """(zeroed entries, bounding-box height, bounding-box width) of the zeros of a 2-D sample."""
    rows, cols = (sample == 0).nonzero(as_tuple=True)
    if len(rows) == 0:
        return 0, 0, 0
    return len(rows), int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize(
    ("modality", "severity", "side"),
    [("image", 0.25, (4, 4)), ("image", 0.5, (6, 6)), ("image", 1.0, (8, 8)), ("sequence", 0.5, (4, 3))],
)
def test_occlude_covers_requested_block(modality: str, severity: float, side: tuple[int, int]) -> None:
    dataset = make_dataset("ones")
    out = corrupt(dataset, modality, "occlude", severity, seed=0)
    has = present(dataset, modality)
    corrupted = out.inputs[modality][has].reshape(int(has.sum()), *SHAPES[modality][-2:])
    corners = set()
    for sample in corrupted:
        count, height, width = zero_block(sample)
        assert (count, height, width) == (side[0] * side[1], *side)  # a full rectangle of the requested sides
        zero = (sample == 0).nonzero()
        corners.add(tuple(zero.min(0).values.tolist()))
    assert abs(side[0] * side[1] / corrupted[0].numel() - severity) < 0.1
    if severity < 1:
        assert len(corners) > 1  # the position is drawn per sample


@pytest.mark.parametrize("kind", ["occlude", "band"])
def test_vector_loses_contiguous_run(kind: str) -> None:
    dataset = make_dataset("ones")
    out = corrupt(dataset, "vector", kind, 0.5, seed=0)
    has = present(dataset, "vector")
    starts = set()
    for sample in out.inputs["vector"][has]:
        zero = (sample == 0).nonzero().flatten()
        assert len(zero) == 3 and torch.equal(zero, torch.arange(int(zero[0]), int(zero[0]) + 3))
        starts.add(int(zero[0]))
    assert len(starts) > 1


@pytest.mark.parametrize(
    ("modality", "severity", "rows"), [("image", 0.25, 2), ("image", 0.6, 5), ("sequence", 0.4, 2)]
)
def test_band_zeroes_whole_rows(modality: str, severity: float, rows: int) -> None:
    dataset = make_dataset("ones")
    out = corrupt(dataset, modality, "band", severity, seed=0)
    has = present(dataset, modality)
    height, width = SHAPES[modality][-2:]
    starts = set()
    for sample in out.inputs[modality][has].reshape(-1, height, width):
        zero_rows = (sample == 0).all(1).nonzero().flatten()
        assert len(zero_rows) == rows
        assert torch.equal(zero_rows, torch.arange(int(zero_rows[0]), int(zero_rows[0]) + rows))
        assert int((sample == 0).sum()) == rows * width  # nothing else is zeroed
        starts.add(int(zero_rows[0]))
    assert len(starts) > 1


def test_noise_severity_zero_changes_nothing() -> None:
    dataset = make_dataset()
    out = corrupt(dataset, "image", "noise", 0.0, seed=0)
    assert torch.equal(out.inputs["image"], dataset.inputs["image"])


@pytest.mark.parametrize(("severity", "scale"), [(0.5, 2.0), (2.0, 0.25), (0.3, None)])
def test_noise_std_is_severity_times_scale(severity: float, scale: float | None) -> None:
    dataset = make_dataset()
    out = corrupt(dataset, "image", "noise", severity, seed=0, scale=scale)
    has = present(dataset, "image")
    added = (out.inputs["image"] - dataset.inputs["image"])[has]
    unit = corruption_scale(dataset, "image") if scale is None else scale
    assert abs(float(added.std()) / (severity * unit) - 1) < 0.1
    assert abs(float(added.mean())) < 0.1 * severity * unit


def test_corruption_scale_ignores_absent_samples() -> None:
    dataset = make_dataset()
    has = present(dataset, "image")
    expected = float(dataset.inputs["image"][has].double().std(correction=0))
    assert corruption_scale(dataset, "image") == pytest.approx(expected)
    assert abs(corruption_scale(dataset, "image") - float(dataset.inputs["image"].std())) > 0.1


def test_zeros_is_unannounced_missing() -> None:
    dataset = make_dataset()
    out = corrupt(dataset, "sequence", "zeros", 0.0, fraction=0.5, seed=0)
    changed = changed_rows(dataset.inputs["sequence"], out.inputs["sequence"])
    assert int(changed.sum()) == expected_count(0.5, int(present(dataset, "sequence").sum()))
    assert (out.inputs["sequence"][changed] == 0).all()
    assert out.mask[changed, dataset.modalities.index("sequence")].all()


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.6, 1.0])
def test_drop_modality(fraction: float) -> None:
    dataset = make_dataset()
    column = dataset.modalities.index("image")
    out = drop_modality(dataset, "image", fraction, seed=2)
    assert out.mask.any(1).all()
    only_image = dataset.mask[:, column] & (dataset.mask.sum(1) == 1)
    assert only_image.sum() == 3 and out.mask[only_image, column].all()
    eligible = dataset.mask[:, column] & ~only_image
    dropped = dataset.mask[:, column] & ~out.mask[:, column]
    assert int(dropped.sum()) == expected_count(fraction, int(eligible.sum()))
    assert (out.inputs["image"][dropped] == 0).all()
    kept = ~dropped
    assert torch.equal(out.inputs["image"][kept], dataset.inputs["image"][kept])
    others = [m for m in range(len(SHAPES)) if m != column]
    assert torch.equal(out.mask[:, others], dataset.mask[:, others])
    for name in ("vector", "sequence"):
        assert torch.equal(out.inputs[name], dataset.inputs[name])


def test_drop_modality_seeded() -> None:
    dataset = make_dataset()
    first = drop_modality(dataset, "vector", 0.4, seed=0)
    assert torch.equal(first.mask, drop_modality(dataset, "vector", 0.4, seed=0).mask)
    assert not torch.equal(first.mask, drop_modality(dataset, "vector", 0.4, seed=1).mask)


def test_input_dataset_not_modified() -> None:
    dataset = make_dataset()
    inputs = {k: v.clone() for k, v in dataset.inputs.items()}
    mask, targets = dataset.mask.clone(), dataset.targets.clone()
    outputs = [corrupt(dataset, name, kind, SEVERITY[kind], seed=0) for name in SHAPES for kind in CORRUPTIONS]
    outputs += [drop_modality(dataset, name, 1.0, seed=0) for name in SHAPES]
    for name in SHAPES:
        assert torch.equal(dataset.inputs[name], inputs[name])
    assert torch.equal(dataset.mask, mask) and torch.equal(dataset.targets, targets)
    for out in outputs:
        assert out.mask.data_ptr() != dataset.mask.data_ptr()
        assert all(out.inputs[k].data_ptr() != dataset.inputs[k].data_ptr() for k in SHAPES)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_dtypes_kept(dtype: torch.dtype) -> None:
    dataset = make_dataset(dtype=dtype)
    for kind in CORRUPTIONS:
        assert corrupt(dataset, "image", kind, SEVERITY[kind], seed=0).inputs["image"].dtype == dtype
    assert drop_modality(dataset, "image", 0.5).inputs["image"].dtype == dtype


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: corrupt(d, "audio", "noise", 0.1), r"unknown modality 'audio'.*'image', 'vector', 'sequence'"),
        (lambda d: corrupt(d, "image", "blur", 0.1), r"unknown corruption kind 'blur'.*'noise', 'occlude'"),
        (lambda d: corrupt(d, "image", "noise", -0.1), r"severity must be >= 0"),
        (lambda d: corrupt(d, "image", "noise", float("nan")), r"severity must be >= 0"),
        (lambda d: corrupt(d, "image", "occlude", 1.5), r"severity of occlude .* \[0, 1\], got 1.5"),
        (lambda d: corrupt(d, "image", "band", 1.01), r"severity of band"),
        (lambda d: corrupt(d, "image", "noise", 0.1, fraction=1.2), r"fraction must be in \[0, 1\], got 1.2"),
        (lambda d: corrupt(d, "image", "zeros", 0.0, fraction=-0.1), r"fraction must be in \[0, 1\]"),
        (lambda d: corrupt(d, "image", "noise", 0.1, scale=-1.0), r"scale must be"),
        (lambda d: drop_modality(d, "audio", 0.5), r"unknown modality 'audio'"),
        (lambda d: drop_modality(d, "image", 1.5), r"fraction must be in \[0, 1\], got 1.5"),
        (lambda d: corruption_scale(d, "audio"), r"unknown modality 'audio'"),
    ],
)
def test_bad_arguments(call: Callable[[TensorMultimodalDataset], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(make_dataset())


def test_noise_allows_severity_above_one_and_needs_float() -> None:
    dataset = make_dataset()
    assert not torch.equal(corrupt(dataset, "image", "noise", 3.0).inputs["image"], dataset.inputs["image"])
    ints = TensorMultimodalDataset(
        {"a": torch.ones(4, 3, dtype=torch.int64)}, torch.ones(4, 1, dtype=torch.bool), torch.zeros(4)
    )
    with pytest.raises(ValueError, match="floating-point"):
        corrupt(ints, "a", "noise", 0.1)
    assert (corrupt(ints, "a", "occlude", 0.34).inputs["a"] == 0).sum(1).eq(1).all()
