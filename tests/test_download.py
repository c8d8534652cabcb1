"""`simmlm download`: resumable, checksum-verified downloads, against a loopback HTTP server only (no internet)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import random
import re
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.data import download
from simmlm.data.download import ChecksumError, DownloadError, RemoteFile, download_files
from simmlm.datasets.avmnist import download as avmnist_download
from simmlm.datasets.avmnist import loader as avmnist

SHARED_AVMNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "avmnist"
FAST = {"quiet": True, "retry_wait": 0.0, "timeout": 5.0}


class Server(ThreadingHTTPServer):
    """A static file server with knobs: honour Range or not, drop the first response of a path after K bytes."""

    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(directory)))
        self.directory = directory
        self.honour_range = True
        self.drop_after: int | None = None
        self.dropped: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def ranges(self, path: str) -> list[str | None]:
        """The Range header of every request for ``path`` (None: no Range), in order."""
        with self.lock:
            return [rng for p, rng in self.requests if p == "/" + path]


class RangeHandler(SimpleHTTPRequestHandler):
    """GET with ``Range: bytes=N-`` support (SimpleHTTPRequestHandler ignores Range)."""

    server: Server

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        srv = self.server
        rng = self.headers.get("Range")
        with srv.lock:
            srv.requests.append((self.path, rng))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match and srv.honour_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with srv.lock:
            drop = srv.drop_after is not None and self.path not in srv.dropped
            srv.dropped.add(self.path)
        if drop:
            assert srv.drop_after is not None
            self.wfile.write(body[: srv.drop_after])  # then hang up: the client sees a short body
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server API
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Path], Server]]:
    """Start loopback servers on free ports (``serve(folder)``); all are shut down after the test."""
    servers: list[Server] = []

    def start(directory: Path) -> Server:
        server = Server(directory)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def tiny_set(folder: Path, base_url: str) -> tuple[list[RemoteFile], dict[str, bytes]]:
    """Three files served from ``folder`` (one gzip, checked on its decompressed bytes; one of 300 kB)."""
    rng = random.Random(0)
    idx = rng.randbytes(5_000)
    served = {
        "mnist/tiny-idx1-ubyte.gz": gzip.compress(idx, mtime=0),
        "rec/0_a_0.wav": rng.randbytes(2_000),
        "rec/big.wav": rng.randbytes(300_000),
    }
    for rel, data in served.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    expected = {**served, "mnist/tiny-idx1-ubyte.gz": idx}
    files = [
        RemoteFile(rel, (base_url + rel,), hashlib.sha256(expected[rel]).hexdigest(), gunzip=rel.endswith(".gz"))
        for rel in served
    ]
    return files, served


@pytest.fixture
def tiny(tmp_path: Path, serve: Callable[[Path], Server]) -> tuple[Server, list[RemoteFile], dict[str, bytes]]:
    (tmp_path / "www").mkdir()
    server = serve(tmp_path / "www")
    files, served = tiny_set(tmp_path / "www", server.url)
    return server, files, served


def leftovers(root: Path) -> list[Path]:
    return sorted(root.rglob("*.part"))


def test_download_verifies_and_a_second_run_downloads_nothing(tiny, tmp_path: Path) -> None:
    server, files, served = tiny
    root = tmp_path / "data"
    summary = download_files(files, root, **FAST)
    assert summary.downloaded == [f.path for f in files] and summary.present == []
    assert summary.bytes == sum(len(b) for b in served.values())
    for rel, data in served.items():
        assert (root / rel).read_bytes() == data  # .gz kept as served; its sum is of the decompressed bytes
    assert leftovers(root) == []
    requests = len(server.requests)

    again = download_files(files, root, **FAST)
    assert again.downloaded == [] and again.present == [f.path for f in files]
    assert len(server.requests) == requests  # nothing fetched


def test_corrupt_served_file_raises_and_leaves_nothing(tiny, tmp_path: Path) -> None:
    server, files, _ = tiny
    (server.directory / "rec/big.wav").write_bytes(b"not the recording")
    root = tmp_path / "data"
    with pytest.raises(ChecksumError) as info:
        download_files(files, root, **FAST)
    message = str(info.value)
    big = next(f for f in files if f.path == "rec/big.wav")
    assert "rec/big.wav" in message and big.urls[0] in message
    assert big.sha256 in message and hashlib.sha256(b"not the recording").hexdigest() in message
    # the corrupt file leaves nothing; a download cut short by the failure may keep its .part (resumable, and
    # never under a final name)
    assert not (root / "rec/big.wav").exists() and root / "rec/big.wav.part" not in leftovers(root)
    assert all(path.with_suffix("").is_file() is False for path in leftovers(root))


def test_corrupt_gzip_is_reported_not_crashed(tiny, tmp_path: Path) -> None:
    server, files, _ = tiny
    (server.directory / "mnist/tiny-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    with pytest.raises(ChecksumError, match=r"tiny-idx1-ubyte\.gz.*decompressed bytes.*not a valid gzip file"):
        download_files(files[:1], tmp_path / "data", **FAST)
    assert not (tmp_path / "data/mnist/tiny-idx1-ubyte.gz").exists() and leftovers(tmp_path / "data") == []


def test_corrupt_present_file_is_downloaded_again_and_said_so(
    tiny, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, files, served = tiny
    root = tmp_path / "data"
    download_files(files, root, **FAST)
    (root / "rec/0_a_0.wav").write_bytes(b"damaged")
    with caplog.at_level(logging.INFO, logger="simmlm"):
        summary = download_files(files, root, **{**FAST, "quiet": False}, description="downloading tiny")
    assert summary.replaced == summary.downloaded == ["rec/0_a_0.wav"] and len(summary.present) == 2
    assert (root / "rec/0_a_0.wav").read_bytes() == served["rec/0_a_0.wav"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rec/0_a_0.wav: present but its checksum does not match" in warnings[0]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "downloaded 1 file" in text and "1 replaced after a checksum mismatch" in text
    assert "already present 2" in text
    assert "downloading tiny: 0/3 files" in text and "downloading tiny: 3/3 files" in text  # piped: plain lines
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="simmlm"):
        download_files(files, root, **FAST)
    assert not caplog.records  # quiet: not a line


def test_interrupted_download_resumes_with_a_range_request(tiny, tmp_path: Path) -> None:
    server, files, served = tiny
    big = [f for f in files if f.path == "rec/big.wav"]
    root = tmp_path / "data"
    server.drop_after = 100_000
    with pytest.raises(DownloadError, match=r"connection closed after 100000 of 300000 bytes") as info:
        download_files(big, root, **{**FAST, "retries": 0})
    assert not isinstance(info.value, ChecksumError) and "offline" in str(info.value)
    assert not (root / "rec/big.wav").exists()
    assert (root / "rec/big.wav.part").stat().st_size == 100_000  # kept for the next run

    summary = download_files(big, root, **FAST)
    assert summary.downloaded == ["rec/big.wav"] and summary.bytes == 200_000  # only the rest was fetched
    assert (root / "rec/big.wav").read_bytes() == served["rec/big.wav"] and leftovers(root) == []
    assert server.ranges("rec/big.wav") == [None, "bytes=100000-"]


def test_dropped_connection_is_retried_within_one_run(tiny, tmp_path: Path) -> None:
    server, files, served = tiny
    server.drop_after = 1_000  # every file's first response is cut short
    summary = download_files(files, tmp_path / "data", **{**FAST, "retries": 1})
    assert summary.downloaded == [f.path for f in files]
    for rel, data in served.items():
        assert (tmp_path / "data" / rel).read_bytes() == data
    assert server.ranges("rec/big.wav") == [None, "bytes=1000-"]


def test_server_ignoring_range_starts_over(tiny, tmp_path: Path) -> None:
    server, files, served = tiny
    server.honour_range = False
    root = tmp_path / "data"
    (root / "rec").mkdir(parents=True)
    (root / "rec/big.wav.part").write_bytes(b"x" * 5_000)  # a stale partial file: must not be kept
    download_files(files, root, **FAST)
    assert (root / "rec/big.wav").read_bytes() == served["rec/big.wav"] and leftovers(root) == []
    assert server.ranges("rec/big.wav") == ["bytes=5000-"]  # asked to resume, answered 200: full body


def test_stale_partial_file_is_fetched_again_in_full(tiny, tmp_path: Path) -> None:
    server, files, served = tiny
    root = tmp_path / "data"
    (root / "rec").mkdir(parents=True)
    (root / "rec/big.wav.part").write_bytes(b"x" * 5_000)  # resumed with 206, fails the check, then refetched
    (root / "rec/0_a_0.wav.part").write_bytes(served["rec/0_a_0.wav"] + b"extra")  # 416: start over
    download_files(files, root, **FAST)
    assert (root / "rec/big.wav").read_bytes() == served["rec/big.wav"]
    assert (root / "rec/0_a_0.wav").read_bytes() == served["rec/0_a_0.wav"] and leftovers(root) == []
    assert server.ranges("rec/big.wav") == ["bytes=5000-", None]
    assert server.ranges("rec/0_a_0.wav") == [f"bytes={len(served['rec/0_a_0.wav']) + 5}-", None]


def test_mirrors_are_tried_in_order(tiny, tmp_path: Path) -> None:
    server, files, served = tiny
    dead, missing = closed_port_url(), server.url + "nowhere/"
    mirrored = [RemoteFile(f.path, (dead + f.path, missing + f.path, *f.urls), f.sha256, f.gunzip) for f in files]
    download_files(mirrored, tmp_path / "data", **FAST)
    assert all((tmp_path / "data" / rel).read_bytes() == data for rel, data in served.items())


def test_unreachable_server_gives_one_clear_error(tmp_path: Path) -> None:
    urls = (closed_port_url() + "a.wav", closed_port_url() + "a.wav")
    item = RemoteFile("rec/a.wav", urls, "0" * 64)
    with pytest.raises(DownloadError) as info:
        download_files([item], tmp_path / "data", **FAST, manual="copy them by hand (see DATA.md)")
    message = str(info.value)
    assert all(url in message for url in urls) and "refused" in message
    assert "may be offline" in message and "copy them by hand (see DATA.md)" in message
    assert list((tmp_path / "data").rglob("*.wav*")) == []


def test_shipped_checksums_cover_exactly_the_avmnist_files(monkeypatch: pytest.MonkeyPatch) -> None:
    table = download.load_checksums(avmnist_download.CHECKSUM_PACKAGE, avmnist_download.CHECKSUM_FILE)
    assert sorted(table) == sorted(p.as_posix() for p in avmnist.required_files(Path()))
    assert len(table) == 1504
    monkeypatch.delenv(avmnist_download.MNIST_URL_ENV, raising=False)
    monkeypatch.delenv(avmnist_download.FSDD_URL_ENV, raising=False)
    items = {f.path: f for f in avmnist_download.avmnist_files()}
    assert items["mnist/t10k-labels-idx1-ubyte.gz"].urls == tuple(
        m + "t10k-labels-idx1-ubyte.gz" for m in avmnist_download.MNIST_MIRRORS
    )
    assert items["mnist/t10k-labels-idx1-ubyte.gz"].gunzip
    wav = items["fsdd/recordings/7_theo_32.wav"]
    assert wav.urls == (avmnist_download.FSDD_URL + "7_theo_32.wav",) and not wav.gunzip
    assert avmnist_download.FSDD_COMMIT in avmnist_download.FSDD_URL

    monkeypatch.setenv(avmnist_download.MNIST_URL_ENV, "http://a.example/m, http://b.example/m/")
    monkeypatch.setenv(avmnist_download.FSDD_URL_ENV, "http://c.example/rec")
    items = {f.path: f for f in avmnist_download.avmnist_files()}
    assert items["mnist/train-images-idx3-ubyte.gz"].urls == (
        "http://a.example/m/train-images-idx3-ubyte.gz",
        "http://b.example/m/train-images-idx3-ubyte.gz",
    )
    assert items["fsdd/recordings/0_jackson_0.wav"].urls == ("http://c.example/rec/0_jackson_0.wav",)
    with pytest.raises(ValueError, match="no checksum for avmnist/mnist"):
        avmnist_download.avmnist_files(checksums={})


def test_parse_checksums_reads_sha256sum_output() -> None:
    text = f"# comment\n\n{'a' * 64}  x/y.wav\n{'B' * 64} *z.gz\n"
    assert download.parse_checksums(text) == {"x/y.wav": "a" * 64, "z.gz": "b" * 64}
    with pytest.raises(ValueError, match="line 1"):
        download.parse_checksums("nonsense path\n")


def test_cli_offline_exits_1_with_one_message_and_no_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(avmnist_download.MNIST_URL_ENV, closed_port_url())
    monkeypatch.setenv(avmnist_download.FSDD_URL_ENV, closed_port_url())
    result = CliRunner().invoke(app, ["download", "avmnist", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "error:" in result.output and "may be offline" in result.output and "127.0.0.1" in result.output
    assert "by hand" in result.output and "DATA.md" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert not any(p.is_file() and not p.name.endswith(".part") for p in tmp_path.rglob("*"))


def test_cli_rejects_unknown_dataset_and_missing_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(app, ["download", "mnist", "--data-dir", "x"])
    assert result.exit_code == 2 and "choose one of avmnist" in result.output
    monkeypatch.delenv("SIMMLM_DATA_DIR", raising=False)
    result = CliRunner().invoke(app, ["download", "avmnist"])
    assert result.exit_code == 2 and "--data-dir is required" in result.output


def test_cli_success_on_a_small_file_set(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, files, served = tiny
    monkeypatch.setattr(avmnist_download, "avmnist_files", lambda *args, **kwargs: files)
    result = CliRunner().invoke(app, ["download", "avmnist", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "downloaded 3 files" in result.output and "already present 0" in result.output
    assert f"simmlm data avmnist --data-dir {tmp_path / 'd'}" in result.output
    assert all((tmp_path / "d/avmnist" / rel).read_bytes() == data for rel, data in served.items())


@pytest.mark.skipif(not SHARED_AVMNIST.is_dir(), reason="needs the shared avMNIST data (../shared/data/avmnist)")
def test_cli_downloads_the_real_avmnist_files_from_a_loopback_mirror(
    tmp_path: Path, serve: Callable[[Path], Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped checksums match the real data and the whole path works (1,504 files over loopback)."""
    server = serve(SHARED_AVMNIST)  # read-only: the server only reads
    monkeypatch.setenv(avmnist_download.MNIST_URL_ENV, server.url + "mnist/")
    monkeypatch.setenv(avmnist_download.FSDD_URL_ENV, server.url + "fsdd/recordings/")
    result = CliRunner().invoke(app, ["download", "avmnist", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "downloaded 1504 files" in result.output and "already present 0" in result.output
    root = tmp_path / "avmnist"
    assert len(avmnist.check_files(root)) == 1504 and leftovers(root) == []
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == sorted(
        p.as_posix() for p in avmnist.required_files(Path())
    )
    requests = len(server.requests)
    result = CliRunner().invoke(app, ["download", "avmnist", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "downloaded 0 files" in result.output and "already present 1504" in result.output
    assert len(server.requests) == requests
