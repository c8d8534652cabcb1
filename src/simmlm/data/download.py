"""Download raw dataset files from their public homes: resumable, checksum-verified, atomic.

:func:`download_files` fetches a list of :class:`RemoteFile` (each with its mirrors and its SHA-256) into a folder.
Every file is checked against its checksum (for ``*.gz`` files, optionally of the *decompressed* bytes, because the
same content circulates in differently compressed ``.gz`` files). A file already present whose sum verifies is
skipped; one whose sum fails is downloaded again. Downloads go to ``<file>.part`` and resume with an HTTP
``Range`` request; only a verified file is renamed (``os.replace``, atomic) to its final name, so nothing truncated
or corrupt ever sits there. Nothing here names a dataset: a dataset's sources and checksums live in its package
under :mod:`simmlm.datasets` (the checksum table as package data, read by :func:`load_checksums`), and its spec's
``download`` hook is what ``simmlm download NAME`` calls.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from http.client import HTTPException
from importlib.resources import files as package_files
from pathlib import Path

from simmlm.progress import progress

logger = logging.getLogger(__name__)

USER_AGENT = "simmlm-download/1 (python-urllib)"
_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A file could not be fetched (network, server) or did not verify; the message says what to do."""


class ChecksumError(DownloadError):
    """A downloaded file's SHA-256 differs from the expected one (the partial file was deleted)."""


class _Interrupted(ConnectionError):
    """The server closed the connection before the announced length (transient: resumed on retry)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: ``path`` relative to the dataset folder, tried from ``urls`` in order.

    ``sha256`` is of the file's bytes, or of its decompressed bytes when ``gunzip`` (``*.gz``).
    """

    path: str
    urls: tuple[str, ...]
    sha256: str
    gunzip: bool = False


@dataclass
class DownloadSummary:
    """What :func:`download_files` did, file by file (paths relative to ``root``)."""

    root: Path
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # present but corrupt, downloaded again (also in downloaded)
    bytes: int = 0

    def line(self) -> str:
        """The one-line summary printed at the end."""
        from rich.filesize import decimal

        again = f" ({len(self.replaced)} replaced after a checksum mismatch)" if self.replaced else ""
        count = len(self.downloaded)
        return (
            f"downloaded {count} file{'' if count == 1 else 's'} ({decimal(self.bytes)}){again}, "
            f"already present {len(self.present)} -> {self.root}"
        )


# --------------------------------------------------------------------------------------------- checksums


def parse_checksums(text: str) -> dict[str, str]:
    """``{path: sha256}`` from ``sha256sum``-style lines (``#`` comments and blank lines skipped)."""
    table: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise ValueError(f"checksum line {number} is not 'SHA256  PATH': {raw!r}")
        table[parts[1].lstrip("*")] = parts[0].lower()
    return table


def load_checksums(package: str, name: str) -> dict[str, str]:
    """The checksum table ``name`` shipped as package data of ``package`` (a dataset's, beside its downloader)."""
    return parse_checksums(package_files(package).joinpath(name).read_text(encoding="utf-8"))


def content_sha256(path: Path, gunzip: bool = False) -> str:
    """SHA-256 of a file's bytes, or of its decompressed bytes when ``gunzip``.

    Raises ``ValueError`` when ``gunzip`` and the file is not a complete gzip stream.
    """
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") if gunzip else path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"not a valid gzip file ({err or type(err).__name__})") from err
    return digest.hexdigest()


def _verifies(path: Path, item: RemoteFile) -> tuple[bool, str]:
    try:
        actual = content_sha256(path, item.gunzip)
    except ValueError as err:
        return False, str(err)
    return actual == item.sha256, actual


# --------------------------------------------------------------------------------------------- transfer


def _is_transient(err: BaseException) -> bool:
    """Worth retrying the same URL: read timeouts, resets, truncation, 5xx/408/429.

    Not retried (the next mirror is tried at once): refused connections, DNS and TLS failures, and connect
    timeouts, so that an offline machine gets its error in seconds.
    """
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code in (408, 429)
    if isinstance(err, urllib.error.URLError):  # raised while connecting: look at the cause
        return isinstance(err.reason, ConnectionResetError | ConnectionAbortedError)
    if isinstance(err, HTTPException):  # IncompleteRead, RemoteDisconnected, BadStatusLine
        return True
    return isinstance(err, TimeoutError | ConnectionError)  # ConnectionError covers _Interrupted, resets


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _fetch(
    url: str,
    part: Path,
    timeout: float,
    on_bytes: Callable[[int], None],
    stop: threading.Event,
) -> bool:
    """Fetch ``url`` into ``part``, resuming a partial ``part`` with a Range request.

    Returns whether the bytes were appended to an earlier partial file (a resume). Network failures
    raise (``URLError``, ``HTTPException``, ``OSError``) and what arrived so far stays in ``part``; a local
    file-system failure raises :class:`DownloadError`.
    """
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # range not satisfiable: the partial file is unusable, start over
            part.unlink()
            return _fetch(url, part, timeout, on_bytes, stop)
        raise
    received = 0
    with response:
        append = False  # 200 (a server ignoring Range included): the full body, start over
        if offset and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink()
                raise _Interrupted(f"unexpected Content-Range {content_range!r} for a request from byte {offset}")
            append = True
        length = response.headers.get("Content-Length")
        try:
            fh = part.open("ab" if append else "wb")
        except OSError as err:
            raise DownloadError(f"cannot write {part}: {err}") from err
        with fh:
            while block := response.read(_CHUNK):
                if stop.is_set():
                    raise _Interrupted("download cancelled")
                try:
                    fh.write(block)
                except OSError as err:
                    raise DownloadError(f"cannot write {part}: {err}") from err
                received += len(block)
                on_bytes(len(block))
    if length is not None and length.isdigit() and received < int(length):
        raise _Interrupted(f"connection closed after {received} of {length} bytes")
    return append


class _Downloader:
    def __init__(
        self,
        root: Path,
        timeout: float,
        retries: int,
        retry_wait: float,
        on_bytes: Callable[[int], None],
        quiet: bool,
        manual: str,
    ) -> None:
        self.root, self.timeout, self.retries, self.retry_wait = root, timeout, retries, retry_wait
        self.on_bytes, self.quiet, self.manual = on_bytes, quiet, manual
        self.stop = threading.Event()

    def one(self, item: RemoteFile) -> str:
        """Make ``root/item.path`` present and verified: "present", "downloaded" or "replaced" (was corrupt)."""
        final = self.root / item.path
        part = final.with_name(final.name + ".part")
        status = "downloaded"
        if final.is_file():
            ok, actual = _verifies(final, item)
            if ok:
                part.unlink(missing_ok=True)
                return "present"
            if not self.quiet:
                what = "%s: present but its checksum does not match (%s); downloading it again"
                logger.warning(what, item.path, actual)
            final.unlink()  # never leave a corrupt file under the final name
            status = "replaced"
        final.parent.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        mismatch: ChecksumError | None = None
        for url in item.urls:
            for fresh_start in (False, True):
                try:
                    appended = self._fetch_with_retries(url, part)
                except (urllib.error.URLError, HTTPException, OSError) as err:
                    if isinstance(err, _Interrupted) and self.stop.is_set():
                        raise
                    failures.append(f"{url} ({_reason(err)})")
                    break  # next mirror; the partial file stays for a resume
                ok, actual = _verifies(part, item)
                if ok:
                    os.replace(part, final)  # atomic: the final name only ever holds a verified file
                    return status
                part.unlink()
                if appended and not fresh_start:  # the earlier part may be stale: one full download to be sure
                    continue
                what = " of the decompressed bytes" if item.gunzip else ""
                mismatch = ChecksumError(
                    f"checksum mismatch for {item.path} downloaded from {url}: expected sha256{what} "
                    f"{item.sha256}, got {actual}. The partial download was deleted and nothing was written under "
                    f"{final}. Run the command again, or copy the file by hand (see DATA.md)."
                )
                failures.append(f"{url} (checksum mismatch)")
                break
        if mismatch is not None and len(failures) == 1:
            raise mismatch
        if mismatch is not None:
            raise ChecksumError(f"{mismatch} Tried: {'; '.join(failures)}.")
        raise DownloadError(
            f"cannot download {item.path} from {'; '.join(failures)}. This machine may be offline, or the server "
            f"unreachable or blocking the request. Run the same command again to resume (verified files are kept), "
            f"or {self.manual}."
        )

    def _fetch_with_retries(self, url: str, part: Path) -> bool:
        """:func:`_fetch` with up to ``retries`` more attempts after transient failures, each one resuming."""
        for attempt in range(self.retries + 1):
            try:
                return _fetch(url, part, self.timeout, self.on_bytes, self.stop)
            except (urllib.error.URLError, HTTPException, OSError) as err:
                if attempt == self.retries or self.stop.is_set() or not _is_transient(err):
                    raise
            time.sleep(self.retry_wait * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover


def download_files(
    files: Iterable[RemoteFile],
    root: Path,
    *,
    timeout: float = 20.0,
    retries: int = 2,
    retry_wait: float = 0.5,
    workers: int = 8,
    quiet: bool = False,
    description: str = "downloading",
    manual: str | None = None,
) -> DownloadSummary:
    """Make every file present and verified under ``root``; download what is missing or corrupt.

    ``timeout``: seconds for connecting and for each read. ``retries``: extra attempts per URL after a
    transient failure (read timeout, reset, truncated body, 5xx), each resuming the partial file, after
    ``retry_wait * 2**k`` seconds. ``workers`` files are fetched at a time. ``manual`` ends the network error's
    message: how to get the files by hand. The progress over the files (and the bytes received) shows as
    :mod:`simmlm.progress` shows it, under ``description``; a file present but corrupt is a warning and the summary
    line an ``INFO`` record on this module's logger. ``quiet``: none of these.

    Raises :class:`DownloadError` (network, local disk) or :class:`ChecksumError` on the first file that fails;
    files finished by then stay (verified) and partial ones stay as ``.part`` for the next run to resume.
    """
    from rich.filesize import decimal

    items = list(files)
    root = Path(root)
    summary = DownloadSummary(root)
    lock = threading.Lock()
    manual = manual or f"copy the files by hand into {root}"
    with progress(description, len(items), "files", enabled=not quiet) as bar:

        def on_bytes(count: int) -> None:
            with lock:
                summary.bytes += count
                total = summary.bytes
            bar.note(decimal(total))

        downloader = _Downloader(root, timeout, retries, retry_wait, on_bytes, quiet, manual)

        def work(item: RemoteFile) -> None:
            try:
                status = downloader.one(item)
            except OSError as err:  # network errors are handled inside: this one is local (permissions, disk)
                raise DownloadError(f"{item.path}: {err}") from err
            with lock:
                (summary.present if status == "present" else summary.downloaded).append(item.path)
                if status == "replaced":
                    summary.replaced.append(item.path)
            bar.advance()

        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="simmlm-download")
        try:
            futures: list[Future[None]] = [pool.submit(work, item) for item in items]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                error = future.exception() if future.done() else None
                if error is not None:
                    raise error
        except BaseException:
            downloader.stop.set()  # running transfers stop at their next block; queued ones never start
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    order = {item.path: k for k, item in enumerate(items)}
    for names in (summary.downloaded, summary.present, summary.replaced):
        names.sort(key=order.__getitem__)
    if not quiet:
        logger.info("%s", summary.line())
    return summary
