"""Predict from files with a trained run: the preprocessing fitted in training is read from the checkpoint.

Supported inputs. avMNIST runs: ``image`` as PNG (28x28, grey or RGB) or NPY (28x28 grey levels 0..255, as
MNIST); ``audio`` as WAV (any rate; it is decimated by 3 and turned into the 20x20 MFCC map of training) or NPY (a
raw, unscaled 20x20 MFCC map). Folder-dataset runs (your own data): one ``.npy`` per modality, raw as in the dataset
folder (the training standardisation is applied here). BraTS runs: one NIfTI volume per MRI sequence (optionally a
``brain_mask`` NIfTI; otherwise the brain is where any sequence is non-zero), preprocessed as in training and
segmented by sliding window. Any subset of the modalities may be given; the others are marked missing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simmlm.engine.checkpoint import load_checkpoint


def _finite(array: np.ndarray, path: Path) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: contains NaN or infinite values")
    return array


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from err


def read_avmnist_input(name: str, path: Path, preprocessing: dict[str, Any]) -> torch.Tensor:
    """One modality file -> the model's input tensor ``[1, ...]`` (without batch axis), scaled as in training."""
    from simmlm.data.avmnist import AUDIO_FRONTENDS, AudioFrontend, mfcc_map, scale_audio, scale_image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: file {path} does not exist")
    suffix = path.suffix.lower()
    if name == "image":
        if suffix == ".png":
            import matplotlib.image

            try:
                pixels = np.asarray(matplotlib.image.imread(path), dtype=np.float32)
            except (OSError, ValueError, SyntaxError) as err:
                raise ValueError(f"{path}: not a readable PNG ({err})") from err
            if pixels.ndim == 3:
                pixels = pixels[..., :3].mean(-1)
            grey = pixels * 255.0 if pixels.max() <= 1.0 else pixels
        elif suffix == ".npy":
            grey = _read_npy(path).squeeze()
        else:
            raise ValueError(f"{path}: images must be .png or .npy, got {suffix or 'no suffix'!r}")
        if grey.shape != (28, 28):
            raise ValueError(f"{path}: image must be 28x28, got {list(grey.shape)}")
        return torch.from_numpy(scale_image(_finite(grey, path))).unsqueeze(0)
    if name == "audio":
        if suffix == ".wav":
            # runs saved before the front end was an option used the anti-aliased one
            stored = preprocessing.get("audio_frontend")
            mfcc, _ = mfcc_map(path, AudioFrontend(**stored) if stored else AUDIO_FRONTENDS["antialiased"])
        elif suffix == ".npy":
            mfcc = _read_npy(path).squeeze()
            if mfcc.shape != (20, 20):
                raise ValueError(f"{path}: an MFCC map must be 20x20, got {list(mfcc.shape)}")
        else:
            raise ValueError(f"{path}: audio must be .wav or .npy, got {suffix or 'no suffix'!r}")
        return torch.from_numpy(scale_audio(_finite(mfcc, path), preprocessing)).unsqueeze(0)
    raise ValueError(f"unknown modality {name!r} for avMNIST; known: image, audio")


def read_folder_input(name: str, path: Path, preprocessing: dict[str, Any]) -> torch.Tensor:
    """One raw ``.npy`` of a folder-dataset modality -> the model's input tensor, standardised as in training."""
    from simmlm.data.folder import apply_standardization, read_npy

    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(
            f"{path}: inputs of folder-dataset runs must be .npy files, got {path.suffix or 'no suffix'!r}"
        )
    array = read_npy(path)
    expected = (preprocessing.get("shapes") or {}).get(name)
    if expected is not None and list(array.shape) != list(expected):
        raise ValueError(f"{path}: {name} has shape {list(array.shape)}, the model expects {list(expected)}")
    stats = (preprocessing.get("standardize") or {}).get(name)
    return torch.from_numpy(apply_standardization(array, stats) if stats else array)


def predict_files(run_dir: str | Path, files: dict[str, Path], output: Path | None = None) -> dict[str, Any]:
    """Prediction, class probabilities (or region volumes), gate weights and entropy for the given files.

    ``output`` (segmentation runs only) receives the predicted label map as NIfTI, in the input's space.
    """
    model, cfg, meta = load_checkpoint(Path(run_dir) / "model.pt")
    modalities: list[str] = list(meta["modalities"])
    extra = {"brain_mask"} if cfg.data.dataset == "brats" else set()
    unknown = sorted(set(files) - set(modalities) - extra)
    if unknown:
        raise ValueError(f"unknown modality {unknown}; this model takes {modalities}")
    if not set(files) - extra:
        raise ValueError(f"give at least one input; this model takes {modalities}")
    if cfg.data.dataset == "brats":
        return predict_volume(model, cfg, modalities, files, output)
    if output is not None:
        raise ValueError("--output is for segmentation runs (a predicted NIfTI label map)")
    preprocessing = meta.get("preprocessing") or {}
    readers = {"avmnist": read_avmnist_input, "folder": read_folder_input}
    reader = readers.get(preprocessing.get("dataset", ""))
    if reader is None:
        raise ValueError("this run stores no known preprocessing; predict supports avMNIST and folder-dataset runs")
    shapes = {name: tuple(shape) for name, shape in meta["input_shapes"].items()}
    inputs = {name: torch.zeros(1, *shapes[name]) for name in modalities}
    for name, path in files.items():
        tensor = reader(name, path, preprocessing)
        if tuple(tensor.shape) != shapes[name]:
            raise ValueError(f"{path}: gives {list(tensor.shape)}, the model expects {list(shapes[name])}")
        inputs[name] = tensor.unsqueeze(0)
    mask = torch.tensor([[name in files for name in modalities]])
    with torch.no_grad():
        out = model(inputs, mask)
    probs = out.logits.softmax(-1)[0]
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum().item()
    result: dict[str, Any] = {
        "method": cfg.method,
        "modalities": [name for name in modalities if name in files],
        "prediction": int(probs.argmax()),
        "class_name": (preprocessing.get("classes") or [None] * len(probs))[int(probs.argmax())],
        "probabilities": [round(p, 6) for p in probs.tolist()],
        "entropy": entropy,
        "max_entropy": math.log(len(probs)),
        "gate_weights": None,
    }
    if out.gate_weights is not None:
        weights = out.gate_weights[0]
        result["gate_weights"] = {name: float(weights[m].mean()) for m, name in enumerate(modalities)}
    return result


@torch.no_grad()
def predict_volume(
    model: torch.nn.Module, cfg: Any, modalities: list[str], files: dict[str, Path], output: Path | None = None
) -> dict[str, Any]:
    """Segment one case given as NIfTI files (any subset of the sequences, optionally ``brain_mask``).

    Returns the method, the sequences used, the volume of each region in mL, the gate weights per sequence and
    region, and the mean per-voxel entropy (nats, summed over regions) inside the predicted whole tumour and inside
    the brain. With ``output``, the label map (``label_convention`` of the run) is written as NIfTI in the input's
    space (probabilities upsampled trilinearly, then thresholded at 0.5).
    """
    import nibabel as nib
    import torch.nn.functional as F

    from simmlm.data.brats import REGIONS, brain_region, preprocess_volumes, read_nifti, regions_to_labels
    from simmlm.evaluate import region_gate_weights
    from simmlm.methods.predict import sliding_window_subsets
    from simmlm.segmentation_figures import binary_entropy

    b = cfg.data.brats
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
        "method": cfg.method,
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
        output = Path(output)
        tmp = output.with_name("tmp-" + output.name)  # keeps the .nii.gz suffix; renamed when complete
        nib.save(nib.Nifti1Image(labels.numpy(), affine), str(tmp))
        tmp.replace(output)
        result["output"] = str(output)
    return result
