"""2-D semantic segmentation (RGB-X folders): the IoU against torchmetrics, the folder layout and its refusals, the
per-subset report, a benchmark end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassJaccardIndex
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.datasets.rgbx.loader import load_rgbx
from simmlm.datasets.rgbx.synthetic import CLASSES, write_example_scenes
from simmlm.evaluation.inferers import SubsetPredictions
from simmlm.evaluation.semantic import semantic_report
from simmlm.metrics.segmentation import confusion_matrix, iou_per_class, per_sample_miou
from simmlm.subsets import all_subsets

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated")


def test_iou_and_pixel_accuracy_are_torchmetrics() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (6, 9, 9), generator=g)
    target[:, 0] = 255  # void
    predicted = torch.where(torch.rand(6, 9, 9, generator=g) < 0.7, target.clamp(max=3), torch.randint(0, 4, (6, 9, 9)))
    iou = iou_per_class(confusion_matrix(predicted, target, 4, ignore_index=255))
    reference = MulticlassJaccardIndex(4, average="none", ignore_index=255)(predicted, target)
    torch.testing.assert_close(iou.float(), reference, atol=1e-6, rtol=0)
    one = per_sample_miou(predicted, target, 4, 255)
    for k in range(6):
        theirs = MulticlassJaccardIndex(4, average="none", ignore_index=255)(predicted[k], target[k])
        present = (predicted[k] == torch.arange(4)[:, None, None]) | (target[k] == torch.arange(4)[:, None, None])
        present = (present & (target[k] != 255)).flatten(1).any(1)
        assert one[k].item() == pytest.approx(theirs[present].mean().item(), abs=1e-6)  # classes seen in the image
    logits = torch.nn.functional.one_hot(predicted.clamp(max=3), 4).movedim(-1, 1).float()
    preds = SubsetPredictions([1], logits.unsqueeze(0), None, target, torch.ones(6, dtype=torch.long))
    report = semantic_report(preds, ["rgb"], ["a", "b", "c", "d"], ignore_index=255)
    accuracy = MulticlassAccuracy(4, average="micro", ignore_index=255)(predicted, target)
    assert report["subsets"]["rgb"]["pixel_accuracy"] == pytest.approx(accuracy.item(), abs=1e-6)
    assert report["subsets"]["rgb"]["miou"] == pytest.approx(reference.mean().item(), abs=1e-6)
    assert report["subsets"]["rgb"]["iou_b"] == pytest.approx(reference[1].item(), abs=1e-6)
    dice = MulticlassF1Score(4, average="none", ignore_index=255)(predicted, target)  # Dice is the pixels' F1
    assert [report["subsets"]["rgb"][f"dice_{c}"] for c in "abcd"] == pytest.approx(dice.tolist(), abs=1e-6)
    assert report["subsets"]["rgb"]["mdice"] == pytest.approx(dice.mean().item(), abs=1e-6)


def test_the_report_covers_each_subset_with_the_images_that_have_it() -> None:
    g = torch.Generator().manual_seed(1)
    n, subsets = 5, all_subsets(2)
    target = torch.randint(0, 3, (n, 8, 8), generator=g)
    logits = torch.randn(len(subsets), n, 3, 8, 8, generator=g)
    available = torch.tensor([3, 3, 3, 1, 2])
    covered = (torch.tensor(subsets)[:, None] & ~available[None]) == 0
    logits[~covered] = float("nan")
    preds = SubsetPredictions(subsets, logits, None, target, available)
    report = semantic_report(preds, ["rgb", "depth"], ["x", "y", "z"])
    assert [v["samples"] for v in report["subsets"].values()] == [4, 4, 3]
    assert set(report["shapley"]["miou"]) == {"rgb", "depth"} and 0 <= report["counterintuitive_rate"] <= 1


def test_the_folder_layout_reads_missing_modalities_as_missing_and_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    root = write_example_scenes(tmp_path / "scenes", {"train": 20, "val": 6, "test": 6}, seed=1)
    splits = load_rgbx(root)
    assert splits.modalities == ["depth", "rgb"] and splits.num_classes == 3
    assert splits.preprocessing["classes"] == list(CLASSES)
    folders = sorted((root / "train").iterdir())
    lacks_depth = [not (f / "depth.npy").is_file() for f in folders]
    assert splits.train.mask[:, 0].tolist() == [not x for x in lacks_depth]
    assert (splits.train.inputs["depth"][~splits.train.mask[:, 0]] == 0).all()
    assert set(splits.train.targets.unique().tolist()) == {0, 1, 2, 255}
    np.save(folders[0] / "depth.npy", np.zeros((16, 16), np.float32))
    with pytest.raises(ValueError, match="every image must have one shape"):
        load_rgbx(root)
    np.save(folders[0] / "depth.npy", np.zeros((32, 32), np.float32))
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(folders[1] / "label.png")
    with pytest.raises(ValueError, match="holds class 7, but only 3 classes are named"):
        load_rgbx(root)
    (folders[1] / "label.png").unlink()
    with pytest.raises(FileNotFoundError, match="has no label.png or label.npy"):
        load_rgbx(root)


def test_a_benchmark_segments_with_every_subset_and_depth_helps(tmp_path: Path) -> None:
    data, out = tmp_path / "scenes", tmp_path / "bench"
    write_example_scenes(data, {"train": 64, "val": 16, "test": 24}, seed=2)
    args = ["benchmark", "rgbx", "--data-dir", str(data), "--methods", "simmlm,late_fusion", "--seeds", "0"]
    sets = ["model.gate_channels=3", "train.stage1.epochs=8", "train.stage2.epochs=3"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    simmlm = summary["methods"]["simmlm"]
    assert set(simmlm["subsets"]) == {"depth", "rgb", "depth+rgb"} and "average_miou" in simmlm
    # RGB cannot tell near from far; with the depth the far class is found
    assert simmlm["subsets"]["depth+rgb"]["iou_far"][0] > simmlm["subsets"]["rgb"]["iou_far"][0]
    md = (out / "summary.md").read_text()
    assert "## Test mIoU (%) per available-modality subset" in md and "| method | background | near | far |" in md
    assert "## Test mean Dice (%) per available-modality subset" in md and "| mean Dice | pixel accuracy |" in md
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    assert (out / "miou.png").is_file()
    sample, labels = data / "test" / "0003", tmp_path / "labels.png"
    files = [a for m in ("rgb", "depth") if (sample / f"{m}.png").is_file() or (sample / f"{m}.npy").is_file()
             for a in ("-i", f"{m}={next(sample.glob(m + '.*'))}")]  # fmt: skip
    run = str(out / "runs" / "simmlm-seed0")
    predicted = CliRunner().invoke(app, ["predict", run, *files, "--output", str(labels)])
    assert predicted.exit_code == 0 and predicted.output.startswith("segmentation from"), predicted.output
    with Image.open(labels) as image:
        assert image.size == (32, 32) and set(np.unique(np.asarray(image))) <= {0, 1, 2}
    bad = CliRunner().invoke(app, ["predict", run, *files, "--output", str(tmp_path / "x.nii.gz")])
    assert bad.exit_code != 0 and "write the label map as .png or .npy" in bad.output


def test_mmp_segments_with_a_decoder_and_projects_a_missing_modalitys_tokens() -> None:
    from simmlm.datasets.rgbx import RgbxData
    from simmlm.engine.semantic import SemanticSegmentationTask
    from simmlm.methods import create_method

    shapes = {"rgb": (3, 32, 32), "depth": (1, 32, 32)}
    torch.manual_seed(0)
    model = create_method("mmp", input_shapes=shapes, num_classes=3, expert="unet2d", dim=8, heads=2)
    inputs = {name: torch.randn(4, *shape) for name, shape in shapes.items()}
    full, rgb_only = torch.ones(4, 2, dtype=torch.bool), torch.tensor([[True, False]] * 4)
    both, masked = model.forward_subsets(inputs, full, [full, rgb_only])
    assert both.logits.shape == masked.logits.shape == (4, 3, 32, 32)
    assert "alignment" in masked.aux_losses and not both.aux_losses  # depth masked in training: its tokens projected
    (masked.logits.sum() + masked.aux_losses["alignment"]).backward()
    task = SemanticSegmentationTask(RgbxData(), load_rgbx)
    task.check_method(model, "mmp")
    dream = create_method("dream", input_shapes=shapes, num_classes=3, expert="lenet", dim=8, heads=2)
    with pytest.raises(ValueError, match="supports the expert mixtures .* and mmp, not 'dream'"):
        task.check_method(dream, "dream")


def test_mmp_segments_volumes_by_sliding_window() -> None:
    """MMP on the 3-D BraTS path: tokens from crops, every subset stitched over the windows of a whole volume."""
    from simmlm.evaluation.inferers import sliding_window_subsets
    from simmlm.methods import create_method

    shapes = {"flair": (1, 8, 8, 8), "t1c": (1, 8, 8, 8)}
    torch.manual_seed(0)
    model = create_method("mmp", input_shapes=shapes, num_classes=3, expert="unet3d", dim=8, heads=2).eval()
    volume = {name: torch.randn(1, 1, 16, 16, 16) for name in shapes}
    full = torch.ones(1, 2, dtype=torch.bool)
    masks = [full, torch.tensor([[True, False]]), torch.tensor([[False, True]])]
    outputs = sliding_window_subsets(model, volume, full, masks, roi_size=(8, 8, 8), overlap=0.0)
    assert [o.logits.shape for o in outputs] == [(1, 3, 16, 16, 16)] * 3 and outputs[0].gate_weights is None
    crop = {name: x[..., :8, :8, :8] for name, x in volume.items()}
    torch.testing.assert_close(outputs[1].logits[..., :8, :8, :8], model(crop, masks[1]).logits)  # one window alone
