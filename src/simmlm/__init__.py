"""simmlm: multimodal learning when modalities go missing at test time.

The names below are the public face, each loaded on first use (``import simmlm`` stays light; portable mode must
set its environment before torch loads): :func:`create_method` / :func:`list_methods` (the methods),
:func:`list_datasets`, :func:`load_config`, :func:`train`, :func:`load_checkpoint` and :func:`predict_files`.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from simmlm.portable import apply_environment

apply_environment()  # portable mode's CPU code paths must be chosen before torch and numpy are imported

try:
    __version__ = version("simmlm")  # one place: pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_HOMES = {
    "create_method": "simmlm.methods",
    "list_methods": "simmlm.methods",
    "list_datasets": "simmlm.datasets",
    "load_config": "simmlm.engine.config",
    "train": "simmlm.engine.train",
    "load_checkpoint": "simmlm.engine.runs",
    "predict_files": "simmlm.engine.runs",
}
__all__ = [
    "create_method",
    "list_datasets",
    "list_methods",
    "load_checkpoint",
    "load_config",
    "predict_files",
    "train",
]

if TYPE_CHECKING:
    from simmlm.datasets import list_datasets
    from simmlm.engine.config import load_config
    from simmlm.engine.runs import load_checkpoint, predict_files
    from simmlm.engine.train import train
    from simmlm.methods import create_method, list_methods


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'simmlm' has no attribute {name!r}")
