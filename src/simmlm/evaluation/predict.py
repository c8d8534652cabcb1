"""One sample given as files, with any subset of the modalities (the others are marked missing): what
``simmlm predict`` computes once the run's task has read the files (:func:`simmlm.engine.runs.predict_files` loads
the run and hands the files to its task, whose ``predict`` calls :func:`classify_files` or :func:`segment_files`).

The preprocessing fitted in training is read from the checkpoint, and each dataset reads its own files (the task's
reader: ``simmlm.datasets.avmnist.input.read_input``, ``simmlm.datasets.folder.loader.read_input``, NIfTI via
``simmlm.datasets.brats.loader``). avMNIST runs: ``image`` as PNG (28x28, grey or RGB) or NPY (28x28 grey levels 0..255,
as MNIST); ``audio`` as WAV (any rate; the run's front end turns it into the 20x20 MFCC map of training) or NPY (a raw,
unscaled 20x20 MFCC map). Folder-dataset runs (your own data): one ``.npy`` per modality, raw as in the dataset folder
(the training standardisation is applied here). BraTS runs: one NIfTI volume per MRI sequence (optionally a
``brain_mask`` NIfTI; otherwise the brain is where any sequence is non-zero), preprocessed as in training and segmented
by sliding window. No Lightning, and nothing of the engine: run folders are read by :mod:`simmlm.engine.runs`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from simmlm.datasets.brats import BratsConfig
from simmlm.fileio import atomic_path
from simmlm.metrics.entropy import binary_entropy, categorical_entropy


@torch.no_grad()
def classify_files(
    model: nn.Module, method: str, meta: dict[str, Any], files: dict[str, Any], reader: Any
) -> dict[str, Any]:
    """Classify one sample given as files of any subset of the modalities, each read by ``reader(name, path,
    preprocessing)`` (the dataset's reader); the other modalities are marked missing."""
    preprocessing = meta["preprocessing"]
    modalities: list[str] = list(meta["modalities"])
    inputs, mask = _read_sample(meta, files, reader)
    out = model(inputs, mask)
    probs = out.logits.softmax(-1)[0]
    classes = preprocessing.get("classes") or [str(k) for k in range(len(probs))]
    result: dict[str, Any] = {
        "method": method,
        "modalities": [name for name in modalities if name in files],
        "prediction": int(probs.argmax()),
        "class_name": classes[int(probs.argmax())],
        "probabilities": [round(p, 6) for p in probs.tolist()],
        "class_names": classes,
        "entropy": categorical_entropy(probs).item(),
        "max_entropy": math.log(len(probs)),
        "gate_weights": None,
    }
    if out.gate_weights is not None:
        weights = out.gate_weights[0]
        result["gate_weights"] = {name: float(weights[m].mean()) for m, name in enumerate(modalities)}
    result["shapley"] = _contributions(model, inputs, mask, int(probs.argmax()), modalities)
    return result


def _read_sample(meta: dict[str, Any], files: dict[str, Any], reader: Any) -> tuple[dict[str, Tensor], Tensor]:
    """One sample's inputs (zeros for the modalities not given) and its mask, the files read by ``reader``."""
    shapes = {name: tuple(shape) for name, shape in meta["input_shapes"].items()}
    inputs = {name: torch.zeros(1, *shapes[name]) for name in meta["modalities"]}
    for name, path in files.items():
        tensor = reader(name, path, meta["preprocessing"])
        if tuple(tensor.shape) != shapes[name]:
            raise ValueError(f"{path}: gives {list(tensor.shape)}, the model expects {list(shapes[name])}")
        inputs[name] = tensor.unsqueeze(0)
    return inputs, torch.tensor([[name in files for name in meta["modalities"]]])


@torch.no_grad()
def score_files(
    model: nn.Module, method: str, meta: dict[str, Any], files: dict[str, Any], reader: Any
) -> dict[str, Any]:
    """The predicted score (a regression run, e.g. sentiment in [-3, 3]) of one sample given as files of any subset
    of the modalities, with its sign and the gate weights; the other modalities are marked missing."""
    modalities: list[str] = list(meta["modalities"])
    inputs, mask = _read_sample(meta, files, reader)
    out = model(inputs, mask)
    score = float(out.logits[0, 0])
    result: dict[str, Any] = {
        "method": method,
        "modalities": [name for name in modalities if name in files],
        "score": score,
        "sign": "non-negative" if score >= 0 else "negative",
        "gate_weights": None,
    }
    if out.gate_weights is not None:
        result["gate_weights"] = {name: float(out.gate_weights[0][m].mean()) for m, name in enumerate(modalities)}
    return result


def _contributions(
    model: nn.Module, inputs: dict[str, Tensor], mask: Tensor, predicted: int, modalities: list[str]
) -> dict[str, float]:
    """Shapley contribution of each given modality to the probability of the predicted class (the value of a subset:
    that class's probability from it; no modality: 1/K), from one prediction per subset of the given modalities."""
    from simmlm.evaluation.evaluate import modality_contributions
    from simmlm.methods.base import outputs_for_subsets
    from simmlm.subsets import bits_to_mask, mask_to_bits

    have = int(mask_to_bits(mask)[0])
    codes = [c for c in range(1, 1 << len(modalities)) if c & ~have == 0]
    subset_masks = [bits_to_mask(torch.tensor([c]), len(modalities)) for c in codes]
    outputs = outputs_for_subsets(model, inputs, mask, subset_masks)
    probs = torch.stack([o.logits.float().softmax(-1) for o in outputs])  # [S, 1, K]
    phi = modality_contributions(probs, torch.tensor([predicted]), codes, torch.tensor([have]), len(modalities))
    return {name: round(float(phi["probability"][0, m]), 6) for m, name in enumerate(modalities) if have >> m & 1}


@torch.no_grad()
def segment_files(
    model: nn.Module,
    method: str,
    b: BratsConfig,
    modalities: list[str],
    files: dict[str, Path],
    output: Path | None = None,
) -> dict[str, Any]:
    """Segment one case given as NIfTI files (any subset of the sequences, optionally ``brain_mask``).

    Returns the method, the sequences used, the volume of each region in mL, the gate weights per sequence and
    region, and the mean per-voxel entropy (nats, summed over regions) inside the predicted whole tumour and inside
    the brain. With ``output``, the label map (``label_convention`` of the run) is written as NIfTI in the input's
    space (probabilities upsampled trilinearly, then thresholded at 0.5).
    """
    import nibabel as nib
    import torch.nn.functional as F

    from simmlm.datasets.brats.loader import REGIONS, brain_region, preprocess_volumes, read_nifti, regions_to_labels
    from simmlm.evaluation.evaluate import region_gate_weights
    from simmlm.evaluation.inferers import sliding_window_subsets

    arrays = {}
    for name, path in files.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"{name}: file {path} does not exist")
        arrays[name] = read_nifti(Path(path))
    (first, (reference, affine)) = next(iter(arrays.items()))
    for name, (data, other) in arrays.items():
        if data.shape != reference.shape:
            raise ValueError(f"{files[name]}: shape {data.shape} differs from {files[first]} {reference.shape}")
        if not np.allclose(other, affine, atol=1e-3):
            raise ValueError(f"{files[name]}: affine differs from {files[first]}")
    volumes = {n: torch.from_numpy(a) for n, (a, _) in arrays.items() if n != "brain_mask"}
    brain = brain_region(volumes, arrays["brain_mask"][0] if "brain_mask" in arrays else None)
    inputs, mask, brain_small, box = preprocess_volumes(volumes, brain, modalities, b.downsample)
    batch = {k: v.unsqueeze(0) for k, v in inputs.items()}
    (out,) = sliding_window_subsets(model, batch, mask.unsqueeze(0), [mask.unsqueeze(0)], b.crop_size, b.overlap)
    probs = out.logits[0].float().sigmoid()
    predicted = probs > 0.5
    voxel_ml = float(np.abs(np.linalg.det(affine[:3, :3]))) * b.downsample**3 / 1000.0
    entropy = binary_entropy(probs)
    tumour = predicted[0] & brain_small
    result: dict[str, Any] = {
        "method": method,
        "modalities": [name for name in modalities if name in volumes],
        "region_volumes_ml": {
            r: round(float(predicted[k][brain_small].sum()) * voxel_ml, 3) for k, r in enumerate(REGIONS)
        },
        "gate_weights": None,
        "mean_entropy_tumour": float(entropy[tumour].mean()) if tumour.any() else None,
        "mean_entropy_brain": float(entropy[brain_small].mean()),
        "max_entropy": 3 * math.log(2),
        "output": None,
    }
    if out.gate_weights is not None:
        weights = region_gate_weights(out.gate_weights[0])
        result["gate_weights"] = {
            name: dict(zip(REGIONS, weights[m].tolist(), strict=True)) for m, name in enumerate(modalities) if mask[m]
        }
    if output is not None:
        size = [s.stop - s.start for s in box]
        full = F.interpolate(probs.unsqueeze(0), size=size, mode="trilinear", align_corners=False)[0]
        labels = torch.zeros(reference.shape, dtype=torch.uint8)
        labels[box] = regions_to_labels(full, b.label_convention)
        with atomic_path(output) as tmp:  # keeps the .nii.gz suffix; renamed when complete
            nib.save(nib.Nifti1Image(labels.numpy(), affine), str(tmp))
        result["output"] = str(output)
    return result


@torch.no_grad()
def label_image_files(
    model: nn.Module, method: str, meta: dict[str, Any], files: dict[str, Any], reader: Any, output: Path | None
) -> dict[str, Any]:
    """2-D semantic segmentation of one sample given as image files of any subset of the modalities (each read by
    ``reader``, the dataset's): the share of the image each class takes, the gate weights and, with ``output``, the
    label map written as ``.png`` (8-bit class indices) or ``.npy``."""
    modalities: list[str] = list(meta["modalities"])
    inputs, mask = _read_sample(meta, files, reader)
    out = model(inputs, mask)
    labels = out.logits[0].argmax(0)  # [H, W]
    classes = meta["preprocessing"].get("classes") or [str(k) for k in range(out.logits.shape[1])]
    result: dict[str, Any] = {
        "method": method,
        "modalities": [name for name in modalities if name in files],
        "class_shares": {c: float((labels == k).double().mean()) for k, c in enumerate(classes)},
        "gate_weights": None,
        "output": None,
    }
    if out.gate_weights is not None:
        result["gate_weights"] = {name: float(out.gate_weights[0][m].mean()) for m, name in enumerate(modalities)}
    if output is not None:
        if output.suffix not in (".png", ".npy"):
            raise ValueError(f"--output {output}: write the label map as .png or .npy")
        if output.suffix == ".png" and len(classes) > 256:
            raise ValueError(f"--output {output}: {len(classes)} classes do not fit an 8-bit PNG; use .npy")
        with atomic_path(output) as tmp:
            if output.suffix == ".npy":
                with tmp.open("wb") as handle:
                    np.save(handle, labels.cpu().numpy().astype(np.int64))
            else:
                from PIL import Image

                Image.fromarray(labels.cpu().numpy().astype(np.uint8)).save(tmp, format="PNG")
        result["output"] = str(output)
    return result
