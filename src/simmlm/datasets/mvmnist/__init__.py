"""Multi-view MNIST: six feature views of very different strength computed from MNIST images (the gate on many
views); loader in :mod:`simmlm.datasets.mvmnist.loader`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from simmlm.data.specs import WithScenario
from simmlm.datasets.registry import (
    DATA_DIR_FIELD,
    DataSection,
    DatasetSpec,
    Example,
    classification_task,
    register_dataset,
)

if TYPE_CHECKING:
    from simmlm.data.base import Splits


class MvmnistData(DataSection, WithScenario):
    """Multi-view MNIST (``simmlm.datasets.mvmnist.loader``): six feature views of very different strength."""

    dataset: Literal["mvmnist"] = "mvmnist"
    data_dir: Path | None = DATA_DIR_FIELD
    train_size: int = Field(1200, ge=20, description="training images (class-stratified, from MNIST-train)")
    val_size: int = Field(300, ge=10, description="validation images (from MNIST-train, disjoint)")
    test_size: int = Field(2000, ge=10, description="test images (from MNIST-test)")


def load(data: MvmnistData) -> Splits:
    from simmlm.datasets.mvmnist.loader import load_mvmnist
    from simmlm.engine.tasks import resolve_data_dir

    return load_mvmnist(resolve_data_dir(data.data_dir), data.train_size, data.val_size, data.test_size)


def example(directory: Path) -> Example:
    """Stand-in MNIST files (:func:`simmlm.datasets.avmnist.write_mnist`) and small splits; its views are computed
    from the images, so ``simmlm predict`` reads no files for it."""
    from simmlm.datasets.avmnist import write_mnist

    write_mnist(directory / "avmnist" / "mnist", {"train": 12, "test": 6})
    return Example(data={"train_size": 60, "val_size": 40, "test_size": 50})


SPEC = register_dataset(
    DatasetSpec(
        name="mvmnist",
        config=MvmnistData,
        task=classification_task(load),
        summary="six views of MNIST digits of very different strength",
        folder="avmnist/mnist/ with the MNIST files (`simmlm download avmnist` fetches them)",
        example=example,
    )
)
