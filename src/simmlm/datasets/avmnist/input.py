"""One avMNIST input file -> the model's input tensor, scaled as in training (``simmlm predict``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from simmlm.datasets.avmnist.loader import (
    AUDIO_FRONTENDS,
    AudioFrontend,
    as_sequences,
    mfcc_map,
    scale_audio,
    scale_image,
)


def _finite(array: np.ndarray, path: Path) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: contains NaN or infinite values")
    return array


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from err


def read_input(name: str, path: Path, preprocessing: dict[str, Any]) -> torch.Tensor:
    """One modality file -> the model's input tensor (without batch axis), scaled as in training: ``[1, 28, 28]`` /
    ``[1, 20, 20]``, or ``[T, D]`` for a model trained on the sequence layout."""
    tensor = _read_map(name, path, preprocessing)
    return as_sequences({name: tensor[0]})[name] if preprocessing.get("layout") == "sequences" else tensor


def _read_map(name: str, path: Path, preprocessing: dict[str, Any]) -> torch.Tensor:
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
