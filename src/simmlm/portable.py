"""The reproducibility mode: which CPU code paths the numerical libraries take.

PyTorch's own vectorised kernels, oneDNN (convolutions), MKL (PyTorch's BLAS) and OpenBLAS (numpy's and scipy's
BLAS, e.g. librosa's mel filterbank) each pick a code path by processor and instruction set. Those paths round
differently in the last bits, training turns that into other models, and a benchmark run on an Intel Xeon and on
an AMD EPYC then gives other numbers from the same code and seeds.

``SIMMLM_REPRODUCIBILITY=portable`` (set in the environment; ``native``, the default, changes nothing) puts every
one of them on one AVX2 code path that every x86-64 processor since 2013 (Intel Haswell, AMD Zen) runs the same:

- ``ATEN_CPU_CAPABILITY=avx2``: PyTorch's kernels as on an AVX2 processor (read once, when torch is imported);
- ``MKL_CBWR=AVX2``: MKL's conditional numerical reproducibility, its AVX2 branch on Intel and AMD alike;
- ``OPENBLAS_CORETYPE=Haswell``: numpy's OpenBLAS kernels for Haswell (else it picks e.g. SkylakeX);
- oneDNN off (``torch.backends.mkldnn.enabled = False``): convolutions through PyTorch's own im2col + MKL GEMM;
- a fixed number of intra-op threads (``SIMMLM_THREADS``, default 2): float sums split across threads change
  with their number.

The variables must be set before torch and numpy are imported: :func:`apply_environment` runs when ``simmlm`` is
imported, so ``SIMMLM_REPRODUCIBILITY=portable simmlm ...`` (or exporting it before ``import simmlm``) is
enough; :func:`configure_torch` applies the rest and refuses when torch (or numpy) came first. Bit-exact results
then need the same thread count and the same package versions; GPUs and non-x86 processors are outside its promise.
This module imports nothing heavy: it runs before torch.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

MODE_VARIABLE = "SIMMLM_REPRODUCIBILITY"
THREADS_VARIABLE = "SIMMLM_THREADS"
MODES = ("native", "portable")
#: What portable mode sets before torch and numpy are imported (see the module docstring).
PORTABLE_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
DEFAULT_THREADS = 2


def reproducibility_mode() -> str:
    """``native`` or ``portable``, from ``$SIMMLM_REPRODUCIBILITY`` (unset or empty: ``native``).

    Raises:
        ValueError: for any other value.
    """
    mode = os.environ.get(MODE_VARIABLE, "").strip().lower() or "native"
    if mode not in MODES:
        raise ValueError(f"{MODE_VARIABLE} must be one of {', '.join(MODES)}, got {os.environ[MODE_VARIABLE]!r}")
    return mode


def portable_threads() -> int:
    """The intra-op thread count of portable mode: ``$SIMMLM_THREADS``, default 2."""
    text = os.environ.get(THREADS_VARIABLE, str(DEFAULT_THREADS))
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{THREADS_VARIABLE} must be a positive integer, got {text!r}")
    return threads


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def instruction_set() -> str | None:
    """The widest vector instruction set the processor has (``AVX-512``, ``AVX2``, ``AVX``, else ``None``), from
    ``/proc/cpuinfo`` on Linux: what the processor offers, where torch's ``cpu_capability`` is what it uses (AVX2
    in portable mode). ``None`` where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return None
    widest = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))
    return next((name for flag, name in widest if flag in flags), None)


def _runs_avx2() -> bool:
    """An x86-64 processor with AVX2 (an unreadable ``/proc/cpuinfo`` counts as one: portable mode is tried)."""
    return _is_x86() and instruction_set() in ("AVX-512", "AVX2", None)


def apply_environment() -> None:
    """In portable mode on an x86-64 processor with AVX2, set :data:`PORTABLE_ENVIRONMENT` (overriding what was
    set) for the libraries imported after this; nothing otherwise. An invalid mode, or a processor without AVX2
    (where those code paths do not exist), is left for :func:`configure_torch` to report."""
    try:
        portable = reproducibility_mode() == "portable"
    except ValueError:
        return
    if portable and _runs_avx2():
        global _NUMPY_CAME_FIRST
        # numpy's OpenBLAS reads OPENBLAS_CORETYPE when numpy is imported: too late to set it now
        _NUMPY_CAME_FIRST = "numpy" in sys.modules and os.environ.get("OPENBLAS_CORETYPE") != "Haswell"
        os.environ.update(PORTABLE_ENVIRONMENT)


#: Whether numpy (and so its OpenBLAS, on its own kernels) was loaded before :func:`apply_environment` ran.
_NUMPY_CAME_FIRST = False


def configure_torch() -> None:
    """Apply the mode to torch (call before any computation; idempotent): in portable mode oneDNN off and the
    thread count pinned.

    Raises:
        ValueError: for an invalid ``$SIMMLM_REPRODUCIBILITY`` or ``$SIMMLM_THREADS``.
        RuntimeError: in portable mode on an x86 processor without AVX2, or when torch chose its kernels (at its
            first operation, which may follow ``import torch``) before simmlm applied the environment.
    """
    import torch

    if reproducibility_mode() != "portable":
        return
    threads = portable_threads()
    if _is_x86() and not _runs_avx2():
        raise RuntimeError(
            f"{MODE_VARIABLE}=portable needs a processor with AVX2 (this one has {instruction_set()}): unset it to "
            "run in native mode"
        )
    capability = torch.backends.cpu.get_cpu_capability()
    if _is_x86() and capability not in ("AVX2", "DEFAULT"):
        raise RuntimeError(
            f"{MODE_VARIABLE}=portable, but torch already runs {capability} kernels: it computed before simmlm "
            f"could set ATEN_CPU_CAPABILITY. Set {MODE_VARIABLE}=portable in the environment before Python starts, "
            "or import simmlm before using torch."
        )
    if _NUMPY_CAME_FIRST:
        raise RuntimeError(
            f"{MODE_VARIABLE}=portable, but numpy was imported before simmlm, so its OpenBLAS already chose this "
            "processor's kernels (OPENBLAS_CORETYPE is read when numpy loads). Import simmlm before numpy, or set "
            f"{MODE_VARIABLE}=portable and OPENBLAS_CORETYPE=Haswell in the environment before Python starts."
        )
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def mode_provenance() -> dict[str, Any]:
    """The mode and what it set, for ``provenance`` (the thread count is recorded beside it)."""
    import torch

    mode = reproducibility_mode()
    return {
        "mode": mode,
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "environment": {name: os.environ.get(name) for name in PORTABLE_ENVIRONMENT},
    }


def cache_subfolder() -> str:
    """Arrays built in portable mode (e.g. avMNIST's MFCCs, whose mel filterbank runs through OpenBLAS) are cached
    apart from native ones: ``portable`` or ``""``."""
    try:
        return "portable" if reproducibility_mode() == "portable" else ""
    except ValueError:
        return ""
