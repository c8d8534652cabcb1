"""Where avMNIST's raw files come from, and their checksums (``simmlm download avmnist --data-dir DIR``).

``DIR/avmnist/`` receives what the avMNIST build reads (:func:`simmlm.datasets.avmnist.loader.required_files`):

* ``mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` from the MNIST mirrors in :data:`MNIST_MIRRORS`,
  tried in order (yann.lecun.com, the original home, now often refuses scripted downloads; torchvision falls
  back to the same PyTorch S3 mirror; the Google CVDF bucket is the one TensorFlow 1.x's MNIST loader used).
* ``fsdd/recordings/{digit}_{speaker}_{index}.wav`` for speakers jackson, nicolas and theo (1,500 WAVs), one
  by one from the Free Spoken Digit Dataset's GitHub repository (Jakobovski/free-spoken-digit-dataset) at
  tag ``v1.0.10``, pinned by its commit :data:`FSDD_COMMIT` (a commit cannot move; a tag can). v1.0.10 is the
  newest tag and the first with the full 3,000-recording, 6-speaker set described in DATA.md; the project's
  reference copy is byte-identical to it (all 3,000 git blobs match), and the jackson/nicolas/theo files are
  unchanged since v1.0.8 (v1.0.7 and older hold different trims of 500 of them).

The checksums ship in the package (``avmnist.sha256``; for the ``*.gz`` files, of the decompressed IDX bytes).
Base URLs can be overridden by arguments or by the environment: ``SIMMLM_MNIST_URL`` (one or more base URLs,
separated by commas or spaces, each followed by the MNIST file name) and ``SIMMLM_FSDD_URL`` (the base URL
of the ``recordings/`` folder), e.g. to use a local mirror.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simmlm.data.download import DownloadSummary, RemoteFile, download_files, load_checksums

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
FSDD_TAG = "v1.0.10"
FSDD_COMMIT = "d6938f9bf1545aa66d8489fc9f1385a7abd64282"
FSDD_URL = f"https://raw.githubusercontent.com/Jakobovski/free-spoken-digit-dataset/{FSDD_COMMIT}/recordings/"
MNIST_URL_ENV = "SIMMLM_MNIST_URL"
FSDD_URL_ENV = "SIMMLM_FSDD_URL"
CHECKSUM_PACKAGE, CHECKSUM_FILE = "simmlm.datasets.avmnist", "avmnist.sha256"  # shipped beside this module
USER_AGENT = "simmlm-download/1 (python-urllib)"
MANUAL_LAYOUT = (
    "avmnist/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz and "
    "avmnist/fsdd/recordings/{digit}_{speaker}_{index}.wav"
)


def _base(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def mnist_mirrors(urls: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """MNIST base URLs: the argument, else ``$SIMMLM_MNIST_URL`` (comma/space separated), else the defaults."""
    if urls is None:
        urls = os.environ.get(MNIST_URL_ENV) or None
    if urls is None:
        return MNIST_MIRRORS
    if isinstance(urls, str):
        urls = urls.replace(",", " ").split()
    if not urls:
        raise ValueError("no MNIST base URL given")
    return tuple(_base(u) for u in urls)


def fsdd_base(url: str | None = None) -> str:
    """Base URL of FSDD's ``recordings/`` folder: the argument, else ``$SIMMLM_FSDD_URL``, else the pinned one."""
    return _base(url or os.environ.get(FSDD_URL_ENV) or FSDD_URL)


def avmnist_files(
    mnist_urls: str | Sequence[str] | None = None,
    fsdd_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
) -> list[RemoteFile]:
    """The 1,504 raw files of avMNIST with their sources and checksums (the shipped table by default)."""
    from simmlm.datasets.avmnist import loader

    table = load_checksums(CHECKSUM_PACKAGE, CHECKSUM_FILE) if checksums is None else checksums
    mirrors = mnist_mirrors(mnist_urls)
    recordings = fsdd_base(fsdd_url)
    out = []
    for rel in loader.required_files(Path()):
        path = rel.as_posix()
        if path not in table:
            raise ValueError(f"no checksum for avmnist/{path} in the checksum table")
        urls = tuple(m + rel.name for m in mirrors) if path.startswith("mnist/") else (recordings + rel.name,)
        out.append(RemoteFile(path, urls, table[path], gunzip=path.endswith(".gz")))
    return out


def download_avmnist(
    data_dir: Path,
    *,
    mnist_urls: str | Sequence[str] | None = None,
    fsdd_url: str | None = None,
    **options: Any,
) -> DownloadSummary:
    """Fetch avMNIST's raw files (MNIST + 1,500 FSDD WAVs) into ``data_dir/avmnist``; see :func:`download_files`."""
    items = avmnist_files(mnist_urls, fsdd_url)
    options.setdefault("description", "avMNIST")
    options.setdefault("manual", f"copy the files by hand into {data_dir} with the layout of DATA.md ({MANUAL_LAYOUT})")
    return download_files(items, Path(data_dir) / "avmnist", **options)
