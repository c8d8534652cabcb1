"""Portable mode: the same short training gives identical weights whichever instruction set MKL, OpenBLAS and
numpy are allowed (in subprocesses, since the settings are read when the libraries load)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from simmlm.portable import (
    PORTABLE_ENVIRONMENT,
    cache_subfolder,
    instruction_set,
    portable_threads,
    reproducibility_mode,
)

TESTS = Path(__file__).resolve().parent
x86_only = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="portable mode is x86-64")

TRAIN = """
import hashlib, json
import simmlm  # first, as the CLI does: portable mode sets the libraries' environment before they load
import numpy as np
import torch
from conftest import synthetic_splits
from simmlm.engine.config import RunConfig
from simmlm.engine.train import quiet_lightning, train
from simmlm.experiments.reproducibility import provenance

quiet_lightning()
cfg = RunConfig.model_validate({
    "method": "simmlm",
    "model": {"expert": {"a": "lenet", "b": "mlp"}, "expert_options": {"b": {"hidden": [32, 32]}}},
    "train": {"seed": 0, "batch_size": 8, "stage1": {"epochs": 2}, "stage2": {"epochs": 2}},
})
model = train(cfg, synthetic_splits(48), progress=False).model
digest = hashlib.sha256()
for name, value in model.state_dict().items():
    digest.update(name.encode() + value.contiguous().numpy().tobytes())
x = np.random.default_rng(0).standard_normal((300, 257)).astype(np.float32)
digest.update(np.log10(np.abs(x @ x.T) + 1).tobytes())  # numpy's BLAS and its vectorised log, as librosa uses
record = provenance([])
print(json.dumps({"hash": digest.hexdigest(), "capability": record["cpu_capability"], "threads": record["threads"],
                  "mode": record["reproducibility"]}))
"""
NO_AVX512 = "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"


def _train(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENVIRONMENT and not k.startswith("SIMMLM_")}
    done = subprocess.run(
        [sys.executable, "-c", TRAIN],
        env={**clean, "PYTHONPATH": str(TESTS), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@x86_only
def test_portable_mode_gives_identical_weights_under_other_instruction_sets() -> None:
    portable = {"SIMMLM_REPRODUCIBILITY": "portable"}
    first = _train(**portable)
    assert first["capability"] in ("AVX2", "DEFAULT") and first["threads"] == 2
    assert first["mode"] == {"mode": "portable", "mkldnn": False, "environment": PORTABLE_ENVIRONMENT}
    variations = [
        {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},  # MKL as on a processor without AVX-512
        {"MKL_ENABLE_INSTRUCTIONS": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        {"OPENBLAS_CORETYPE": "SkylakeX", "NPY_DISABLE_CPU_FEATURES": NO_AVX512},  # numpy without AVX-512
    ]
    for variation in variations:
        assert _train(**portable, **variation)["hash"] == first["hash"], variation
    other_threads = _train(**portable, SIMMLM_THREADS="1")
    assert other_threads["threads"] == 1  # recorded: the thread count is part of what must match


def test_mode_and_threads_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMMLM_REPRODUCIBILITY", raising=False)
    assert reproducibility_mode() == "native" and cache_subfolder() == ""
    monkeypatch.setenv("SIMMLM_REPRODUCIBILITY", "Portable")
    assert reproducibility_mode() == "portable" and cache_subfolder() == "portable"
    monkeypatch.setenv("SIMMLM_REPRODUCIBILITY", "exact")
    with pytest.raises(ValueError, match="native, portable"):
        reproducibility_mode()
    monkeypatch.setenv("SIMMLM_THREADS", "two")
    with pytest.raises(ValueError, match="SIMMLM_THREADS"):
        portable_threads()


@pytest.mark.skipif(instruction_set() != "AVX-512", reason="needs a processor beyond AVX2")
def test_portable_mode_refuses_a_torch_that_computed_before_simmlm() -> None:
    # torch picks its kernels at its first operation: importing it first is fine, computing is not
    code = (
        "import os, torch; torch.ones(3).sum(); os.environ['SIMMLM_REPRODUCIBILITY'] = 'portable'\n"
        "from simmlm.portable import configure_torch; configure_torch()"
    )
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENVIRONMENT}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "computed before simmlm" in done.stderr


@x86_only
def test_portable_mode_refuses_a_numpy_imported_before_simmlm() -> None:
    """numpy's OpenBLAS picks its kernels when numpy loads: portable mode cannot reach it afterwards, and says so."""
    code = "import numpy, simmlm\nfrom simmlm.portable import configure_torch; configure_torch()"
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENVIRONMENT}
    env["SIMMLM_REPRODUCIBILITY"] = "portable"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "numpy was imported before simmlm" in done.stderr
    first = subprocess.run([sys.executable, "-c", code.replace("numpy, simmlm", "simmlm, numpy")], env=env, check=False)
    assert first.returncode == 0
