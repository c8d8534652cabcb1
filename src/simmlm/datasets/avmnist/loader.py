"""avMNIST built from the raw MNIST and FSDD files, following the missing-modality literature's protocol.

On-disk layout expected under the data directory (see ``../shared/data/DATA.md``)::

    avmnist/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    avmnist/fsdd/recordings/{digit}_{speaker}_{index}.wav

Protocol (SMIL / ShaSpec / SimMLM): 1,500 pairs from FSDD speakers jackson, nicolas and theo; recordings with
index < 15 form the test split (450), the others the train split (1,050). Audio: resample by 3 (8 kHz ->
2.67 kHz), 20 MFCCs with ``n_fft=2048, hop=512``, zero-padded or cut to 20 frames; the front end
(:data:`AUDIO_FRONTENDS`) is either the literature's (``wave[::3]`` without an anti-alias filter, the MFCC told
``sr=8000``, frames padded by reflection: what the published numbers use) or the anti-aliased one
(``scipy.signal.decimate``, the true rate, zero padding). Each recording is paired
with an MNIST image of the same digit (train images from MNIST-train, test images from MNIST-test), drawn
without replacement by a fixed-seed generator, so the pairing is deterministic.

Scaling (chosen deliberately, see docs/datasets/avmnist.md): images are mapped to [-1, 1] (``x / 127.5 - 1``).
MFCC maps are standardised per coefficient with statistics of the training split (mean and std over all
train cells of that coefficient, padding included), because coefficient 0 spans hundreds of units while the
others span tens: a global min-max to [-1, 1] squashes the informative coefficients into a narrow band.
``audio_scaling="minmax"`` gives the global min-max variant for comparison.

The MFCC extraction runs once; the raw arrays are cached (``.npz``) under a name that carries a fingerprint
of the raw files and of the extraction parameters, and reused on later runs.
"""

from __future__ import annotations

import gzip
import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from simmlm.data.base import Splits, TensorMultimodalDataset
from simmlm.data.frames import SequenceFeatureDataset, describe_ratios, frame_masks, split_ratios
from simmlm.fileio import atomic_path, cache_dir
from simmlm.progress import track

SPEAKERS = ("jackson", "nicolas", "theo")
RECORDINGS_PER_DIGIT = 50
TEST_INDEX_BELOW = 15
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MFCC = {"decimate": 3, "n_mfcc": 20, "n_fft": 2048, "hop_length": 512, "frames": 20}
PAIRING_SEED = 0
BUILD_VERSION = "1"
MODALITIES = ("image", "audio")


def _recording_names() -> list[str]:
    return [
        f"{digit}_{speaker}_{index}.wav"
        for speaker in SPEAKERS
        for digit in range(10)
        for index in range(RECORDINGS_PER_DIGIT)
    ]


def mnist_files(root: Path) -> list[Path]:
    """The four MNIST files under ``root`` (the ``avmnist`` folder)."""
    return [root / "mnist" / name for pair in MNIST_FILES.values() for name in pair]


def required_files(root: Path) -> list[Path]:
    """Every raw file the avMNIST build reads, under ``root`` (the ``avmnist`` folder)."""
    return mnist_files(root) + [root / "fsdd" / "recordings" / name for name in _recording_names()]


def check_files(root: Path, files: list[Path] | None = None) -> list[Path]:
    """Return ``files`` (default: every required file), or raise ``FileNotFoundError`` naming what is missing."""
    files = required_files(root) if files is None else files
    missing = [f for f in files if not f.is_file()]
    if missing:
        shown = "\n  ".join(str(f) for f in missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(
            f"avMNIST data is incomplete under {root}: {len(missing)} of {len(files)} required files are "
            f"missing:\n  {shown}{more}\nPoint --data-dir or SIMMLM_DATA_DIR at the folder that holds "
            "avmnist/mnist and avmnist/fsdd/recordings (see DATA.md)."
        )
    return files


def fingerprint(files: list[Path], frontend: AudioFrontend) -> str:
    """SHA-256 over the raw files' contents and the extraction parameters (front end included)."""
    params = f"{BUILD_VERSION}{sorted(MFCC.items())}{sorted(asdict(frontend).items())}{SPEAKERS}{PAIRING_SEED}"
    digest = hashlib.sha256(params.encode())
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def read_idx(path: Path) -> np.ndarray:
    """Read a gzip-compressed IDX file (MNIST's format) into a uint8 array."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {body.size}")
    return body.reshape(shape)


@dataclass(frozen=True)
class AudioFrontend:
    """How a recording becomes a 20x20 MFCC map.

    Attributes:
        resample: ``"slice"`` keeps every third sample (``wave[::3]``, no anti-alias filter: energy above
            1.33 kHz folds into the band); ``"decimate"`` low-pass filters first (``scipy.signal.decimate``).
        mfcc_rate: the sample rate passed to librosa's MFCC, in Hz; ``None`` passes the true rate after
            resampling (8000 / 3). It only moves the mel filter bank's frequencies.
        pad_mode: how librosa pads the centred STFT frames: ``"reflect"`` or ``"constant"`` (zeros).
    """

    resample: Literal["slice", "decimate"]
    mfcc_rate: float | None
    pad_mode: Literal["reflect", "constant"]


#: Named front ends. ``literature`` is what SMIL's public code (and so the published avMNIST numbers) computes:
#: ``wave[::3]``, MFCC with ``sr=8000`` although the sliced signal is at 2,667 Hz, frames padded by reflection
#: (its pinned librosa's default). ``antialiased`` is the clean signal path: filtered decimation, the true rate,
#: zero padding (today's librosa default).
AUDIO_FRONTENDS = {
    "literature": AudioFrontend("slice", 8000.0, "reflect"),
    "antialiased": AudioFrontend("decimate", None, "constant"),
}


def resolve_frontend(
    name: str, mfcc_rate: float | None = None, pad_mode: Literal["reflect", "constant"] | None = None
) -> AudioFrontend:
    """A named front end with optional overrides of its MFCC rate and frame padding."""
    if name not in AUDIO_FRONTENDS:
        raise ValueError(f"audio_frontend must be one of {', '.join(map(repr, AUDIO_FRONTENDS))}, got {name!r}")
    base = AUDIO_FRONTENDS[name]
    return replace(
        base,
        mfcc_rate=base.mfcc_rate if mfcc_rate is None else float(mfcc_rate),
        pad_mode=base.pad_mode if pad_mode is None else pad_mode,
    )


def mfcc_map(path: Path, frontend: AudioFrontend = AUDIO_FRONTENDS["literature"]) -> tuple[np.ndarray, int]:
    """20x20 MFCC map of one recording (coefficients x frames) and its number of real frames."""
    import librosa
    import scipy.signal
    import soundfile

    try:
        wave, rate = soundfile.read(path, dtype="float32")
    except (RuntimeError, soundfile.LibsndfileError) as err:  # pragma: no cover - depends on the file
        raise ValueError(f"cannot read WAV {path}: {err}") from err
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    factor = MFCC["decimate"]
    if frontend.resample == "slice":
        wave = np.ascontiguousarray(wave[::factor])
    else:
        wave = scipy.signal.decimate(wave, factor).astype(np.float32)
    with warnings.catch_warnings():
        # Most resampled clips are shorter than n_fft: librosa pads them, as the protocol expects.
        warnings.filterwarnings("ignore", message="n_fft=.* is too large")
        coeffs = librosa.feature.mfcc(
            y=wave,
            sr=frontend.mfcc_rate or rate / factor,
            n_mfcc=MFCC["n_mfcc"],
            n_fft=MFCC["n_fft"],
            hop_length=MFCC["hop_length"],
            pad_mode=frontend.pad_mode,
        )
    frames = MFCC["frames"]
    real = min(coeffs.shape[1], frames)
    out = np.zeros((MFCC["n_mfcc"], frames), dtype=np.float32)
    out[:, :real] = coeffs[:, :real]
    return out, real


def build_arrays(root: Path, frontend: AudioFrontend) -> dict[str, np.ndarray]:
    """Extract the raw (unscaled) arrays of the 1,500 avMNIST pairs."""
    names = _recording_names()
    mfccs, real_frames, digits, is_test = [], [], [], []
    for name in track(names, "avMNIST: extracting MFCCs (once, then cached)", unit="recordings"):
        digit, _speaker, index = name[:-4].split("_")
        coeffs, real = mfcc_map(root / "fsdd" / "recordings" / name, frontend)
        mfccs.append(coeffs)
        real_frames.append(real)
        digits.append(int(digit))
        is_test.append(int(index) < TEST_INDEX_BELOW)
    labels = np.asarray(digits, dtype=np.int64)
    test = np.asarray(is_test)

    images = np.zeros((len(names), 28, 28), dtype=np.uint8)
    rng = np.random.default_rng(PAIRING_SEED)
    for split, (img_file, lab_file) in MNIST_FILES.items():
        pool_images = read_idx(root / "mnist" / img_file)
        pool_labels = read_idx(root / "mnist" / lab_file)
        rows = test if split == "test" else ~test
        for cls in range(10):
            targets = np.flatnonzero(rows & (labels == cls))
            chosen = rng.choice(np.flatnonzero(pool_labels == cls), size=len(targets), replace=False)
            images[targets] = pool_images[chosen]
    return {
        "image": images,
        "audio": np.stack(mfccs),
        "real_frames": np.asarray(real_frames, dtype=np.int64),
        "label": labels,
        "is_test": test,
    }


def load_arrays(
    data_dir: Path, cache: Path | None = None, frontend: AudioFrontend = AUDIO_FRONTENDS["literature"]
) -> dict[str, np.ndarray]:
    """Raw arrays of avMNIST, built once per front end and cached by fingerprint."""
    root = Path(data_dir) / "avmnist"
    files = check_files(root)
    cache = cache or cache_dir()
    path = cache / f"avmnist-{fingerprint(files, frontend)[:16]}.npz"
    if path.is_file():
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}
    arrays = build_arrays(root, frontend)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a killed build never leaves half a cache file
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
    return arrays


def fit_preprocessing(train_audio: np.ndarray, audio_scaling: str) -> dict[str, Any]:
    """The scaling fitted on the training MFCC maps ``[N, 20, 20]``; JSON-able, stored with every checkpoint."""
    if audio_scaling == "standardize":
        mean = train_audio.mean(axis=(0, 2))
        std = train_audio.std(axis=(0, 2)) + 1e-6
        return {"dataset": "avmnist", "audio_scaling": "standardize", "mean": mean.tolist(), "std": std.tolist()}
    if audio_scaling == "minmax":
        low, high = float(train_audio.min()), float(train_audio.max())
        return {"dataset": "avmnist", "audio_scaling": "minmax", "low": low, "high": high}
    raise ValueError(f"audio_scaling must be 'standardize' or 'minmax', got {audio_scaling!r}")


def scale_image(images: np.ndarray) -> np.ndarray:
    """Grey levels 0..255 -> float32 in [-1, 1]."""
    return images.astype(np.float32) / 127.5 - 1.0


def scale_audio(mfcc: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """MFCC maps ``[..., 20, 20]`` scaled with the fitted ``preprocessing`` (see :func:`fit_preprocessing`)."""
    if preprocessing["audio_scaling"] == "standardize":
        mean = np.asarray(preprocessing["mean"], dtype=np.float32)[:, None]
        std = np.asarray(preprocessing["std"], dtype=np.float32)[:, None]
        return ((mfcc.astype(np.float32) - mean) / std).astype(np.float32)
    low, high = preprocessing["low"], preprocessing["high"]
    return np.clip(2.0 * (mfcc.astype(np.float32) - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)


def stratified_val_indices(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a validation split holding ``round(fraction * n_c)`` samples of each class ``c``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picked.append(rng.permutation(members)[: round(fraction * len(members))])
    return np.sort(np.concatenate(picked))


def recording_indices() -> np.ndarray:
    """FSDD recording index of each of the 1,500 samples (build order)."""
    return np.array([int(name[:-4].split("_")[2]) for name in _recording_names()])


def load_avmnist(
    data_dir: str | Path,
    val_fraction: float = 0.15,
    audio_scaling: Literal["standardize", "minmax"] = "standardize",
    val_split: Literal["stratified", "recording_index"] = "stratified",
    cache: Path | None = None,
    frontend: AudioFrontend = AUDIO_FRONTENDS["literature"],
    layout: Literal["maps", "sequences"] = "maps",
    frame_missing: float | Mapping[str, float] = 0.0,
    missing_seed: int = 0,
) -> Splits:
    """avMNIST train / validation / test splits, scaled and ready to train on.

    ``layout="maps"``: the image ``[1, 28, 28]`` and the MFCC map ``[1, 20, 20]``, for 2-D experts;
    ``"sequences"``: the image as 28 rows of 28 pixels and the MFCC map as 20 frames of 20 coefficients
    (``[T, D]``), for the sequence experts, with ``frame_missing`` (a ratio, or one per split) of each sample's
    frames zeroed (:mod:`simmlm.data.frames`, seeded by ``missing_seed``).

    ``val_split="stratified"``: a class-stratified ``val_fraction`` of the literature's train split, drawn with
    a fixed seed (the same for every training seed). ``"recording_index"``: the recordings with the indices
    just above the test range (15 to 15 + round(35 * val_fraction) - 1, i.e. 15-19 by default), held out
    whole like the test split holds out indices 0-14. FSDD recordings with neighbouring indices come from
    the same session, so a random split scores audio higher than the held-out-index test split does.
    The test split is always the literature's 450 samples. ``frontend`` (:data:`AUDIO_FRONTENDS`) makes the
    MFCC maps; it is stored in the returned preprocessing so that ``simmlm predict`` computes the same maps.
    """
    arrays = load_arrays(Path(data_dir), cache, frontend)
    labels, is_test = arrays["label"], arrays["is_test"]
    train_pool = np.flatnonzero(~is_test)
    if val_split == "stratified":
        val_idx = train_pool[stratified_val_indices(labels[train_pool], val_fraction)]
    elif val_split == "recording_index":
        last = TEST_INDEX_BELOW + round((RECORDINGS_PER_DIGIT - TEST_INDEX_BELOW) * val_fraction)
        index = recording_indices()
        val_idx = np.flatnonzero((index >= TEST_INDEX_BELOW) & (index < last))
    else:
        raise ValueError(f"val_split must be 'stratified' or 'recording_index', got {val_split!r}")
    train_idx = np.setdiff1d(train_pool, val_idx)
    test_idx = np.flatnonzero(is_test)

    preprocessing = {
        **fit_preprocessing(arrays["audio"][train_idx], audio_scaling),
        "audio_frontend": asdict(frontend),
        "layout": layout,
    }
    image = scale_image(arrays["image"])
    audio = scale_audio(arrays["audio"], preprocessing)

    ratios = split_ratios(frame_missing)
    if layout not in ("maps", "sequences"):
        raise ValueError(f"layout must be 'maps' or 'sequences', got {layout!r}")
    if layout == "maps" and any(ratios.values()):
        raise ValueError("frame_missing needs layout 'sequences' (frames are the image's rows and the audio's frames)")

    def subset(idx: np.ndarray, split: str) -> TensorMultimodalDataset:
        inputs = {"image": torch.from_numpy(image[idx]), "audio": torch.from_numpy(audio[idx].astype(np.float32))}
        mask, targets = torch.ones(len(idx), len(MODALITIES), dtype=torch.bool), torch.from_numpy(labels[idx])
        if layout == "maps":
            return TensorMultimodalDataset({k: v.unsqueeze(1).contiguous() for k, v in inputs.items()}, mask, targets)
        inputs = as_sequences(inputs)
        frames = {k: v.shape[1] for k, v in inputs.items()}
        return SequenceFeatureDataset(
            inputs, mask, targets, frame_masks(frames, len(idx), ratios[split], missing_seed, split)
        )

    description = (
        f"avMNIST (SMIL protocol): speakers {', '.join(SPEAKERS)}; recording index < {TEST_INDEX_BELOW} -> test "
        f"({len(test_idx)}), rest -> train, split into {len(train_idx)} train and {len(val_idx)} validation "
        f"({val_split} split, {val_fraction:.0%}). MFCC 20x20 (resample by 3: {frontend.resample}, MFCC rate "
        f"{frontend.mfcc_rate or 'true'}, {frontend.pad_mode} frame padding, n_fft 2048, hop 512), "
        f"audio scaling {audio_scaling} (train statistics), images in [-1, 1]."
    )
    if layout == "sequences":
        description += (
            " Sequence layout: image = 28 rows x 28 pixels, audio = 20 frames x 20 MFCCs; intra-modal "
            f"missingness: {describe_ratios(ratios)} (seed {missing_seed})."
        )
    return Splits(
        subset(train_idx, "train"),
        subset(val_idx, "val"),
        subset(test_idx, "test"),
        num_classes=10,
        description=description,
        preprocessing=preprocessing,
    )


def as_sequences(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Maps ``[..., 28, 28]`` / ``[..., 20, 20]`` (coefficients x frames) -> sequences ``[..., T, D]``: the image's
    rows, the MFCC map's frames."""
    return {k: (v.transpose(-1, -2) if k == "audio" else v).contiguous() for k, v in inputs.items()}
