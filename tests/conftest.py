"""Shared fixtures and settings for the simmlm test suite."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from simmlm.data.base import Splits, TensorMultimodalDataset

# No example database on disk (the suite runs with -p no:cacheprovider) and no per-example deadline:
# CPU timings of small conv nets vary too much between machines.
settings.register_profile(
    "simmlm",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("simmlm")

# The models under test are tiny: one intra-op thread is as fast as several and immune to the heavy slowdown
# of oversubscribed OpenMP threads when other processes share the (2-core) CI machine.
torch.set_num_threads(1)

# The device the method and engine tests of tests/test_device.py run on: the CPU unless SIMMLM_TEST_DEVICE names
# another (``cuda`` on a GPU machine: ../shared/device/gpu-check.sh sets it). The suite never needs a GPU.
TEST_DEVICE = torch.device(os.environ.get("SIMMLM_TEST_DEVICE", "cpu"))

INPUT_SHAPES: dict[str, tuple[int, ...]] = {"image": (1, 28, 28), "audio": (1, 20, 20)}
MODALITIES: tuple[str, ...] = tuple(INPUT_SHAPES)
NUM_CLASSES = 10


@pytest.fixture(autouse=True)
def _volume_cache_of_the_session(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """BraTS-style cases the tests write are cached in a temporary folder, not in the user's cache."""
    root = tmp_path_factory.getbasetemp() / "volume-cache"
    monkeypatch.setattr("simmlm.datasets.brats.volume_cache.cache_root", lambda: root)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Every test starts from the same global RNG state, so failures reproduce."""
    torch.manual_seed(0)


def random_inputs(batch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random avMNIST-shaped inputs ``{name: [B, *shape]}``."""
    return {name: torch.randn(batch, *shape, generator=generator) for name, shape in INPUT_SHAPES.items()}


def synthetic_splits(train: int = 36, a_shape: tuple[int, ...] = (1, 12, 12)) -> Splits:
    """Tiny learnable 3-class data: modality ``a`` (``a_shape``, shifted by the class) and ``b`` (6 noise values);
    ``train`` training samples, 16 validation and 16 test samples, every modality present."""
    g = torch.Generator().manual_seed(0)

    def part(n: int) -> TensorMultimodalDataset:
        y = torch.randint(0, 3, (n,), generator=g)
        shift = y.view(-1, *([1] * len(a_shape)))
        return TensorMultimodalDataset(
            {"a": torch.randn(n, *a_shape, generator=g) + shift, "b": torch.randn(n, 6, generator=g)},
            torch.ones(n, 2, dtype=torch.bool),
            y,
        )

    return Splits(part(train), part(16), part(16), num_classes=3, description="synthetic")


def check_gate_weights(weights: torch.Tensor | None, mask: torch.Tensor, atol: float = 1e-5) -> None:
    """Gate weights ``[B, M(, K)]`` are 0 for missing modalities, non-negative, and sum to 1 over the present."""
    if weights is None:
        return
    assert weights.shape[:2] == mask.shape
    present = mask.reshape(*mask.shape, *([1] * (weights.ndim - 2))).expand_as(weights)
    assert torch.all(weights[~present] == 0) and torch.all(weights >= 0)
    torch.testing.assert_close(weights.sum(1), torch.ones_like(weights.sum(1)), rtol=0, atol=atol)
