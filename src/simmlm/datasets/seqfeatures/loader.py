"""Utterance-level multimodal feature sequences (CMU-MOSI / MOSEI) in the MulT / MMSA pickle layout.

On-disk layout: one pickle file holding a dict of three splits, each a dict of arrays::

    {"train": {...}, "valid": {...}, "test": {...}}     # "val" or "dev" are accepted for "valid"
    split = {"text": float [N, T_text, D_text],         # one array per modality; names configurable
             "audio": float [N, T_audio, D_audio],
             "vision": float [N, T_vision, D_vision],
             "regression_labels": float [N] or [N, 1], # or "labels" [N, 1, 1] / [N, 1] (MulT)
             "id": ..., ...}                            # other keys are ignored

Every modality array is read as ``float32 [N, T, D]``; ``T`` may differ between modalities (unaligned data) and
between splits, ``D`` may not differ between splits. The label is a sentiment score (MOSI / MOSEI: -3 to 3)
read from ``label_key``, or from the first of :data:`LABEL_KEYS` present in the train split.

Tasks (the usual MOSI / MOSEI conventions):

- ``"binary"`` (Acc-2): class 1 if the score is ``> 0``, else 0: "positive vs non-positive" over all samples
  (the "has-0" variant; the "non-0" variant, dropping neutral samples, is not applied here).
- ``"classes7"`` (Acc-7): ``round(clip(score, -3, 3)) + 3`` in 0..6, with NumPy's round-half-to-even, as in
  the MulT and MMSA evaluation code (so 0.5 -> class 3, 1.5 -> class 5, -2.5 -> class 1).
- ``"regression"``: the score itself as a float32 target; ``num_classes`` is 1.
- ``"emotions4"``: IEMOCAP's four emotions from MulT's ``labels`` ``[N, 4, 2]``
  (:mod:`simmlm.datasets.seqfeatures.labels`).

Non-finite feature values (MOSI / MOSEI have ``-inf`` in some COVAREP frames): with ``nan_to_num=True`` (default)
each is replaced by 0, counted in ``Splits.description``; with ``False`` the loader raises naming the split and
modality. Non-finite labels always raise.

Simulated missingness (applied to every split, each with its own independent draws, deterministic given
``seed``; the inter- and intra-modal draws use separate random streams, so changing one leaves the other as is):

- Inter-modal: with ``missing_rate`` p each sample loses each modality independently with probability p; a
  sample that would lose all of them is redrawn, so at least one modality is always kept (the effective
  per-modality rate is therefore ``(p - p^M) / (1 - p^M)``, slightly below p). Or ``missing_modalities=[...]``
  drops the named modalities for every sample. A dropped modality is zeros with mask False.
- Intra-modal (DREAM, "randomly masking different proportions of frames within each modality's input
  sequence"): for every sample and present modality, ``k = round(r * T)`` (half up) of its ``T`` frames, chosen
  uniformly at random, are zeroed. The datasets expose ``frame_masks[name]``: bool ``[N, T]``, True where a
  frame is kept, all False for a dropped modality. At ``r = 1`` (or when ``k == T``) every frame of a present
  modality is zeroed while its modality mask stays True; only the frame mask tells.

Padding frames (both layouts zero-pad; MMSA's ``*_lengths`` are not read) are marked kept in the frame masks;
the sequence experts (:mod:`simmlm.nn.sequence`) treat any all-zero frame as absent.

Using the real MOSI/MOSEI files
-------------------------------
simmlm ships neither file; download one from the project that distributes it and pass its path:

- MulT (Tsai et al., 2019): ``mosi_data.pkl`` / ``mosei_senti_data.pkl`` (word-aligned) or
  ``mosi_data_noalign.pkl`` / ``mosei_senti_data_noalign.pkl``. Split keys ``"train"``, ``"valid"``,
  ``"test"``; per split ``"text"``, ``"audio"``, ``"vision"``, ``"labels"`` ([N, 1, 1]) and ``"id"``. The
  defaults fit: ``load_seqfeatures("data/mosi_data.pkl")`` (label key ``"labels"`` is auto-detected).
- MMSA (thuiar/MMSA): ``MOSI/Processed/unaligned_50.pkl`` or ``aligned_50.pkl`` (MOSEI likewise). Per split
  ``"text"`` (GloVe features), ``"text_bert"``, ``"audio"``, ``"vision"``, ``"regression_labels"``,
  ``"classification_labels"``, ``"id"``, ``"raw_text"`` and, unaligned, ``"audio_lengths"`` /
  ``"vision_lengths"``. The defaults fit: ``load_seqfeatures("MOSI/Processed/unaligned_50.pkl")`` reads
  ``"regression_labels"``. MMSA's ``"text_bert"`` is not a feature sequence but BERT token ids, attention mask
  and segment ids stacked as ``[N, 3, L]`` (so T=3, D=L here); pass ``modalities=("text_bert", "audio",
  "vision")`` only for a model that runs BERT itself, and leave ``intra_missing_ratio`` at 0 with it.
  ``"classification_labels"`` is not a sentiment score: do not pass it as ``label_key``.

A pickle is read by a restricted unpickler that admits only dicts, lists, strings, numbers and NumPy arrays, so a
crafted file cannot run code (:mod:`simmlm.data.feature_files`). ``simmlm convert-features FILE.pkl`` writes the
same content as a ``.npz`` (one array per ``SPLIT/KEY``) that needs no unpickling; this loader reads either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from simmlm.data.base import Splits
from simmlm.data.feature_files import RefusedPickle, read_feature_file
from simmlm.data.frames import (
    GROUPS,
    SequenceFeatureDataset,
    describe_ratios,
    frame_masks,
    heterogeneous_missing,
    split_ratios,
)
from simmlm.data.frames import SPLITS as _SPLITS
from simmlm.datasets.seqfeatures.labels import CLASS_NAMES, NUM_CLASSES, RULES, Task, numeric, read_targets

DEFAULT_MODALITIES = ("text", "audio", "vision")
LABEL_KEYS = ("regression_labels", "labels", "label")
"""Label keys tried in this order when ``label_key`` is None (MMSA's first, then MulT's)."""
VAL_SPLIT_NAMES = ("valid", "val", "dev")
_INTER_STREAM = 0  # the random stream of inter-modal draws (frames: simmlm.data.frames)


def load_seqfeatures(
    path: str | Path,
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    label_key: str | None = None,
    task: Task = "binary",
    missing_rate: float = 0.0,
    missing_modalities: Literal["random"] | Sequence[str] | None = None,
    intra_missing_ratio: float | Mapping[str, float] = 0.0,
    seed: int = 0,
    nan_to_num: bool = True,
    heterogeneous: float = 0.0,
    heterogeneous_frames: float = 0.5,
) -> Splits:
    """Train / validation / test splits of a MulT / MMSA feature pickle (see the module docstring).

    Args:
        path: the pickle file.
        modalities: keys of the modality arrays in each split; they also name the modalities, in this order.
        label_key: key of the sentiment score; None tries :data:`LABEL_KEYS` in order.
        task: ``"binary"`` (score > 0), ``"classes7"`` (rounded score + 3) or ``"regression"``.
        missing_rate: per-sample, per-modality drop probability in [0, 1) (at least one modality kept).
        missing_modalities: ``"random"`` or None to use ``missing_rate``; or modality names dropped everywhere
            (``missing_rate`` must then be 0).
        intra_missing_ratio: fraction in [0, 1] of each present modality's frames zeroed per sample (DREAM); or
            one fraction per split (``{"train": 0.3, "val": 0.3, "test": 0.0}``; a split left out gets 0).
        seed: seed of the simulated missingness (non-negative).
        nan_to_num: replace non-finite feature values by 0 (True) or raise (False).
        heterogeneous: DREAM's heterogeneous protocol (appendix A.4, :func:`~simmlm.data.frames.heterogeneous_missing`)
            with ``η`` = this share of the samples of every split affected, ``heterogeneous_frames`` of a modality's
            frames lost where frames are; the other missingness settings must then be off. Each split's dataset
            records its samples' groups (``missing_groups``) and the description their counts.

    Returns:
        :class:`Splits` of :class:`SequenceFeatureDataset`; ``num_classes`` is 2, 7 or 1 (regression).
    """
    path = Path(path)
    names = _check_modalities(modalities)
    if task not in NUM_CLASSES:
        raise ValueError(f"task must be one of {sorted(NUM_CLASSES)}, got {task!r}")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate}")
    ratios = split_ratios(intra_missing_ratio)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    dropped = _fixed_missing(missing_modalities, names, missing_rate)
    if heterogeneous and (missing_rate or dropped or any(ratios.values())):
        raise ValueError(
            "the heterogeneous protocol sets the missingness itself: leave missing_rate, "
            "missing_modalities and the frame ratio at their defaults"
        )

    splits = _find_splits(_read_file(path), path)
    if label_key is None:
        label_key = _detect_label_key(splits["train"][1], path, splits["train"][0])
    datasets: dict[str, SequenceFeatureDataset] = {}
    replaced: list[str] = []
    for index, split in enumerate(_SPLITS):
        file_split, content = splits[split]
        where = f"split {file_split!r} of {path}"
        features = {}
        for name in names:
            features[name], count = _read_features(content, name, where, nan_to_num)
            if count:
                replaced.append(f"{count} in {file_split}/{name}")
        targets = read_targets(content, label_key, where, task)
        for name, array in features.items():
            if len(array) != len(targets):
                raise ValueError(
                    f"{where}: modality {name!r} has {len(array)} samples but labels {label_key!r} have "
                    f"{len(targets)}; every array of a split must have the same N"
                )
        n = len(targets)
        lengths = {name: array.shape[1] for name, array in features.items()}
        if heterogeneous:
            mask, frames, groups = heterogeneous_missing(n, lengths, heterogeneous, heterogeneous_frames, seed, split)
        else:
            inter = np.random.default_rng([seed, index, _INTER_STREAM])
            mask = torch.from_numpy(_modality_mask(n, names, missing_rate, dropped, inter))
            frames, groups = frame_masks(lengths, n, ratios[split], seed, split), None
        datasets[split] = SequenceFeatureDataset(
            {name: torch.from_numpy(array) for name, array in features.items()}, mask, targets, frames
        )
        datasets[split].missing_groups = groups  # type: ignore[attr-defined]
    for name in names:
        dims = {split: datasets[split].inputs[name].shape[2:] for split in _SPLITS}
        if len(set(dims.values())) > 1:
            shown = ", ".join(f"{splits[s][0]} {tuple(d)}" for s, d in dims.items())
            raise ValueError(f"{path}: modality {name!r} has a different feature size D per split ({shown})")

    description = _describe(path, splits, datasets, label_key, task, missing_rate, dropped, ratios)
    if heterogeneous:
        counts = "; ".join(
            f"{s} " + ", ".join(f"{g} {int((datasets[s].missing_groups == k).sum())}" for k, g in enumerate(GROUPS))  # type: ignore[attr-defined]
            for s in _SPLITS
        )
        description += (
            f" Heterogeneous missingness (DREAM A.4), eta {heterogeneous:g}, {heterogeneous_frames:g} of the frames "
            f"where frames are lost: {counts}."
        )
    description += f" Seed {seed}. " + (
        f"Non-finite feature values replaced by 0: {'; '.join(replaced)}." if replaced else "No non-finite values."
    )
    train, val, test = (datasets[s] for s in _SPLITS)
    classes = CLASS_NAMES.get(task)
    preprocessing = {"dataset": "seqfeatures", "task": task, "classes": classes}  # what predict needs (no scaling)
    return Splits(train, val, test, NUM_CLASSES[task], description, preprocessing)


def _check_modalities(modalities: Sequence[str]) -> list[str]:
    if isinstance(modalities, str):
        raise ValueError(f"modalities must be a sequence of keys such as ('text', 'audio'), got {modalities!r}")
    names = list(modalities)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"modalities must be a non-empty sequence of key names, got {modalities!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"modalities has duplicates: {names}")
    return names


def _fixed_missing(
    missing_modalities: Literal["random"] | Sequence[str] | None, names: list[str], missing_rate: float
) -> list[str]:
    """The modalities dropped for every sample ([] for random or no inter-modal missingness)."""
    if missing_modalities is None or missing_modalities == "random":
        return []
    if isinstance(missing_modalities, str):
        raise ValueError(
            f"missing_modalities must be 'random', None or a list of modality names such as ['audio'], "
            f"got {missing_modalities!r}"
        )
    dropped = list(dict.fromkeys(missing_modalities))
    unknown = [d for d in dropped if d not in names]
    if unknown:
        raise ValueError(f"missing_modalities names unknown modalities {unknown}; the modalities are {names}")
    if len(dropped) == len(names):
        raise ValueError(f"missing_modalities drops every modality {names}; at least one must be kept")
    if missing_rate > 0 and dropped:
        raise ValueError(
            "give either missing_rate (random inter-modal missingness) or a list of missing_modalities, not both"
        )
    return dropped


def _read_file(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"sequence-feature file {path} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file; expected a MulT / MMSA feature pickle (.pkl) or its .npz")
    try:
        return read_feature_file(path)
    except RefusedPickle as err:
        raise ValueError(f"refusing {path}: {err}") from err
    except Exception as err:  # unpickling garbage raises almost anything
        raise ValueError(
            f"cannot read {path} ({type(err).__name__}: {err}); expected a MulT / MMSA feature pickle holding "
            "{'train': {...}, 'valid': {...}, 'test': {...}}, or the .npz that `simmlm convert-features` writes"
        ) from err


def _find_splits(data: Any, path: Path) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Our split name -> (the file's split name, its content)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} holds a {type(data).__name__}, expected a dict with 'train', 'valid' and 'test'")
    keys = sorted(map(str, data))
    val_names = [k for k in VAL_SPLIT_NAMES if k in data]
    if len(val_names) > 1:
        raise ValueError(f"{path} has several validation splits {val_names}; expected exactly one of them")
    found = {"train": "train", "val": val_names[0] if val_names else None, "test": "test"}
    out = {}
    for split, key in found.items():
        if key is None or key not in data:
            wanted = " / ".join(repr(k) for k in VAL_SPLIT_NAMES) if split == "val" else repr(split)
            raise ValueError(f"{path} has no {wanted} split; its top-level keys are {keys}")
        content = data[key]
        if not isinstance(content, Mapping):
            raise ValueError(f"split {key!r} of {path} is a {type(content).__name__}, expected a dict of arrays")
        out[split] = (key, content)
    return out


def _detect_label_key(content: Mapping[str, Any], path: Path, file_split: str) -> str:
    for key in LABEL_KEYS:
        if key in content:
            return key
    raise ValueError(
        f"split {file_split!r} of {path} has none of the label keys {list(LABEL_KEYS)}; available keys: "
        f"{sorted(map(str, content))}. Pass label_key= to name the sentiment-score array."
    )


def _read_features(content: Mapping[str, Any], name: str, where: str, nan_to_num: bool) -> tuple[np.ndarray, int]:
    """The modality's float32 ``[N, T, D]`` array and the number of non-finite values replaced by 0."""
    array = numeric(content, name, "modality", where)
    if array.ndim != 3:
        raise ValueError(f"{where}: modality {name!r} must be a 3-D array [N, T, D], got shape {array.shape}")
    if len(array) == 0:
        raise ValueError(f"{where}: modality {name!r} has no samples")
    array = np.array(array, dtype=np.float32)  # an own copy, so replacing values never touches the caller's data
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if count:
        if not nan_to_num:
            raise ValueError(
                f"{where}: modality {name!r} holds {count} non-finite values (NaN / inf); pass nan_to_num=True "
                "to replace them by 0"
            )
        array[bad] = 0.0
    return array, count


def _modality_mask(n: int, names: list[str], rate: float, dropped: list[str], rng: np.random.Generator) -> np.ndarray:
    mask = np.ones((n, len(names)), dtype=bool)
    if dropped:
        mask[:, [names.index(d) for d in dropped]] = False
    elif rate > 0:
        mask = rng.random(mask.shape) >= rate
        empty = ~mask.any(axis=1)
        while empty.any():  # redraw the rows that lost everything (terminates: rate < 1)
            mask[empty] = rng.random((int(empty.sum()), len(names))) >= rate
            empty = ~mask.any(axis=1)
    return mask


def _describe(
    path: Path,
    splits: dict[str, tuple[str, Mapping[str, Any]]],
    datasets: dict[str, SequenceFeatureDataset],
    label_key: str,
    task: Task,
    missing_rate: float,
    dropped: list[str],
    intra_ratios: dict[str, float],
) -> str:
    counts = ", ".join(f"{s} {len(datasets[s])}" for s in _SPLITS)
    shapes = []
    for name in datasets["train"].modalities:
        lengths = [datasets[s].inputs[name].shape[1] for s in _SPLITS]
        t = str(lengths[0]) if len(set(lengths)) == 1 else "/".join(map(str, lengths))
        shapes.append(f"{name} (T={t}, D={datasets['train'].inputs[name].shape[2]})")
    rule = RULES[task]
    if dropped:
        inter = f"fixed, {', '.join(dropped)} dropped for every sample"
    elif missing_rate > 0:
        inter = f"random, rate {missing_rate:g} per modality and sample, at least one modality kept"
    else:
        inter = "none"
    intra = describe_ratios(intra_ratios)
    return (
        f"Sequence features from {path.name} (MulT / MMSA pickle): {counts} (validation split "
        f"{splits['val'][0]!r}). Modalities {', '.join(shapes)}. Labels {label_key!r}, task {rule}. "
        f"Inter-modal missingness: {inter}. Intra-modal missingness: {intra}."
    )
