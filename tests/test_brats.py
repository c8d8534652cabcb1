"""BraTS path: NIfTI loading, region labels, 3D gate, sliding window, Dice/ECE/CR, one tiny training run."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from simmlm.datasets.brats.loader import (
    NiftiLayout,
    RandomCropDataset,
    VolumeCase,
    VolumeDataset,
    label_to_regions,
    load_brats_split,
    load_case,
)
from simmlm.evaluation.evaluate import segmentation_report
from simmlm.evaluation.inferers import sliding_window_subsets
from simmlm.losses.segmentation import dice_bce_per_sample
from simmlm.methods import DMoME, LateFusion, create_method
from simmlm.metrics import expected_calibration_error, static_calibration_error
from simmlm.metrics.segmentation import VoxelCalibration, dice_score
from simmlm.nn.gating import ConvGateEncoder, GatingNetwork

SHAPE = (20, 18, 16)
BRATS2018 = NiftiLayout()
BRATS2015 = NiftiLayout(
    modalities={"flair": "Flair.nii.gz", "t1c": "T1c.nii.gz"},
    label="OT.nii.gz",
    brain_mask="brainmask.nii.gz",
    label_convention="brats2015",
)


def _write(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))


def _labels(rng: np.random.Generator, values: tuple[int, ...]) -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.float32)
    labels[6:14, 5:13, 4:12] = rng.choice(values, size=(8, 8, 8))
    return labels


def write_case(root: Path, name: str, layout: NiftiLayout, seed: int = 0, skip: tuple[str, ...] = ()) -> Path:
    """A synthetic case: sequences brighter inside the tumour, a brain mask (if the layout has one)."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    values = (1, 2, 3, 4) if layout.label_convention == "brats2015" else (1, 2, 4)
    labels = _labels(rng, values)
    brain = np.zeros(SHAPE, dtype=np.float32)
    brain[2:18, 2:16, 2:14] = 1
    for m, pattern in enumerate(layout.modalities.values()):
        if pattern.split(".")[0].replace("{case}_", "") in skip:
            continue
        volume = (rng.normal(size=SHAPE) + (m + 1) * (labels > 0)) * brain
        _write(folder / pattern.format(case=name), volume.astype(np.float32))
    _write(folder / layout.label.format(case=name), labels)
    if layout.brain_mask is not None:
        _write(folder / layout.brain_mask.format(case=name), brain)
    return folder


def test_label_regions_for_both_conventions() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4])
    assert label_to_regions(labels, "brats2015").tolist() == [
        [0, 1, 1, 1, 1],  # WT = 1, 2, 3, 4
        [0, 1, 0, 1, 1],  # TC = 1, 3, 4
        [0, 0, 0, 0, 1],  # ET = 4
    ]
    labels = torch.tensor([0, 1, 2, 4])
    assert label_to_regions(labels, "brats2018").tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]
    with pytest.raises(ValueError, match=r"label values \[3\] are not in the brats2018"):
        label_to_regions(torch.tensor([0, 3]), "brats2018")


def test_regions_to_labels_inverts_the_2018_mapping() -> None:
    from simmlm.datasets.brats.loader import regions_to_labels

    labels = torch.tensor([0, 1, 2, 4])
    assert regions_to_labels(label_to_regions(labels, "brats2018"), "brats2018").tolist() == [0, 1, 2, 4]


@pytest.mark.parametrize("layout", [BRATS2018, BRATS2015], ids=["brats2018", "brats2015"])
def test_loader_reads_both_layouts(tmp_path: Path, layout: NiftiLayout) -> None:
    folder = write_case(tmp_path, "case_a", layout)
    case = load_case(folder, layout, downsample=2)
    assert list(case.inputs) == list(layout.modalities)
    assert case.mask.all()
    assert case.target.shape[0] == 3 and case.target.shape[1:] == case.brain.shape
    assert all(x.shape == (1, *case.brain.shape) for x in case.inputs.values())
    assert case.target[0].sum() > 0 and (case.target[1] <= case.target[0]).all()  # TC inside WT
    flair = next(iter(case.inputs.values()))[0]
    assert flair[~case.brain].abs().max() == 0  # normalised inside the brain, zero outside


def test_loader_errors_name_the_file(tmp_path: Path) -> None:
    folder = write_case(tmp_path, "c1", BRATS2018)
    (folder / "c1_t2.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="c1_t2.nii.gz"):
        load_case(folder, BRATS2018)
    _write(folder / "c1_t2.nii.gz", np.zeros((4, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"c1_t2.nii.gz has shape \(4, 4, 4\)"):
        load_case(folder, BRATS2018)
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    _write(folder / "c1_t2.nii.gz", np.zeros(SHAPE, dtype=np.float32), shifted)
    with pytest.raises(ValueError, match="different affines"):
        load_case(folder, BRATS2018)
    blob = gzip.compress(b"not a nifti at all" * 10)
    (folder / "c1_t2.nii.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="c1_t2.nii.gz: unreadable NIfTI"):
        load_case(folder, BRATS2018)
    empty = tmp_path / "empty_split"
    empty.mkdir()
    with pytest.raises(ValueError, match="no case folders"):
        load_brats_split(empty, BRATS2018)


def test_missing_sequence_is_a_mask_not_zeros_when_allowed(tmp_path: Path) -> None:
    layout = NiftiLayout(allow_missing=True)
    folder = write_case(tmp_path, "c2", layout, skip=("t1ce",))
    case = load_case(folder, layout)
    assert case.mask.tolist() == [True, True, False, True]
    assert case.inputs["t1ce"].abs().max() == 0


def test_random_crops_are_reproducible_and_biased_to_tumour(tmp_path: Path) -> None:
    cases = [load_case(write_case(tmp_path, f"c{i}", BRATS2018, seed=i), BRATS2018) for i in range(2)]
    volumes = VolumeDataset(cases, list(BRATS2018.modalities))
    crops = RandomCropDataset(volumes, (8, 8, 8), samples_per_epoch=20, pos_fraction=1.0)
    crops.set_random_state(3)
    first = [crops[i] for i in range(20)]
    crops.set_random_state(3)
    again = [crops[i] for i in range(20)]
    assert all(torch.equal(a[2], b[2]) for a, b in zip(first, again, strict=True))
    assert all(type(x) is torch.Tensor and x.shape == (1, 8, 8, 8) for x in first[0][0].values())
    assert all(item[2][0].sum() > 0 for item in first)  # every crop is centred on a tumour voxel


def test_crops_depend_on_seed_epoch_and_index_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes segmentation resume exact and DDP ranks share one run's crops: no hidden random stream."""
    from simmlm.data.base import ShardedBatchSampler
    from simmlm.datasets.brats import BratsConfig, BratsData
    from simmlm.engine.tasks import SegmentationTask

    cases = [load_case(write_case(tmp_path, f"c{i}", BRATS2018, seed=i), BRATS2018) for i in range(2)]
    volumes = VolumeDataset(cases, list(BRATS2018.modalities))
    crops = RandomCropDataset(volumes, (8, 8, 8), samples_per_epoch=6)
    crops.set_random_state(3)
    later = crops[(1, 4)]
    for key in [(0, 4), (1, 2), (0, 0), (1, 4)]:  # whatever was drawn before, (1, 4) is the same crop
        crops[key]
    assert torch.equal(crops[(1, 4)][0]["flair"], later[0]["flair"])
    assert torch.equal(crops[4][0]["flair"], crops[(0, 4)][0]["flair"])
    assert any(not torch.equal(crops[(0, i)][0]["flair"], crops[(1, i)][0]["flair"]) for i in range(6))

    task = SegmentationTask(BratsData(brats=BratsConfig(crop_size=(8, 8, 8), crops_per_epoch=6)))
    loader = task.train_loader(volumes, batch_size=4, seed=7)
    assert isinstance(loader.sampler, ShardedBatchSampler)
    loader.sampler.set_epoch(2)  # Lightning does this before every epoch
    batches = list(loader)
    assert [len(b[2]) for b in batches] == [4, 2] and batches[0][0]["t1"].shape == (4, 1, 8, 8, 8)
    order = [k for keys in ShardedBatchSampler(6, 4, shuffle=True, seed=7, with_epoch=True) for k in keys]
    crops.set_random_state(7)  # the loader's seed
    assert torch.equal(batches[0][2][1], crops[(2, order[1][1])][2])
    halves = []
    for rank in range(2):  # two DDP ranks: each loads half of every global batch, the same crops
        ranked = task.train_loader(volumes, batch_size=4, seed=7)
        monkeypatch.setattr(ranked.sampler, "_world", lambda rank=rank: (2, rank))
        ranked.sampler.set_epoch(2)
        halves.append(list(ranked))
    assert torch.equal(halves[1][0][2], batches[0][2][1::2])


def _tiny_simmlm(modalities: list[str], size: int = 16) -> nn.Module:
    return create_method(
        "simmlm",
        input_shapes={m: (1, size, size, size) for m in modalities},
        num_classes=3,
        expert="unet3d",
        expert_options={"channels": (4, 8), "strides": (2,), "num_res_units": 0},
        gate_channels=3,
    )


def test_gate_gives_m_by_3_weights_and_zero_for_missing() -> None:
    modalities = ["flair", "t1", "t1ce", "t2"]
    model = _tiny_simmlm(modalities)
    inputs = {m: torch.randn(2, 1, 16, 16, 16) for m in modalities}
    mask = torch.tensor([[True, False, True, True], [False, False, False, True]])
    out = model(inputs, mask)
    assert out.logits.shape == (2, 3, 16, 16, 16)
    assert out.gate_weights is not None and out.gate_weights.shape == (2, 4, 3)
    assert (out.gate_weights[~mask] == 0).all()
    torch.testing.assert_close(out.gate_weights.sum(1), torch.ones(2, 3))
    bigger = {m: torch.randn(1, 1, 24, 32, 16) for m in modalities}  # global pooling: any size
    assert model(bigger, mask[:1]).gate_weights.shape == (1, 4, 3)


def test_sliding_window_equals_whole_volume_for_pointwise_experts() -> None:
    torch.manual_seed(0)
    modalities = ["flair", "t1c"]
    experts = {m: nn.Conv3d(1, 3, kernel_size=1) for m in modalities}
    gate = GatingNetwork({m: ConvGateEncoder(1, 4, spatial_dims=3) for m in modalities}, num_channels=3)
    model = DMoME(experts, gate).eval()
    inputs = {m: torch.randn(1, 1, 13, 17, 11) for m in modalities}
    available = torch.tensor([[True, True]])
    subsets = [torch.tensor([[True, False]]), torch.tensor([[False, True]]), available]
    windows = sliding_window_subsets(model, inputs, available, subsets, roi_size=(8, 8, 8), overlap=0.5)
    with torch.no_grad():
        for mask, out in zip(subsets, windows, strict=True):
            whole = model(inputs, mask)
            torch.testing.assert_close(out.logits, whole.logits, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out.gate_weights, whole.gate_weights)


def test_dice_matches_hand_computed_cases_and_monai() -> None:
    from monai.metrics import compute_dice

    pred = torch.zeros(3, 4, 4, 4, dtype=torch.bool)
    target = torch.zeros_like(pred)
    pred[0, 0, 0, :2] = True  # 2 voxels
    target[0, 0, 0, 1:4] = True  # 3 voxels, 1 shared -> 2 * 1 / 5
    target[1, 1, 1, 1] = True  # empty prediction, non-empty target -> 0
    # region 2: both empty -> 1 (BraTS convention)
    assert dice_score(pred, target).tolist() == pytest.approx([0.4, 0.0, 1.0])
    reference = compute_dice(pred[None].float(), target[None].float(), ignore_empty=False)[0]
    assert dice_score(pred, target).tolist() == pytest.approx(reference.tolist())


def test_voxel_calibration_is_classification_ece_on_two_classes() -> None:
    torch.manual_seed(1)
    probs, target = torch.rand(3, 500).double(), (torch.rand(3, 500) > 0.6).float()
    calibration = VoxelCalibration(3)
    calibration.update(probs[:, :200], target[:, :200])  # accumulating in parts = all at once
    calibration.update(probs[:, 200:], target[:, 200:])
    ece, sce = calibration.compute()
    two_class = [torch.stack([1 - p, p], -1) for p in probs]
    expected_ece = torch.stack(
        [expected_calibration_error(q, y.long()) for q, y in zip(two_class, target, strict=True)]
    )
    expected_sce = torch.stack([static_calibration_error(q, y.long()) for q, y in zip(two_class, target, strict=True)])
    assert ece == pytest.approx(expected_ece.mean().item())
    assert sce == pytest.approx(expected_sce.mean().item())
    per_region = calibration.compute_regions()  # the paper's Table 4 reports each region
    assert per_region[0] == pytest.approx(expected_ece.tolist()) and per_region[1] == pytest.approx(
        expected_sce.tolist()
    )


def test_dice_bce_is_per_sample_and_small_for_confident_correct_logits() -> None:
    target = (torch.rand(2, 3, 6, 6, 6) > 0.5).float()
    good = dice_bce_per_sample((target * 2 - 1) * 20, target)
    bad = dice_bce_per_sample((1 - 2 * target) * 20, target)
    assert good.shape == (2,) and (good < 1e-3).all() and (bad > 10).all()
    mixed = dice_bce_per_sample(torch.cat([(target[:1] * 2 - 1) * 20, (1 - 2 * target[1:]) * 20]), target)
    torch.testing.assert_close(mixed, torch.stack([good[0], bad[1]]))


def test_segmentation_report_dice_and_cr_by_hand() -> None:
    """Point-wise experts with fixed outputs: flair predicts the tumour, t1c nothing; CR counts P(S-) > P(S+)."""
    tumour = torch.zeros(3, 8, 8, 8)
    tumour[:, 2:6, 2:6, 2:6] = 1

    class Fixed(nn.Module):
        def __init__(self, logits: torch.Tensor) -> None:
            super().__init__()
            self.logits = nn.Parameter(logits, requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.logits.expand(len(x), *self.logits.shape)

    model = LateFusion(
        {
            "flair": Fixed(tumour * 20 - 10),  # exact segmentation
            "t1c": Fixed(torch.full((3, 8, 8, 8), -30.0)),  # predicts nothing, strongly
        }
    )
    case = VolumeCase(
        "x",
        {"flair": torch.randn(1, 8, 8, 8), "t1c": torch.randn(1, 8, 8, 8)},
        torch.tensor([1, 1]).bool(),
        tumour,
        torch.ones(8, 8, 8, dtype=torch.bool),
    )
    report = segmentation_report(model, VolumeDataset([case], ["flair", "t1c"]), ["flair", "t1c"], (8, 8, 8))
    assert report["subsets"]["flair"]["dice_mean"] == pytest.approx(1.0)
    assert report["subsets"]["t1c"]["dice_mean"] == pytest.approx(0.0)
    # the mean of +10 and -30 logits is negative everywhere: both-modalities prediction is empty
    assert report["subsets"]["flair+t1c"]["dice_mean"] == pytest.approx(0.0)
    # pairs (flair, both) and (t1c, both): flair alone beats both -> CR = 1/2 in every region
    assert report["counterintuitive_rate"] == pytest.approx(0.5)
    assert report["gate_weights_regions"]["flair+t1c"]["flair"] == {"wt": 0.5, "tc": 0.5, "et": 0.5}


def test_gpu_config_trains_one_step_on_a_tiny_four_modality_volume(tmp_path: Path) -> None:
    from simmlm.engine.config import load_config
    from simmlm.engine.runs import save_run
    from simmlm.engine.tasks import load_splits
    from simmlm.engine.train import quiet_lightning, train

    for split, seeds in (("train", (0, 1)), ("validation", (2,)), ("test", (3,))):
        for seed in seeds:
            write_case(tmp_path / split, f"case{seed}", BRATS2018, seed=seed)
    overrides = {
        "data.data_dir": str(tmp_path),
        "data.brats.crop_size": [16, 16, 16],
        "data.brats.crops_per_epoch": 2,
        "model.expert_options": {"channels": [4, 8], "strides": [2], "num_res_units": 0},
        "train.stage1.epochs": 1,
        "train.stage2.epochs": 1,
        "train.accelerator": "cpu",
        "train.channels_last": True,
    }
    cfg = load_config("configs/brats2018_gpu.yaml", overrides)
    splits = load_splits(cfg.data)
    assert splits.modalities == ["flair", "t1", "t1ce", "t2"] and splits.num_classes == 3
    quiet_lightning()
    result = train(cfg, splits, progress=False)
    convs = [p for p in result.model.parameters() if p.ndim == 5]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in convs)
    metrics = save_run(tmp_path / "run", result, splits)
    assert len(metrics["test"]["subsets"]) == 15
    keys = {"dice_wt", "dice_tc", "dice_et", "dice_mean", "ece", "sce", "samples"}
    keys |= {f"{metric}_{region}" for metric in ("ece", "sce") for region in ("wt", "tc", "et")}
    assert set(metrics["test"]["subsets"]["flair+t1ce"]) == keys
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["average_dice"] >= 0

    # predict from NIfTI files with two of the four sequences, writing the label map in the input's space
    from simmlm.engine.runs import predict_files

    case = tmp_path / "test" / "case3"
    files = {"flair": case / "case3_flair.nii.gz", "t1ce": case / "case3_t1ce.nii.gz"}
    result = predict_files(tmp_path / "run", files, output=tmp_path / "seg.nii.gz")
    assert result["modalities"] == ["flair", "t1ce"] and set(result["gate_weights"]) == {"flair", "t1ce"}
    assert set(result["region_volumes_ml"]) == {"wt", "tc", "et"}
    labels = nib.load(str(tmp_path / "seg.nii.gz"))
    assert labels.shape == SHAPE and set(np.unique(np.asarray(labels.dataobj)).tolist()) <= {0, 1, 2, 4}
    _write(tmp_path / "small.nii.gz", np.zeros((4, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="small.nii.gz: shape"):
        predict_files(tmp_path / "run", {**files, "t2": tmp_path / "small.nii.gz"})
    with pytest.raises(ValueError, match=r"unknown modality \['t1c'\]"):
        predict_files(tmp_path / "run", {"t1c": files["flair"]})


@pytest.mark.slow
def test_gpu_config_dry_run_on_full_size_cases(tmp_path: Path) -> None:
    """``configs/brats2018_gpu.yaml`` as it is, but for tiny experts and epochs, on three BraTS 2018-sized cases
    (four 240x240x155 sequences): the cache, 128^3 crops, sliding-window evaluation of all 15 subsets and the
    prediction of a full-size label map (about a minute on two cores)."""
    from simmlm.engine.config import load_config
    from simmlm.engine.runs import predict_files, save_run
    from simmlm.engine.tasks import load_splits
    from simmlm.engine.train import quiet_lightning, train

    full = (240, 240, 155)
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in full), indexing="ij"))
    brain = (grid**2).sum(0) < 0.3  # a 132x132x85 brain box: 4 windows of 128^3 (real brains take about 9)
    for seed, split in enumerate(("train", "validation", "test")):
        folder = tmp_path / split / f"case{seed}"
        folder.mkdir(parents=True)
        radius = np.sqrt(((grid - np.float32(0.2 * (seed - 1))) ** 2).sum(0))  # the tumour moves with the case
        labels = (np.select([radius < 0.12, radius < 0.2, radius < 0.3], [4, 1, 2], 0) * brain).astype(np.int16)
        for m, sequence in enumerate(("flair", "t1", "t1ce", "t2")):
            volume = (brain * (300 + 100 * m) + (labels > 0) * 200 * (m + 1)).astype(np.int16)
            _write(folder / f"case{seed}_{sequence}.nii.gz", volume)
        _write(folder / f"case{seed}_seg.nii.gz", labels)
    overrides = {
        "data.data_dir": str(tmp_path),
        "data.brats.crops_per_epoch": 2,
        "model.expert_options": {"channels": [4, 8], "strides": [2], "num_res_units": 0},
        "train.stage1.epochs": 1,
        "train.stage2.epochs": 1,
        "train.accelerator": "cpu",
    }
    cfg = load_config("configs/brats2018_gpu.yaml", overrides)
    assert tuple(cfg.data.brats.crop_size) == (128, 128, 128) and cfg.data.brats.downsample == 1  # type: ignore[union-attr]
    splits = load_splits(cfg.data)
    quiet_lightning()
    result = train(cfg, splits, progress=False)
    metrics = save_run(tmp_path / "run", result, splits)
    assert len(metrics["test"]["subsets"]) == 15 and 0 <= metrics["test"]["average_dice"] <= 1
    case = tmp_path / "test" / "case2"
    files = {s: case / f"case2_{s}.nii.gz" for s in ("flair", "t1ce")}
    predict_files(tmp_path / "run", files, output=tmp_path / "seg.nii.gz")
    assert nib.load(str(tmp_path / "seg.nii.gz")).shape == full


def test_figures_summary_and_report_for_a_segmentation_run(tmp_path: Path) -> None:
    from simmlm.experiments.benchmark import _aggregate
    from simmlm.metrics.entropy import binary_entropy
    from simmlm.reporting.report import write_report
    from simmlm.reporting.segmentation_figures import case_figure, population_gates_figure
    from simmlm.reporting.summary import summary_markdown

    modalities = ["flair", "t1c"]
    layout = NiftiLayout(modalities={"flair": "{case}_flair.nii.gz", "t1c": "{case}_t1ce.nii.gz"})
    case = load_case(write_case(tmp_path, "c0", layout), layout)
    model = _tiny_simmlm(modalities)
    case_figure(model, case, modalities, (16, 16, 16), tmp_path / "case.png", title="tiny")
    assert (tmp_path / "case.png").stat().st_size > 10_000
    assert binary_entropy(torch.full((3, 2), 0.5)).tolist() == pytest.approx([3 * np.log(2)] * 2)

    report = segmentation_report(model, VolumeDataset([case], modalities), modalities, (16, 16, 16))
    run = {
        "test": report,
        "val_average_dice": 0.5,
        "train_seconds": 1.0,
        "mofe": {"hinge_mean": 0.0, "active_fraction": 0.0},
    }
    summary = {
        "dataset": "brats",
        "modalities": modalities,
        "seeds": [0],
        "protocol": "tiny",
        "methods": {"simmlm": _aggregate([run], 10, 100, {0: 0.1})},
    }
    bench = tmp_path / "bench"
    (bench / "figures").mkdir(parents=True)
    (bench / "summary.json").write_text(json.dumps(summary))
    markdown = summary_markdown(summary)
    (bench / "summary.md").write_text(markdown)
    assert "WT / TC / ET" in markdown and "CR WT" in markdown
    assert population_gates_figure(summary, bench / "figures" / "population_gates.png")
    page = write_report(bench).read_text()
    wt = 100 * report["subsets"]["flair+t1c"]["dice_wt"]
    assert f"{wt:.1f} ± 0.0" in page and "population_gates.png" in page and "dice_mean.png" in page
    assert all((bench / f"{k}.png").is_file() for k in ("dice_mean", "dice_wt", "dice_tc", "dice_et", "ece"))


def test_brats_config_rejects_incomplete_splits() -> None:
    from simmlm.engine.config import load_config

    with pytest.raises(ValueError, match="splits must map exactly train, val and test"):
        load_config("configs/brats_cpu.yaml", {"data.brats.splits": {"train": "train", "test": "test"}})
