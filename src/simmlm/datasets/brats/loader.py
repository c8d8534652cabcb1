"""BraTS-style 3D MRI cases from NIfTI files: loading, region labels, normalisation, crops.

On-disk layout: one folder per split (``train``, ``validation``, ``test`` by default), one sub-folder per case,
and in each case folder one NIfTI file per MRI sequence plus a label map (and optionally a brain mask). File
names are patterns in which ``{case}`` stands for the case folder's name, so both common layouts load by
configuration:

- BraTS 2018-2021: ``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` (the defaults of :class:`NiftiLayout`);
- the BraTS 2015 cases in ``shared/data/brats2015_flair_t1c``: ``Flair_subtrMeanDivStd.nii.gz``,
  ``T1c_subtrMeanDivStd.nii.gz``, ``OTMultiClass.nii.gz``, ``brainmask.nii.gz`` (``configs/brats_cpu.yaml``).

Labels become three overlapping binary regions, whole tumour (WT), tumour core (TC) and enhancing tumour (ET):

==========  ===================================================  =========  ======  ====
convention  labels                                               WT         TC      ET
==========  ===================================================  =========  ======  ====
brats2015   1 necrosis, 2 oedema, 3 non-enhancing, 4 enhancing   1,2,3,4    1,3,4   4
brats2018   1 necrosis/non-enhancing, 2 oedema, 4 enhancing      1,2,4      1,4     4
==========  ===================================================  =========  ======  ====
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from simmlm.datasets.brats import NiftiLayout

REGIONS = ("wt", "tc", "et")
LABEL_REGIONS: dict[str, dict[str, tuple[int, ...]]] = {
    "brats2015": {"wt": (1, 2, 3, 4), "tc": (1, 3, 4), "et": (4,)},
    "brats2018": {"wt": (1, 2, 4), "tc": (1, 4), "et": (4,)},
}
Batch = tuple[dict[str, Tensor], Tensor, Tensor]


def label_to_regions(labels: Tensor, convention: str) -> Tensor:
    """Integer label map ``[*S]`` -> float ``[3, *S]`` binary WT / TC / ET maps (module docstring table)."""
    regions = LABEL_REGIONS[convention]
    allowed = {0, *regions["wt"]}
    present = {int(v) for v in torch.unique(labels).tolist()}
    unknown = sorted(present - allowed)
    if unknown:
        raise ValueError(f"label values {unknown} are not in the {convention} convention {sorted(allowed)}")
    return torch.stack([torch.isin(labels, torch.tensor(regions[r])) for r in REGIONS]).float()


def read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(float32 voxel array, 4x4 affine) of a NIfTI file; ``ValueError`` naming the file if unreadable."""
    import nibabel as nib

    try:
        image: Any = nib.load(str(path))
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as err:  # nibabel raises many types (ImageFileError, EOFError, zlib errors, OSError)
        raise ValueError(f"{path}: unreadable NIfTI file ({type(err).__name__}: {err})") from err
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: contains NaN or infinite values")
    return data, np.asarray(image.affine)


class Case(Protocol):
    """What a dataset's case offers: a :class:`VolumeCase` in memory, or a
    :class:`~simmlm.datasets.brats.volume_cache.CachedCase` whose arrays are read from disk on access."""

    @property
    def case_id(self) -> str: ...
    @property
    def inputs(self) -> dict[str, Tensor]: ...
    @property
    def mask(self) -> Tensor: ...
    @property
    def target(self) -> Tensor: ...
    @property
    def brain(self) -> Tensor: ...


@dataclass
class VolumeCase:
    """One preprocessed case: inputs ``[1, D, H, W]`` (zeros where missing), mask ``[M]``, regions ``[3, D, H, W]``."""

    case_id: str
    inputs: dict[str, Tensor]
    mask: Tensor
    target: Tensor
    brain: Tensor


def brain_region(volumes: dict[str, Tensor], brain_mask: np.ndarray | None = None) -> Tensor:
    """The brain: ``brain_mask > 0.5`` when a mask is given, else the voxels where any sequence is non-zero."""
    if brain_mask is not None:
        return torch.from_numpy(brain_mask) > 0.5
    return torch.stack([v != 0 for v in volumes.values()]).any(0)


def normalise_in_brain(volume: Tensor, brain: Tensor) -> Tensor:
    """Z-score with the mean and std of the brain voxels; 0 outside the brain."""
    values = volume[brain]
    if values.numel() < 2:
        raise ValueError("brain mask has fewer than 2 voxels")
    normalised = (volume - values.mean()) / values.std().clamp_min(1e-6)
    return torch.where(brain, normalised, torch.zeros(()))


def _brain_box(brain: Tensor, margin: int) -> tuple[slice, ...]:
    coords = brain.nonzero()
    if len(coords) == 0:
        raise ValueError("brain mask is empty")
    low, high = coords.min(0).values, coords.max(0).values
    return tuple(
        slice(max(0, int(lo) - margin), min(size, int(hi) + 1 + margin))
        for lo, hi, size in zip(low, high, brain.shape, strict=True)
    )


def _downsample(volume: Tensor, factor: int, threshold: bool) -> Tensor:
    """Average ``factor``^3 blocks (ceil mode); binary maps are re-binarised at 0.5."""
    if factor == 1:
        return volume
    pooled = F.avg_pool3d(volume.unsqueeze(0), factor, ceil_mode=True, count_include_pad=False).squeeze(0)
    return (pooled >= 0.5).float() if threshold else pooled


def load_case(folder: Path, layout: NiftiLayout, downsample: int = 1, margin: int = 4) -> VolumeCase:
    """Read, check and preprocess one case folder.

    Steps: read every sequence (missing files are an error unless ``layout.allow_missing``), check that shapes
    and affines agree, map labels to WT/TC/ET, z-score each sequence inside the brain mask, crop to the brain's
    bounding box (plus ``margin`` voxels) and average-pool by ``downsample`` (regions and mask re-binarised).
    """
    case = folder.name
    files = {name: folder / pattern.format(case=case) for name, pattern in layout.modalities.items()}
    present = {name: path for name, path in files.items() if path.is_file()}
    missing = sorted(set(files) - set(present))
    if missing and not layout.allow_missing:
        raise FileNotFoundError(f"case {folder}: missing {', '.join(files[m].name for m in missing)}")
    if not present:
        raise FileNotFoundError(f"case {folder}: none of the modality files {[p.name for p in files.values()]}")
    label_path = folder / layout.label.format(case=case)
    if not label_path.is_file():
        raise FileNotFoundError(f"case {folder}: missing label file {label_path.name}")
    arrays = {name: read_nifti(path) for name, path in present.items()}
    labels, label_affine = read_nifti(label_path)
    reference = (label_path, labels.shape, label_affine)
    extra = {}
    if layout.brain_mask is not None:
        mask_path = folder / layout.brain_mask.format(case=case)
        if not mask_path.is_file():
            raise FileNotFoundError(f"case {folder}: missing brain mask file {mask_path.name}")
        extra[mask_path] = read_nifti(mask_path)
    for path, (data, affine) in [*((present[n], a) for n, a in arrays.items()), *extra.items()]:
        if data.shape != reference[1]:
            raise ValueError(f"case {folder}: {path.name} has shape {data.shape}, {label_path.name} has {labels.shape}")
        if not np.allclose(affine, reference[2], atol=1e-3):
            raise ValueError(f"case {folder}: {path.name} and {label_path.name} have different affines")
    volumes = {name: torch.from_numpy(data) for name, (data, _) in arrays.items()}
    brain = brain_region(volumes, next(iter(extra.values()))[0] if extra else None)
    rounded = np.rint(labels)
    if not np.allclose(rounded, labels):
        raise ValueError(f"{label_path}: label map has non-integer values")
    target = label_to_regions(torch.from_numpy(rounded).long(), layout.label_convention)
    inputs, mask, brain_small, box = preprocess_volumes(volumes, brain, list(layout.modalities), downsample, margin)
    return VolumeCase(
        case_id=case,
        inputs=inputs,
        mask=mask,
        target=_downsample(target[(slice(None), *box)], downsample, threshold=True),
        brain=brain_small,
    )


def preprocess_volumes(
    volumes: dict[str, Tensor], brain: Tensor, modalities: Sequence[str], downsample: int = 1, margin: int = 4
) -> tuple[dict[str, Tensor], Tensor, Tensor, tuple[slice, ...]]:
    """Full-size sequences ``{name: [D, H, W]}`` (any subset of ``modalities``) -> model inputs.

    Each sequence is z-scored inside ``brain``, cropped to the brain's bounding box (plus ``margin``) and
    average-pooled by ``downsample``; absent sequences become zeros with mask ``False``.

    Returns:
        ``(inputs {name: [1, d, h, w]}, mask [M], brain [d, h, w], box)``; ``box`` is the crop in the full volume.
    """
    box = _brain_box(brain, margin)
    brain_small = _downsample(brain[box].float().unsqueeze(0), downsample, threshold=True)
    inputs = {}
    for name in modalities:
        if name in volumes:
            x = normalise_in_brain(volumes[name], brain)[box]
            inputs[name] = _downsample(x.unsqueeze(0), downsample, threshold=False)
        else:
            inputs[name] = torch.zeros_like(brain_small)
    mask = torch.tensor([name in volumes for name in modalities])
    return inputs, mask, brain_small[0].bool(), box


def regions_to_labels(regions: Tensor, convention: str) -> Tensor:
    """Binary WT / TC / ET maps ``[3, *S]`` -> a label map in ``convention`` (inverse of :func:`label_to_regions`).

    ET -> 4; TC outside ET -> 1; WT outside TC -> 2 (oedema). Nested regions are assumed (TC inside WT, ET inside
    TC); a voxel predicted in an inner region but not an outer one takes the inner label.
    """
    wt, tc, et = (regions > 0.5).unbind(0)
    labels = torch.zeros(wt.shape, dtype=torch.uint8)
    labels[wt] = 2
    labels[tc] = 1
    labels[et] = 4
    if convention not in LABEL_REGIONS:
        raise ValueError(f"label_convention must be one of {sorted(LABEL_REGIONS)}, got {convention!r}")
    return labels


class VolumeDataset(Dataset[Batch]):
    """Whole preprocessed cases (of different sizes); item ``i`` is ``(inputs [1, ...], mask [M], target)``."""

    def __init__(self, cases: Sequence[Case], modalities: Sequence[str]) -> None:
        if not cases:
            raise ValueError("volume dataset is empty")
        self.cases = list(cases)
        self._modalities = list(modalities)

    @property
    def modalities(self) -> list[str]:
        return self._modalities

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> Batch:
        case = self.cases[index]
        return case.inputs, case.mask, case.target


class RandomCropDataset(Dataset[Batch]):
    """Foreground-biased random crops with random flips, for training (MONAI transforms).

    Item ``i`` is a crop of case ``i % len(cases)``: centred on a tumour voxel with probability
    ``pos_fraction``, else on a brain voxel (``RandCropByPosNegLabeld``); volumes smaller than the crop are
    zero-padded first.

    Reproducible and order-free: the key ``(epoch, i)`` (a plain ``i`` is epoch 0) reseeds the transforms from
    ``(seed, epoch, i)`` alone (``seed`` from :meth:`set_random_state`), so a crop does not depend on which
    crops were drawn before it or by which process, data-loader worker or DDP rank. An interrupted run that
    resumes at epoch ``e`` therefore draws exactly the crops the uninterrupted run drew, and a 2-rank run the
    same crops as a 1-rank run. A list of keys gives a collated batch (what
    ``ShardedBatchSampler(..., with_epoch=True)`` yields).
    """

    def __init__(
        self,
        volumes: VolumeDataset,
        crop_size: Sequence[int],
        samples_per_epoch: int,
        pos_fraction: float = 0.5,
        flip: bool = True,
    ) -> None:
        from monai.transforms import Compose, RandCropByPosNegLabeld, RandFlipd, SpatialPad
        from monai.transforms.utils import map_binary_to_indices

        if not 0 <= pos_fraction <= 1:
            raise ValueError(f"pos_fraction must be in [0, 1], got {pos_fraction}")
        self.volumes, self.samples_per_epoch, self.seed = volumes, samples_per_epoch, 0
        keys = [*volumes.modalities, "target"]
        self.pad, self.indices = SpatialPad(list(crop_size)), map_binary_to_indices
        # Cases in memory are padded once, with their tumour / brain voxel indices computed once; cases read from
        # the cache (simmlm.datasets.brats.volume_cache) are read and padded for every crop, so memory stays one case.
        in_memory = all(isinstance(case, VolumeCase) for case in volumes.cases)
        self.items = [self._item(case) for case in volumes.cases] if in_memory else None
        transforms: list[Any] = [
            RandCropByPosNegLabeld(
                keys,
                label_key="target",
                spatial_size=list(crop_size),
                pos=pos_fraction,
                neg=1 - pos_fraction,
                fg_indices_key="fg",
                bg_indices_key="bg",
            ),
        ]
        if flip:
            transforms += [RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(3)]
        self.transform = Compose(transforms)

    def _item(self, case: Case) -> dict[str, Any]:
        """A case padded to the crop size, with the indices of its tumour (``fg``) and other brain (``bg``) voxels."""
        item: dict[str, Any] = {k: _plain(self.pad(v)) for k, v in {**case.inputs, "target": case.target}.items()}
        brain = _plain(self.pad(case.brain.unsqueeze(0).float()))
        item["fg"], item["bg"] = self.indices(item["target"], brain, 0.5)
        return item

    def set_random_state(self, seed: int) -> None:
        """The seed every crop's randomness derives from (with its epoch and index)."""
        self.seed = seed

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, key: int | tuple[int, int] | list[Any]) -> Batch:
        if isinstance(key, list):
            from torch.utils.data import default_collate

            return default_collate([self[k] for k in key])
        epoch, index = key if isinstance(key, tuple) else (0, key)
        return self.crop(int(epoch), int(index))

    def crop(self, epoch: int, index: int) -> Batch:
        """Item ``index`` of epoch ``epoch``: a random crop of case ``index % len(cases)``."""
        entropy = [int(v) % 2**63 for v in (self.seed, epoch, index)]
        self.transform.set_random_state(seed=int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        case = index % len(self.volumes)
        item = self.items[case] if self.items is not None else self._item(self.volumes.cases[case])
        (crop,) = self.transform(dict(item))
        inputs = {name: _plain(crop[name]) for name in self.volumes.modalities}
        return inputs, self.volumes.cases[case].mask, _plain(crop["target"])


def _plain(x: Any) -> Tensor:
    """A contiguous float ``torch.Tensor`` (MONAI transforms return ``MetaTensor``s)."""
    x = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)
    return x.float().contiguous()


def load_brats_split(
    folder: Path, layout: NiftiLayout, downsample: int = 1, cache: Path | None = None, workers: int = 0
) -> VolumeDataset:
    """Every case folder in ``folder`` (sorted by name): preprocessed into memory, or with ``cache`` a folder,
    into it once and read from there one case at a time (:mod:`simmlm.datasets.brats.volume_cache`, ``workers``
    processes building it)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"split folder {folder} does not exist")
    folders = sorted(p for p in folder.iterdir() if p.is_dir())
    if not folders:
        raise ValueError(f"split folder {folder} has no case folders")
    if cache is None:
        return VolumeDataset([load_case(c, layout, downsample) for c in folders], list(layout.modalities))
    from simmlm.datasets.brats.volume_cache import cached_cases

    return VolumeDataset(cached_cases(folders, layout, downsample, cache, workers), list(layout.modalities))


def load_brats(data_dir: Path, cfg: Any) -> Any:
    """Train / validation / test :class:`VolumeDataset` splits from a :class:`~simmlm.engine.config.BratsConfig`."""
    from simmlm.data.base import Splits
    from simmlm.datasets.brats.volume_cache import cache_root

    root = data_dir / cfg.subdir if cfg.subdir else data_dir
    layout = NiftiLayout(**cfg.model_dump(include=set(NiftiLayout.model_fields)))
    cache = cache_root() if cfg.cache else None
    datasets = {
        split: load_brats_split(root / cfg.splits[split], layout, cfg.downsample, cache, cfg.workers)
        for split in ("train", "val", "test")
    }
    counts = ", ".join(f"{split} {len(d)}" for split, d in datasets.items())
    description = (
        f"BraTS-style NIfTI cases from {cfg.subdir or 'the data directory'} ({counts} cases; modalities "
        f"{', '.join(layout.modalities)}; "
        f"{layout.label_convention} labels -> WT/TC/ET; z-scored inside the brain, cropped to the brain, "
        f"downsampled x{cfg.downsample})."
    )
    return Splits(datasets["train"], datasets["val"], datasets["test"], len(REGIONS), description)  # type: ignore[arg-type]
