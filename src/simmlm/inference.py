"""Predict from files with a trained run: the preprocessing fitted in training is read from the checkpoint.

Supported inputs. avMNIST runs: ``image`` as PNG (28x28, grey or RGB) or NPY (28x28 grey levels 0..255, as
MNIST); ``audio`` as WAV (any rate; it is decimated by 3 and turned into the 20x20 MFCC map of training) or NPY (a
raw, unscaled 20x20 MFCC map). Folder-dataset runs (your own data): one ``.npy`` per modality, raw as in the dataset
folder (the training standardisation is applied here). Any subset of the modalities may be given; the others are
marked missing.
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
    from simmlm.data.avmnist import mfcc_map, scale_audio, scale_image

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
            mfcc, _ = mfcc_map(path)
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


def predict_files(run_dir: str | Path, files: dict[str, Path]) -> dict[str, Any]:
    """Prediction, class probabilities, gate weights and predictive entropy for the given modality files."""
    model, cfg, meta = load_checkpoint(Path(run_dir) / "model.pt")
    modalities: list[str] = list(meta["modalities"])
    unknown = sorted(set(files) - set(modalities))
    if unknown:
        raise ValueError(f"unknown modality {unknown}; this model takes {modalities}")
    if not files:
        raise ValueError(f"give at least one input; this model takes {modalities}")
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
