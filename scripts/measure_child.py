"""One measurement in a fresh process, for ``volume_memory.py`` and ``image_memory.py``: the child loads a dataset as
a benchmark does and makes one training step (:func:`first_step`), so its peak memory is its own, not what the
parent or an earlier measurement left behind (:func:`measure`)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def measure(args: list[str], cache: Path) -> dict[str, Any] | str:
    """Run this interpreter on ``args`` with ``SIMMLM_CACHE_DIR=cache``: the JSON of the child's last line, or, when
    it fails (e.g. killed for memory, -9), the reason, so that the next measurement goes on."""
    env = {**os.environ, "SIMMLM_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
    return json.loads(out.stdout.strip().splitlines()[-1])


def first_step(cfg: Any, batch_size: int, start: float) -> dict[str, float]:
    """Load the splits of the run config ``cfg`` as a benchmark does, then one training step of its model: seconds
    from ``start`` (a ``time.perf_counter()``) to the loaded splits and to the step, and this process's peak memory."""
    import torch

    from simmlm.engine.runs import build_model
    from simmlm.engine.tasks import task_for

    task = task_for(cfg)
    splits = task.load_splits()
    loaded = time.perf_counter() - start
    model = build_model(cfg, task.input_shapes(splits), splits.num_classes)
    inputs, mask, target = next(iter(task.train_loader(splits.train, batch_size, seed=0)))
    loss = task.loss(model(inputs, mask).logits, target).mean()
    loss.backward()
    torch.optim.Adam(model.parameters()).step()
    return {
        "load_s": loaded,
        "first_step_s": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
