"""Every dataset simmlm knows, one module each, registered in :mod:`simmlm.datasets.registry`.

Adding a dataset: a module here that defines its ``data:`` section and calls ``register_dataset`` (see any of
these), plus one import line below. The config's ``data`` union, the commands' help texts and the docs' list are
built from the registry. Nothing here imports torch at module level.
"""

from simmlm.datasets import avmnist, brats, folder, food101, mvmnist, rgbx, seqfeatures  # noqa: F401  (registration)
from simmlm.datasets.registry import (
    DataSection,
    DatasetSpec,
    dataset_specs,
    datasets_help,
    folders_help,
    get_dataset,
    list_datasets,
    register_dataset,
)

__all__ = [
    "DataSection",
    "DatasetSpec",
    "dataset_specs",
    "datasets_help",
    "folders_help",
    "get_dataset",
    "list_datasets",
    "register_dataset",
]
