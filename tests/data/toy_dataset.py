"""A whole new dataset in one module: what tests/test_dataset_contract.py adds to a copy of simmlm.datasets (with
one import line) to show that the config, the commands' help and the contract pick it up."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from simmlm.datasets.registry import (
    DATA_DIR_FIELD,
    DataSection,
    DatasetSpec,
    Example,
    classification_task,
    register_dataset,
)


class ToyData(DataSection):
    """Two noisy views of one of three classes, from ``toy.npz``."""

    dataset: Literal["toy"] = "toy"
    data_dir: Path | None = DATA_DIR_FIELD


def load(data: ToyData) -> Any:
    import numpy as np
    import torch

    from simmlm.data.base import Splits, TensorMultimodalDataset
    from simmlm.engine.tasks import resolve_data_dir

    arrays = np.load(resolve_data_dir(data.data_dir) / "toy.npz")

    def split(rows: slice) -> TensorMultimodalDataset:
        inputs = {name: torch.from_numpy(arrays[name][rows]) for name in ("left", "right")}
        targets = torch.from_numpy(arrays["label"][rows])
        return TensorMultimodalDataset(inputs, torch.ones(len(targets), 2, dtype=torch.bool), targets)

    parts = split(slice(0, 60)), split(slice(60, 80)), split(slice(80, 100))
    return Splits(*parts, num_classes=3, description="Toy: two views.", preprocessing={"dataset": "toy"})


def read(name: str, path: Path, preprocessing: dict[str, Any]) -> Any:
    import numpy as np
    import torch

    return torch.from_numpy(np.load(path))


def example(directory: Path) -> Example:
    import numpy as np

    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, 100)
    views = {name: (np.eye(3)[label] + rng.normal(0, 0.3, (100, 3))).astype(np.float32) for name in ("left", "right")}
    directory.mkdir(parents=True)
    np.savez(directory / "toy.npz", label=label, **views)
    np.save(directory / "one.npy", views["left"][0])
    return Example(inputs={"left": directory / "one.npy"})


SPEC = register_dataset(
    DatasetSpec("toy", ToyData, classification_task(load, read), "two noisy views", "toy.npz", example=example)
)
