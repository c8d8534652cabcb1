"""Intra-modal missingness: sequence datasets whose frames can be missing inside a present modality.

A modality given as a sequence ``[N, T, ...]`` (frames first) can lose frames: DREAM's second setting,
"randomly masking different proportions of frames within each modality's input sequence". For every sample and
present modality, ``k = round(r * T)`` (half up) of its ``T`` frames, chosen uniformly at random, are zeroed.
:class:`SequenceFeatureDataset` keeps the frame masks (``frame_masks[name]``: bool ``[N, T]``, True where a frame
is kept, all False for a missing modality) and zero-fills the dropped frames, so the content always agrees with
the masks; the sequence experts (:mod:`simmlm.nn.sequence`) treat an all-zero frame as absent. At ``r = 1`` every
frame of a present modality is zeroed while its modality mask stays True: only the frame mask tells.

DREAM's heterogeneous protocol (its appendix A.4, :func:`heterogeneous_missing`) mixes both kinds: of the samples, a
share ``2η/5`` lose whole modalities, ``2η/5`` lose frames, ``η/5`` both, and the remaining ``1 - η`` keep everything.

Used by the sequence datasets of :mod:`simmlm.datasets` (MOSI / MOSEI feature pickles, avMNIST's sequence layout).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from simmlm.data.base import TensorMultimodalDataset

SPLITS = ("train", "val", "test")
_INTRA_STREAM = 1  # the random stream of frame draws (0: inter-modal draws of the seqfeatures loader)
_MIXED_STREAM = 2  # the heterogeneous protocol's draws
#: The groups of :func:`heterogeneous_missing`, by their code in ``groups``.
GROUPS = ("complete", "modalities missing", "frames missing", "both")


class SequenceFeatureDataset(TensorMultimodalDataset):
    """A :class:`TensorMultimodalDataset` of ``[N, T, ...]`` sequences with per-frame availability.

    ``__getitem__`` still yields ``(inputs, mask, target)``; the frame masks live in :attr:`frame_masks`
    (index them with the same indices). Frames whose mask is False, and every frame of a missing modality,
    are zero-filled here, so the content always agrees with the masks.

    Args:
        inputs: modality name -> tensor ``[N, T, ...]``; the dict order is the modality order.
        mask: boolean ``[N, M]`` modality availability.
        targets: ``[N]`` targets.
        frame_masks: modality name -> bool ``[N, T]``, True where a frame is present; None means all present.
    """

    def __init__(
        self, inputs: dict[str, Tensor], mask: Tensor, targets: Tensor, frame_masks: dict[str, Tensor] | None = None
    ) -> None:
        super().__init__(inputs, mask, targets)
        if frame_masks is None:
            frame_masks = {k: torch.ones(v.shape[:2], dtype=torch.bool) for k, v in self.inputs.items()}
        if set(frame_masks) != set(self.inputs):
            raise ValueError(f"frame_masks has keys {sorted(frame_masks)}, expected the modalities {self.modalities}")
        self.frame_masks: dict[str, Tensor] = {}
        for m, (name, tensor) in enumerate(self.inputs.items()):
            frames = frame_masks[name]
            expected = tuple(tensor.shape[:2])
            if tensor.ndim < 2 or frames.dtype != torch.bool or tuple(frames.shape) != expected:
                raise ValueError(
                    f"frame mask of {name!r} must be bool {list(expected)} for inputs of shape "
                    f"{tuple(tensor.shape)}, got {frames.dtype} {tuple(frames.shape)}"
                )
            frames = frames & mask[:, m : m + 1]
            # self.inputs[name] is the base class's own zero-filled copy: safe to modify in place.
            tensor.masked_fill_(~frames.reshape(*expected, *([1] * (tensor.ndim - 2))), 0)
            self.frame_masks[name] = frames


def split_ratios(ratio: float | Mapping[str, float]) -> dict[str, float]:
    """The intra-modal missing ratio of every split (one for all, or per split; a split left out gets 0)."""
    ratios = dict(ratio) if isinstance(ratio, Mapping) else dict.fromkeys(SPLITS, ratio)
    bad = {k: v for k, v in ratios.items() if k not in SPLITS or not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(f"intra_missing_ratio must be in [0, 1] for splits {list(SPLITS)}, got {bad}")
    return {split: float(ratios.get(split, 0.0)) for split in SPLITS}


def frame_mask(n: int, frames: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Bool ``[n, frames]``: in each row exactly ``round(ratio * frames)`` (half up) random frames are False."""
    k = int(np.floor(ratio * frames + 0.5))
    if k == 0:
        return np.ones((n, frames), dtype=bool)
    ranks = rng.random((n, frames)).argsort(axis=1).argsort(axis=1)
    return ranks >= k


def frame_masks(frames: Mapping[str, int], n: int, ratio: float, seed: int, split: str) -> dict[str, Tensor]:
    """Frame masks of one split: modality name -> bool ``[n, T]``; each split and modality draws from its own
    stream of ``seed``, so the draws of one do not depend on the others."""
    index = SPLITS.index(split)
    return {
        name: torch.from_numpy(frame_mask(n, count, ratio, np.random.default_rng([seed, index, _INTRA_STREAM, m])))
        for m, (name, count) in enumerate(frames.items())
    }


def describe_ratios(ratios: Mapping[str, float]) -> str:
    """One sentence part: the frame-missing ratio of each split, or none."""
    if not any(ratios.values()):
        return "none"
    shown = ", ".join(f"{split} {value:g}" for split, value in ratios.items())
    return f"frames zeroed per present modality, by split: {shown}"


def heterogeneous_missing(
    n: int, frames: Mapping[str, int], rate: float, frame_ratio: float, seed: int, split: str
) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """DREAM's heterogeneous missingness (appendix A.4) for one split of ``n`` samples: ``round(2η/5 n)`` samples
    (``η = rate``) lose whole modalities (a uniformly random proper subset of them is kept, never none), as many
    lose frames (``round(frame_ratio * T)`` of each modality's ``T``, as :func:`frame_mask`), ``round(η/5 n)``
    lose both (frames of the modalities they keep), and the rest keep everything; who falls in which group is a
    uniformly random draw.

    Returns:
        the modality mask ``[n, M]``, the frame masks (name -> ``[n, T]``) and each sample's group ``[n]`` (its
        index in :data:`GROUPS`).
    """
    if not 0.0 <= rate <= 1.0 or not 0.0 <= frame_ratio <= 1.0:
        raise ValueError(f"rate and frame_ratio must be in [0, 1], got {rate} and {frame_ratio}")
    names = list(frames)
    if rate > 0 and len(names) < 2:
        raise ValueError("the heterogeneous protocol drops whole modalities: it needs at least two")
    rng = np.random.default_rng([seed, SPLITS.index(split), _MIXED_STREAM])
    sizes = [int(np.floor(share * rate * n + 0.5)) for share in (0.4, 0.4, 0.2)]
    groups = np.zeros(n, dtype=np.int64)
    order = rng.permutation(n)
    start = 0
    for code, size in enumerate(sizes, 1):
        groups[order[start : start + size]] = code
        start += size
    mask = np.ones((n, len(names)), dtype=bool)
    lose = np.flatnonzero((groups == 1) | (groups == 3))
    for row in lose:
        keep = np.zeros(len(names), dtype=bool)
        while not 0 < keep.sum() < len(names):
            keep = rng.random(len(names)) < 0.5
        mask[row] = keep
    thin = (groups == 2) | (groups == 3)
    masks = {}
    for name, count in frames.items():
        drawn = frame_mask(n, count, frame_ratio, rng)
        masks[name] = torch.from_numpy(np.where(thin[:, None], drawn, True))
    return torch.from_numpy(mask), masks, torch.from_numpy(groups)
