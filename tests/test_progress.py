"""`simmlm.progress`, the one progress mechanism: a rich bar on a terminal, plain flushed lines through the logger when
standard error is a pipe or a file, and the CLI's lines above a bar."""

from __future__ import annotations

import io
import logging
import re

import pytest

from simmlm import progress as progress_module
from simmlm.progress import duration, live_console, progress, track


class Stream(io.StringIO):
    """A stream that says whether it is a terminal."""

    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def _stderr(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> Stream:
    """Standard error as a terminal or a pipe (set inside the test: pytest's capture resets it between phases)."""
    stream = Stream(terminal)
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr("sys.stdout", Stream(terminal=False))
    monkeypatch.setenv("TERM", "xterm-256color")
    return stream


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "simmlm.progress"]


def test_piped_progress_is_a_few_plain_lines_start_every_tenth_and_end(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    piped = _stderr(monkeypatch, terminal=False)
    with caplog.at_level(logging.INFO, logger="simmlm"):
        assert list(track(range(25), "building things", unit="things")) == list(range(25))
    lines = _lines(caplog)
    assert lines[0] == "building things: 0/25 things"
    assert re.fullmatch(r"building things: 25/25 things in \d+\.\d s", lines[-1]), lines
    middle = lines[1:-1]
    assert len(middle) == 9, lines  # one a tenth (the first past 10 %, 20 %, ...), none at the end
    assert re.fullmatch(r"building things: 3/25 things \(12 %, \d+\.\d s, about \d+\.\d s left\)", middle[0])
    assert not any(re.search(r"[\x1b\r]", line) for line in lines)  # no control characters
    assert piped.getvalue() == ""  # through the logger, not around it


def test_piped_progress_also_reports_after_a_while_and_counts_without_a_total(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stderr(monkeypatch, terminal=False)
    monkeypatch.setattr(progress_module, "SECONDS", 0.0)  # every step is "a while" after the last line
    with caplog.at_level(logging.INFO, logger="simmlm"), progress("fetching", unit="files") as bar:
        for _ in range(3):
            bar.advance()
            bar.note("1.2 MB")
    lines = _lines(caplog)
    assert lines[0] == "fetching: 0 files" and len(lines) == 5
    assert re.fullmatch(r"fetching: 2 files, 1\.2 MB \(\d+\.\d s\)", lines[2])
    assert re.fullmatch(r"fetching: 3 files, 1\.2 MB in \d+\.\d s", lines[-1])


def test_an_error_ends_the_lines_without_an_end_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stderr(monkeypatch, terminal=False)
    with caplog.at_level(logging.INFO, logger="simmlm"), pytest.raises(KeyError), progress("work", 4) as bar:
        bar.advance()
        raise KeyError("stop")
    assert not any(" in " in line for line in _lines(caplog))


def test_without_logging_set_up_the_lines_go_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    piped = _stderr(monkeypatch, terminal=False)
    monkeypatch.setattr(progress_module, "logger", logging.Logger("detached"))  # no handler anywhere above it
    for _ in track([1, 2], "reading", unit="files"):
        pass
    text = piped.getvalue()
    assert text.startswith("reading: 0/2 files\n") and "reading: 2/2 files in " in text


def test_a_terminal_gets_a_transient_bar_and_no_lines(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _stderr(monkeypatch, terminal=True)
    with caplog.at_level(logging.INFO, logger="simmlm"):
        with progress("outer", 2, "runs") as outer:
            console = live_console()
            assert console is not None
            with progress("inner", 3, "cases") as inner:  # a bar inside a bar: one display, two rows
                assert live_console() is console
                inner.advance(3)
            outer.advance(2)
        assert live_console() is None
    assert not _lines(caplog)
    text = terminal.getvalue()
    assert "outer" in text and "0/2" in text and "inner" in text and "0/3" in text  # two rows on one display
    assert text.endswith("\x1b[2K\x1b[1A\x1b[2K\x1b[?25h\r")  # both erased at the end (transient)


def test_disabled_progress_shows_nothing(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _stderr(monkeypatch, terminal=True)
    with caplog.at_level(logging.INFO, logger="simmlm"), progress("quiet", 2, enabled=False) as bar:
        assert live_console() is None
        bar.advance(2)
    assert bar.done == 2 and not _lines(caplog) and terminal.getvalue() == ""


def test_the_commands_lines_go_above_a_bar_in_a_terminal_and_to_their_file_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = _stderr(monkeypatch, terminal=True)
    from rich.console import Console

    from simmlm.cli.common import say

    shown, piped_out = Stream(terminal=True), Stream(terminal=False)
    with progress("runs", 2):
        say(Console(file=shown, force_terminal=True), "a run trained")  # printed through the bar's console
        say(Console(file=piped_out), "a line for the log file")
    assert "a run trained" in terminal.getvalue() and "a run trained" not in shown.getvalue()
    assert piped_out.getvalue() == "a line for the log file\n"


def test_durations_read_as_seconds_minutes_or_hours() -> None:
    assert [duration(s) for s in (4.21, 185, 7620)] == ["4.2 s", "3 min 05 s", "2 h 07 min"]
