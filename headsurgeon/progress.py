"""Progress of the long steps, reported on the ``headsurgeon.progress`` logger.

Library code never prints. A long step (a batched pass over texts: caching features or block
inputs, scoring a holdout; training; calibration; a sweep's runs) is a :class:`Step`: it logs
its start, its advances, its notes (an epoch's loss, a holdout score) and its end on the
``headsurgeon.progress`` logger, and does not know who, if anyone, looks. :func:`show` attaches
the handler that renders them on stderr (the CLI does, unless ``--quiet`` or ``--json``):

- :class:`Bars` on a terminal: one labelled tqdm bar per step, saying what it counts
  (``caching block inputs:  28%|██▊       | 340/1200 texts [00:10<00:25, ...]``), notes above;
- :class:`Lines` elsewhere (a log file, CI, a pipe), one readable line per event kept: the start
  and the end of every step and every note, and in between a line when another tenth of the
  step is done (at most one per :data:`MIN_GAP` seconds) or :data:`HEARTBEAT` seconds passed
  since the step's last line, with done/total, the elapsed time and an estimate of what is left.

Starts, notes and ends are ``INFO`` records whose message is that line, advances ``DEBUG``: any
logging setup shows readable lines, and without a handler each event costs a level check.
Imports nothing heavy (tqdm only inside :class:`Bars`).

Example:
    >>> from headsurgeon import progress
    >>> with progress.show():  # bars on a terminal, plain lines elsewhere (stderr)
    ...     with progress.Step("scoring", total=len(texts), unit="texts") as step:
    ...         for batch in batches:
    ...             ...
    ...             step.advance(len(batch))
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

LOGGER_NAME = "headsurgeon.progress"
logger = logging.getLogger(LOGGER_NAME)

#: plain lines: a line when this fraction more of a step is done since its last line ...
EVERY = 0.1
#: ... but not within this many seconds of the step's last line (short steps: start and end)
MIN_GAP = 5.0
#: plain lines: a line at least this often (seconds) while a step advances
HEARTBEAT = 30.0

START, ADVANCE, NOTE, END, FAILED = "start", "advance", "note", "end", "failed"
T = TypeVar("T")


def _now() -> float:
    return time.monotonic()


def duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on (as tqdm writes times)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Step:
    """One long step: ``desc`` says what it does, ``total`` ``unit`` what it counts.

    Use it as a context manager (start on entry; end on exit, or "failed" when an exception
    leaves it: a plain log then shows the error alone), call :meth:`advance` as work gets done
    and :meth:`note` for what a line should say once (an epoch's loss). ``enabled=False``
    (progress off, or a process other than the main one) makes every call a no-op.

    Example:
        >>> with Step("caching features", total=1200, unit="texts", enabled=True) as step:
        ...     step.advance(64)
    """

    def __init__(
        self, desc: str, total: int | None = None, unit: str = "items", *, enabled: bool = True
    ):
        self.desc, self.total, self.unit, self.enabled = desc, total, unit, enabled
        self.done = 0
        self.info = ""
        self.started: float | None = None
        self.ended = False

    def __enter__(self) -> Step:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(failed=exc_type is not None)

    def start(self) -> Step:
        """Start the clock and report the start (the context manager calls it)."""
        self.started = _now()
        self._emit(logging.INFO, START)
        return self

    def advance(self, n: int = 1, *, to: int | None = None, info: str | None = None) -> None:
        """``n`` more done (or ``to`` done in all); ``info``: what the lines show after the count
        (e.g. the loss), kept until replaced."""
        self.done = self.done + n if to is None else to
        if info is not None:
            self.info = info
        self._emit(logging.DEBUG, ADVANCE)

    def note(self, message: str) -> None:
        """A line of its own under the step's name (``training: epoch 1/4, loss 0.53``)."""
        self._emit(logging.INFO, NOTE, message)

    def finish(self, info: str | None = None, *, failed: bool = False) -> None:
        """End the step (once): done, or failed (an exception stopped it)."""
        if self.ended:
            return
        self.ended = True
        if info is not None:
            self.info = info
        self._emit(logging.INFO, FAILED if failed else END)

    @property
    def fraction(self) -> float | None:
        """The part done (``None`` without a total)."""
        return self.done / self.total if self.total else None

    def elapsed(self, at: float | None = None) -> float:
        """Seconds since the start (until ``at``, a :func:`time.monotonic` value)."""
        return 0.0 if self.started is None else (_now() if at is None else at) - self.started

    def remaining(self, at: float | None = None) -> float | None:
        """Seconds left at the pace so far (``None`` before anything is done or without total)."""
        if not self.total or not self.done:
            return None
        return self.elapsed(at) / self.done * max(0, self.total - self.done)

    def timing(self, at: float | None = None) -> str:
        """``0:42 elapsed, ~1:46 left`` (the estimate once something is done)."""
        left = self.remaining(at)
        tail = "" if left is None else f", ~{duration(left)} left"
        return f"{duration(self.elapsed(at))} elapsed{tail}"

    def _emit(self, level: int, kind: str, message: str | None = None) -> None:
        if self.enabled and logger.isEnabledFor(level):
            event = Event(self, kind, message, _now())
            logger.log(level, "%s", event, extra={"progress": event})


@dataclass
class Event:
    """What a :class:`Step` reports: its ``kind`` (start, advance, note, end, failed), a note's
    ``message``, and when (``at``, :func:`time.monotonic`); ``str()`` is its plain line."""

    step: Step
    kind: str
    message: str | None
    at: float

    def __str__(self) -> str:
        s = self.step
        extra = f", {s.info}" if s.info else ""
        count = f"{s.done}/{s.total}" if s.total is not None else f"{s.done}"
        n = s.total if s.total is not None else s.done
        unit = s.unit[:-1] if n == 1 and s.unit.endswith("s") else s.unit  # "1 run"
        if self.kind == START:
            size = "" if s.total is None else f", {s.total} {unit}"
            return f"{s.desc}: started{size}"
        if self.kind == NOTE:
            return f"{s.desc}: {self.message}"
        if self.kind == END:
            n = s.total if s.total is not None and s.done == s.total else count
            return f"{s.desc}: done, {n} {unit} in {duration(s.elapsed(self.at))}{extra}"
        if self.kind == FAILED:
            return f"{s.desc}: stopped after {count} {unit}"
        percent = f" ({100 * s.fraction:.0f}%)" if s.fraction is not None else ""
        return f"{s.desc}: {count} {unit}{percent}, {s.timing(self.at)}{extra}"


def event_of(record: logging.LogRecord) -> Event | None:
    """The :class:`Event` a progress record carries (``None``: another record)."""
    return getattr(record, "progress", None)


class _Stderr:
    """The stream a handler writes to: the one given, else ``sys.stderr`` when it writes (so a
    replaced stderr, as a test runner's, is the one used)."""

    def __init__(self, stream=None):
        self._stream = stream

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr


class Lines(logging.Handler, _Stderr):
    """Progress as plain lines (see the module docstring): the start and the end of each step
    and its notes always; an advance when another ``every`` of the step is done and ``min_gap``
    seconds passed since the step's last line, or ``heartbeat`` seconds passed. A failed step's
    end is not written (the error says it); neither is a 100% advance (its end follows)."""

    def __init__(self, stream=None, *, every=EVERY, min_gap=MIN_GAP, heartbeat=HEARTBEAT):
        logging.Handler.__init__(self)
        _Stderr.__init__(self, stream)
        self.every, self.min_gap, self.heartbeat = every, min_gap, heartbeat
        self._last: dict[int, tuple[float, float]] = {}  # step → (its last line's time, fraction)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = event_of(record)
            if event is not None and not self.wanted(event):
                return
            stream = self.stream
            stream.write(f"{event if event is not None else self.format(record)}\n")
            stream.flush()
        except Exception:
            self.handleError(record)

    def wanted(self, event: Event) -> bool:
        """Whether ``event`` gets a line (the policy above; keeps the step's last line)."""
        key, step = id(event.step), event.step
        if event.kind in (END, FAILED):
            self._last.pop(key, None)
            return event.kind == END
        last_at, last_fraction = self._last.get(key, (event.at, 0.0))
        if event.kind in (START, NOTE):
            self._last[key] = (event.at, last_fraction)
            return True
        fraction = step.fraction
        if fraction is not None and fraction >= 1:
            return False
        gap = event.at - last_at
        tenth = fraction is not None and fraction >= last_fraction + self.every - 1e-9
        if gap >= self.heartbeat or (tenth and gap >= self.min_gap):
            self._last[key] = (event.at, last_fraction if fraction is None else fraction)
            return True
        return False


class Bars(logging.Handler, _Stderr):
    """Progress as tqdm bars on a terminal: one per step, labelled with what it does and what
    it counts, the step's ``info`` (the loss) after it; notes written above the bars. A bar
    opened inside another (a sweep's run in the sweep) is cleared when done."""

    FORMAT = (
        "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} "
        "[{elapsed}<{remaining}{postfix}]"
    )

    def __init__(self, stream=None):
        logging.Handler.__init__(self)
        _Stderr.__init__(self, stream)
        self._bars: dict[int, object] = {}

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        try:
            event = event_of(record)
            if event is None or event.kind == NOTE:
                tqdm.write(str(event) if event else self.format(record), file=self.stream)
            elif event.kind == START:
                self._bars[id(event.step)] = self._open(tqdm, event.step)
            elif (bar := self._bars.get(id(event.step))) is not None:
                self._update(bar, event)
        except Exception:
            self._bars.clear()
            self.handleError(record)

    def _open(self, tqdm, step: Step):
        fmt = self.FORMAT if step.total is not None else None
        return tqdm(total=step.total, desc=step.desc, unit=f" {step.unit}", bar_format=fmt,
                    leave=not self._bars, file=self.stream, dynamic_ncols=True)  # fmt: skip

    def _update(self, bar, event: Event) -> None:
        step = event.step
        if step.done > bar.n:
            bar.update(step.done - bar.n)
        if step.info:
            bar.set_postfix_str(step.info, refresh=False)
        if event.kind in (END, FAILED):
            self._bars.pop(id(step), None)
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        super().close()


def each(
    items: Iterable[T], desc: str, unit: str, *, name: Callable[[T], str] = str, enabled=True
) -> Iterator[T]:
    """Yield ``items`` as one :class:`Step` that counts them in ``unit`` (``"runs"``), noting
    each before it is worked on: ``sweep: run 2/6: --train-layers 1, seed 0 (0:42 elapsed,
    ~1:46 left)`` (``name(item)`` says which). For a handful of long items (runs, builds),
    where the note, not the rate-limited advance lines, is what a log needs."""
    items = list(items)
    noun = unit[:-1] if unit.endswith("s") else unit
    with Step(desc, len(items), unit, enabled=enabled) as step:
        for i, item in enumerate(items):
            step.note(f"{noun} {i + 1}/{len(items)}: {name(item)} ({step.timing()})")
            yield item
            step.advance()


def show(stream=None, *, bars: bool | None = None) -> Shown:
    """Render progress on ``stream`` (default: stderr when written to): :class:`Bars` with
    ``bars`` (default: when the stream is a terminal), else :class:`Lines`. Replaces a handler
    a previous call attached; the progress logger stops propagating meanwhile (no line twice
    under ``-v``'s logging).

    Returns:
        a :class:`Shown`: call it, or use it as a context manager, to detach the handler.

    Example:
        >>> with show():
        ...     build_everything()
    """
    target = stream if stream is not None else sys.stderr
    if bars is None:
        bars = bool(getattr(target, "isatty", lambda: False)())
    for old in [h for h in logger.handlers if isinstance(h, Lines | Bars)]:
        logger.removeHandler(old)
    shown = Shown(Bars(stream) if bars else Lines(stream))
    logger.addHandler(shown.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return shown


class Shown:
    """The handler :func:`show` attached: calling this (or leaving its ``with`` block) detaches
    it and restores the progress logger as it was."""

    def __init__(self, handler: logging.Handler):
        self.handler = handler
        self.saved = logger.level, logger.propagate

    def __call__(self) -> None:
        if self.handler in logger.handlers:
            logger.removeHandler(self.handler)
            logger.setLevel(self.saved[0])
            logger.propagate = self.saved[1]
        self.handler.close()

    def __enter__(self) -> Shown:
        return self

    def __exit__(self, *exc) -> None:
        self()
