"""Shared fixtures and settings for the simmlm test suite."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, settings

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

INPUT_SHAPES: dict[str, tuple[int, ...]] = {"image": (1, 28, 28), "audio": (1, 20, 20)}
MODALITIES: tuple[str, ...] = tuple(INPUT_SHAPES)
NUM_CLASSES = 10


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Every test starts from the same global RNG state, so failures reproduce."""
    torch.manual_seed(0)


def random_inputs(batch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random avMNIST-shaped inputs ``{name: [B, *shape]}``."""
    return {name: torch.randn(batch, *shape, generator=generator) for name, shape in INPUT_SHAPES.items()}
