"""One measurement in a fresh process, for ``volume_memory.py`` and ``image_memory.py``: the child's peak memory
is then its own, not what the parent or an earlier measurement left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
