"""Datasets: each yields ``(inputs: dict[str, Tensor], mask: BoolTensor[M], target)``."""

from simmlm.data.base import Splits, TensorMultimodalDataset, make_loader

__all__ = ["Splits", "TensorMultimodalDataset", "make_loader"]
