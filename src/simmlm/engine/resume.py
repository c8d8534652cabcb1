"""Resuming interrupted runs: per-epoch checkpoints, finished-phase records, atomic writes.

A run folder's ``checkpoints/`` holds, while the run is unfinished:

- ``config.json``: the resolved config the run started with (a resume with another config is refused);
- ``<phase>-last.ckpt``: a Lightning checkpoint written after every epoch of the phase in progress (weights,
  optimizer, loop counters, the stage's best-on-validation weights and MoFe sums, the global RNG states and
  the loader's shuffling generator); removed once the phase is finished;
- ``<phase>-done.pt``: the result of a finished phase (``stage1``, ``stage2``), which a resume loads instead of
  training the phase again. A run whose method pre-trains another (DREAM's scorer) keeps that run's folder under
  ``checkpoints/pretrain-<method>/``.

Every file is written to a temporary file in the same folder and renamed over the target, so a kill leaves
the previous file or the new one, never half of one. Only the global rank 0 writes.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint

from simmlm.engine.config import RunConfig, config_differences
from simmlm.engine.runs import is_global_zero
from simmlm.fileio import torch_save_atomic, write_text_atomic


def load_resume_file(path: Path) -> dict[str, Any]:
    """Load a checkpoint file with ``weights_only=True``; a truncated or corrupt file gives a clear error."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}); "
            "delete it to redo its phase, or run without --resume to start over"
        ) from err
    if not isinstance(blob, dict):
        raise ValueError(f"checkpoint {path} does not hold a dict; it was not written by simmlm")
    return blob


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with a same-folder temporary file + rename and a clear error on bad files.

    (Lightning's own writer goes through an fsspec transaction whose temporary file lives in the system temp
    folder; moving it onto another file system is a copy, which a kill can leave half-done.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        torch_save_atomic(checkpoint, Path(path))

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        return load_resume_file(Path(path))


def rng_states() -> dict[str, Any]:
    """The global RNG states a training step may draw from (torch CPU and CUDA, NumPy, Python), as plain data."""
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class EpochCheckpoint(Checkpoint):
    """Writes ``path`` after every training epoch, after the stage's own epoch-end (validation) hook.

    Beyond what Lightning saves, the file carries the global RNG states, the loader's shuffling generator and
    the training time so far. On resume these are put back at the start of the next epoch, right where the
    uninterrupted run continued from them, so the resumed run draws exactly the same numbers.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.seconds_before = 0.0
        self._start = time.perf_counter()
        self._pending: dict[str, Any] | None = None

    def seconds(self) -> float:
        """Training time of this phase, including the time before an interruption (up to its last checkpoint)."""
        return self.seconds_before + time.perf_counter() - self._start

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: optimizer, loops, callbacks

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        sampler: Any = getattr(trainer.train_dataloader, "sampler", None)
        checkpoint["simmlm"] = {
            "rng": rng_states(),
            "sampler": sampler.state_dict() if hasattr(sampler, "state_dict") else {},
            "seconds": self.seconds(),
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if "simmlm" not in checkpoint:
            raise ValueError(f"{self.path} lacks simmlm's resume state; it was not written by simmlm")
        self._pending = checkpoint["simmlm"]
        self.seconds_before = float(self._pending["seconds"])

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        set_rng_states(self._pending["rng"])
        loader = trainer.train_dataloader
        sampler: Any = getattr(loader, "sampler", None)
        if hasattr(sampler, "load_state_dict"):
            sampler.load_state_dict(self._pending["sampler"])
        self._pending = None
        # An uninterrupted run opens this epoch's loader iterator right after this hook, and opening one draws
        # a base seed from the global RNG (torch.utils.data's _BaseDataLoaderIter). A resumed fit reuses the
        # iterator Lightning opened before restoring (fit_loop.setup_data), so make that one draw here.
        torch.empty((), dtype=torch.int64).random_(generator=getattr(loader, "generator", None))


class RunCheckpoints:
    """The ``checkpoints/`` folder of one run: config check, finished phases, per-epoch checkpoint paths.

    Args:
        directory: the folder (created on demand).
        cfg: the run's resolved config.
        resume: keep and use what the folder holds; without it the folder is emptied first.
    """

    def __init__(self, directory: Path, cfg: RunConfig, resume: bool) -> None:
        self.directory, self.resume = Path(directory), resume
        config = cfg.model_dump(mode="json")
        saved = self.directory / "config.json"
        if resume and saved.is_file():
            _check_same_config(json.loads(saved.read_text()), config, self.directory)
        elif not resume and self.directory.exists() and is_global_zero():
            shutil.rmtree(self.directory)
        if is_global_zero():
            self.directory.mkdir(parents=True, exist_ok=True)
            write_text_atomic(saved, json.dumps(config, indent=2))

    def last(self, phase: str) -> Path:
        """Where the per-epoch checkpoint of ``phase`` lives."""
        return self.directory / f"{phase}-last.ckpt"

    def resume_from(self, phase: str) -> Path | None:
        """The per-epoch checkpoint to continue ``phase`` from, if resuming and one exists (validated)."""
        path = self.last(phase)
        if not (self.resume and path.is_file()):
            return None
        load_resume_file(path)  # a truncated file fails here, with the message, before Lightning starts
        return path

    def done(self, phase: str) -> dict[str, Any] | None:
        """The saved result of a finished ``phase`` (only when resuming)."""
        path = self.directory / f"{phase}-done.pt"
        return load_resume_file(path) if self.resume and path.is_file() else None

    def save_done(self, phase: str, result: dict[str, Any]) -> None:
        """Record ``phase`` as finished and drop its per-epoch checkpoint."""
        if is_global_zero():
            torch_save_atomic(result, self.directory / f"{phase}-done.pt")
            self.last(phase).unlink(missing_ok=True)

    def sub(self, name: str, cfg: RunConfig) -> RunCheckpoints:
        """The folder of a nested run (DREAM's scorer)."""
        return RunCheckpoints(self.directory / name, cfg, self.resume)


def remove_checkpoints(run_dir: Path) -> None:
    """Delete ``run_dir/checkpoints`` once the run's ``model.pt`` and ``metrics.json`` are written."""
    if is_global_zero():
        shutil.rmtree(Path(run_dir) / "checkpoints", ignore_errors=True)


def _check_same_config(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    differ = config_differences(saved, current)
    if differ:
        raise ValueError(
            f"{where} belongs to a run with another config (differs in {', '.join(differ)}); "
            "resume with the same config, or drop --resume to start over"
        )
