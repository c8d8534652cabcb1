"""The one progress mechanism of long loops: a rich bar in a terminal, plain flushed lines anywhere else.

:func:`track` wraps an iterable; :func:`progress` is a context manager whose ``advance(n)`` counts (files, cases,
chunks of a batch) and whose ``note(text)`` adds a short detail (bytes so far). When standard error is a terminal a
transient rich bar shows there (bars opened inside one another share one display), and the command line prints
its own lines above it through :func:`live_console`. Anywhere else (a pipe, a file, CI) the same progress is plain
lines on this module's logger at ``INFO``: one at the start, one about every 10 % (or every 30 s), and one at the
end with the elapsed time, so that logs show progress without control characters. Where no logging is set up at
all (a script that never configured it) those lines go to standard error, flushed. Rich is imported only when a
bar is drawn.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
STEPS = 10  # a plain line about every tenth of the total ...
SECONDS = 30.0  # ... or after this many seconds without one, whichever comes first

_lock = threading.Lock()
_display: Any = None  # the rich Progress that the bars open in a terminal share
_open = 0


def in_terminal() -> bool:
    """Whether standard error is a terminal that can redraw a bar (not a pipe, a file or ``TERM=dumb``)."""
    try:
        return bool(sys.stderr.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def live_console() -> Any:
    """The rich console of the bar showing now (what is printed on it appears above the bar), else ``None``."""
    display = _display
    return None if display is None else display.console


def duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 05 s``, ``2 h 07 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _emit(line: str) -> None:
    if logger.hasHandlers():
        logger.info("%s", line)
    else:  # nothing configured: lines on standard error rather than nowhere
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


class Progress:
    """One counted task of :func:`progress`: a task on the shared bar, or plain lines (``bar=False``)."""

    def __init__(self, description: str, total: int | None, unit: str, bar: bool) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done, self.detail = 0, ""
        self.start = self._last = time.monotonic()
        self._step = 0  # tenths of the total reported so far
        self._lock = threading.Lock()
        self._task: Any = _display.add_task(description, total=total, note="") if bar else None

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more done (thread-safe)."""
        if self._task is not None:
            _display.advance(self._task, n)
            return
        with self._lock:
            self.done += n
            now = time.monotonic()
            due = now - self._last >= SECONDS
            if self.total:
                step = min(self.done, self.total) * STEPS // self.total
                due, self._step = due or step > self._step, max(step, self._step)
            if not due or (self.total is not None and self.done >= self.total):  # the end has a line of its own
                return
            self._last = now
            line = self.line(now)
        _emit(line)

    def note(self, text: str) -> None:
        """A short detail shown beside the count (e.g. the bytes received so far)."""
        if self._task is not None:
            _display.update(self._task, note=text)
        self.detail = text

    def line(self, now: float | None = None, end: bool = False) -> str:
        """The plain line: what, how many, and the time so far (with an estimate of what is left) or in all."""
        seconds = (time.monotonic() if now is None else now) - self.start
        count = f"{self.done}/{self.total} {self.unit}" if self.total is not None else f"{self.done} {self.unit}"
        count += f", {self.detail}" if self.detail else ""
        if end:
            return f"{self.description}: {count} in {duration(seconds)}"
        if not self.done:
            return f"{self.description}: {count}"
        if not self.total:
            return f"{self.description}: {count} ({duration(seconds)})"
        left = seconds * (self.total - self.done) / self.done
        share = f"{100 * self.done // self.total} %"
        return f"{self.description}: {count} ({share}, {duration(seconds)}, about {duration(left)} left)"


class _Off(Progress):
    """What a disabled :func:`progress` yields: it counts and shows nothing."""

    def __init__(self, description: str, total: int | None, unit: str) -> None:
        super().__init__(description, total, unit, bar=False)

    def advance(self, n: int = 1) -> None:
        self.done += n


@contextmanager
def progress(
    description: str, total: int | None = None, unit: str = "items", enabled: bool = True
) -> Iterator[Progress]:
    """Show the progress of a loop of ``total`` steps (``None``: unknown), counted by ``advance(n)``.

    A bar on a terminal's standard error; otherwise plain lines (see the module's docstring) whose last one, when
    the block ends without an error, gives the elapsed time. ``enabled=False`` shows nothing.
    """
    global _display, _open
    if not enabled:
        yield _Off(description, total, unit)
        return
    bar = in_terminal()
    if bar:
        with _lock:
            if _display is None:
                _display = _rich_display()
                _display.start()
            _open += 1
    task = Progress(description, total, unit, bar)
    try:
        if not bar:
            _emit(task.line())
        yield task
        if not bar:
            _emit(task.line(end=True))
    finally:
        if bar:
            with _lock:
                _display.remove_task(task._task)
                _open -= 1
                if not _open:
                    _display.stop()
                    _display = None


def track(iterable: Iterable[T], description: str, total: int | None = None, unit: str = "items") -> Iterator[T]:
    """Iterate over ``iterable`` showing its progress (:func:`progress`); ``total`` defaults to its length."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress(description, total, unit) as task:
        for item in iterable:
            yield item
            task.advance()


def _rich_display() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"))
    console = Console(file=sys.stderr, force_terminal=True)
    return Bar(*columns, TimeElapsedColumn(), console=console, transient=True, redirect_stdout=_stdout_is_terminal())


def _stdout_is_terminal() -> bool:
    """Only then may the bar route bare writes to standard output above itself (a pipe keeps what it is given)."""
    try:
        return bool(sys.stdout.isatty())
    except (AttributeError, ValueError, OSError):
        return False
