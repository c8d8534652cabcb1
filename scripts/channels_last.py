"""Seconds per training step of one segmentation expert with its weights contiguous and channels-last.

``train.channels_last: true`` puts the 2-D and 3-D convolution weights in channels-last layout
(:func:`simmlm.engine.train.to_channels_last`). This times what that buys: for the experts of the shipped
segmentation configs, the median of ``--steps`` optimiser steps (forward, backward, Adam) on random inputs, both
layouts alternating in one process. Run it on an idle machine, in the mode you train in
(``SIMMLM_REPRODUCIBILITY=portable`` turns oneDNN off)::

    python scripts/channels_last.py --steps 5
"""

# ruff: noqa: I001  (simmlm is imported before torch: portable mode sets the environment torch reads)
from __future__ import annotations

import argparse
import copy
import statistics
import time

import simmlm  # noqa: F401  (before torch: the reproducibility mode's environment)
import torch

from simmlm.engine.train import to_channels_last
from simmlm.nn.experts import build_experts
from simmlm.portable import configure_torch

#: name -> (expert kind, expert options, one sample's shape, batch size): the shipped configs' experts.
SETTINGS = {
    "brats_cpu (3-D U-Net, 64^3)": (
        "unet3d",
        {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1},
        (1, 64, 64, 64),
        2,
    ),
    "brats2018_gpu (3-D U-Net, 64^3 crop)": (
        "unet3d",
        {"channels": [32, 64, 128, 256, 320], "strides": [2, 2, 2, 2], "num_res_units": 2},
        (1, 64, 64, 64),
        2,
    ),
    "rgbx (2-D U-Net, 3x128x128)": (
        "unet2d",
        {"channels": [16, 32, 64], "strides": [2, 2], "num_res_units": 1},
        (3, 128, 128),
        16,
    ),
}


def step_seconds(expert: torch.nn.Module, x: torch.Tensor, steps: int) -> list[float]:
    optimiser = torch.optim.Adam(expert.parameters(), 1e-4)
    times = []
    for _ in range(steps + 1):  # the first step warms up (allocations, kernel choice)
        start = time.perf_counter()
        optimiser.zero_grad()
        expert(x).square().mean().backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per layout")
    args = parser.parse_args()
    configure_torch()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN "
        f"{'on' if torch.backends.mkldnn.enabled else 'off'}, median of {args.steps} steps"
    )
    print("| expert | batch | contiguous (s/step) | channels-last (s/step) | speed-up |")
    print("|---|---|---|---|---|")
    for name, (kind, options, shape, batch) in SETTINGS.items():
        torch.manual_seed(0)
        plain = build_experts({"x": shape}, 3, kind, options)["x"]
        last = to_channels_last(copy.deepcopy(plain))
        x = torch.randn(batch, *shape)
        plain_times, last_times = [], []
        for half in filter(None, (args.steps - args.steps // 2, args.steps // 2)):  # alternate: slow spells hit both
            plain_times += step_seconds(plain, x, half)
            last_times += step_seconds(last, x, half)
        a, b = statistics.median(plain_times), statistics.median(last_times)
        print(f"| {name} | {batch} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
