"""Datasets: each yields ``(inputs: dict[str, Tensor], mask: BoolTensor[M], target)``.

The names below load on first use, so that the light modules of this package (:mod:`simmlm.data.specs`) can be
imported without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simmlm.data.base import Splits, TensorMultimodalDataset, make_loader

__all__ = ["Splits", "TensorMultimodalDataset", "make_loader"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from simmlm.data import base

        return getattr(base, name)
    raise AttributeError(f"module 'simmlm.data' has no attribute {name!r}")
