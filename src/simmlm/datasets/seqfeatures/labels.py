"""The labels of a sentiment or emotion feature pickle, as training targets.

- A **sentiment score** (MOSI / MOSEI, -3 to 3) per sample: ``[N]``, ``[N, 1]`` or ``[N, 1, 1]``; the tasks
  ``binary`` (score > 0), ``classes7`` (``round(clip(score, -3, 3)) + 3``) and ``regression`` (the score) read it.
- **IEMOCAP's four emotions** in MulT's ``iemocap_data.pkl``: ``labels`` ``[N, 4, 2]``, per emotion a one-hot pair
  (index 1: the emotion is present), emotions in MulT's order neutral, happy, sad, angry. The task ``emotions4``
  reads the present emotion as one of four classes; a sample with none or several present is refused, with the
  count. Integer class ids ``[N]`` in 0..3 are read as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

Task = Literal["regression", "binary", "classes7", "emotions4"]
NUM_CLASSES = {"regression": 1, "binary": 2, "classes7": 7, "emotions4": 4}
#: MulT's order of IEMOCAP's emotions in ``labels[:, k, :]``.
EMOTIONS = ("neutral", "happy", "sad", "angry")
CLASS_NAMES = {
    "binary": ["non-positive", "positive"],
    "classes7": [str(k) for k in range(-3, 4)],
    "emotions4": list(EMOTIONS),
}
RULES = {
    "binary": "binary: score > 0 -> 1, else 0",
    "classes7": "classes7: round(clip(score, -3, 3)) + 3",
    "regression": "regression on the score",
    "emotions4": "emotions4: the one emotion marked present of " + ", ".join(EMOTIONS),
}


def numeric(content: Mapping[str, Any], key: str, what: str, where: str) -> np.ndarray:
    """``content[key]`` as a numeric array; one clear error for a missing key, a ragged or non-numeric array."""
    if key not in content:
        raise ValueError(
            f"{where} has no {what} key {key!r}; available keys: {sorted(map(str, content))}"
            + (
                ". Name the keys this file uses with --set 'data.modalities=[...]' (modalities= in Python)."
                if what == "modality"
                else ""
            )
        )
    try:
        array = np.asarray(content[key])
    except ValueError as err:  # ragged lists
        raise ValueError(f"{where}: {what} {key!r} is not a rectangular array ({err})") from err
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{where}: {what} {key!r} must be numeric, got dtype {array.dtype}")
    return array


def read_targets(content: Mapping[str, Any], key: str, where: str, task: Task) -> Tensor:
    """The split's training targets for ``task`` (see the module docstring)."""
    array = numeric(content, key, "label", where).astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: labels {key!r} hold {int((~np.isfinite(array)).sum())} non-finite values")
    if task == "emotions4":
        return torch.from_numpy(_emotions(array, key, where))
    if array.ndim == 0 or array.size != len(array):
        raise ValueError(
            f"{where}: labels {key!r} have shape {array.shape}; expected one sentiment score per sample "
            "([N], [N, 1] or [N, 1, 1])" + ("; IEMOCAP's emotions: set data.task=emotions4" if array.ndim == 3 else "")
        )
    scores = array.reshape(len(array))
    if task == "binary":
        return torch.from_numpy((scores > 0).astype(np.int64))
    if task == "classes7":
        return torch.from_numpy(np.round(np.clip(scores, -3.0, 3.0)).astype(np.int64) + 3)
    return torch.from_numpy(scores.astype(np.float32))


def _emotions(array: np.ndarray, key: str, where: str) -> np.ndarray:
    """Class ids 0..3 from MulT's ``[N, 4, 2]`` one-hot pairs, or from ``[N]`` ids."""
    if array.ndim == 1:
        if not np.isin(array, np.arange(len(EMOTIONS))).all():
            raise ValueError(f"{where}: labels {key!r} must be emotion ids 0..{len(EMOTIONS) - 1}")
        return array.astype(np.int64)
    if array.shape[1:] != (len(EMOTIONS), 2):
        raise ValueError(
            f"{where}: labels {key!r} have shape {array.shape}; IEMOCAP's emotions are MulT's [N, 4, 2] (per "
            "emotion a one-hot pair, index 1 present) or ids [N]"
        )
    present = array[:, :, 1] > 0.5
    count = present.sum(1)
    if (count != 1).any():
        raise ValueError(
            f"{where}: labels {key!r}: {int((count == 0).sum())} samples have no emotion marked present and "
            f"{int((count > 1).sum())} several; emotions4 needs exactly one per sample"
        )
    return present.argmax(1).astype(np.int64)
