"""Progress bars and Ctrl-C handling of the sweep loop.

:func:`progress_bar` is a tqdm bar on stderr, shown only when stderr is a
terminal (and not switched off). :class:`FinishPoint` lets the point being
measured finish when the user presses Ctrl-C: the SIGINT handler is replaced
only for the duration of one point (on the main thread; elsewhere it does
nothing), a first Ctrl-C is remembered and raised as ``KeyboardInterrupt``
when the point is stored, a second one raises at once (the point is then
abandoned, never half stored).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

from tqdm import tqdm

__all__ = ["FinishPoint", "progress_bar", "show_progress"]

log = logging.getLogger(__name__)


def show_progress(progress: bool | None) -> bool:
    """Whether to draw a bar: ``progress`` if given, else whether stderr is a terminal."""
    if progress is not None:
        return bool(progress)
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def progress_bar(total: int, desc: str, progress: bool | None = None) -> tqdm:
    """A tqdm bar of ``total`` points (disabled unless :func:`show_progress`).

    Parameters
    ----------
    total : int
        Number of points.
    desc : str
        Label (the measurement kind).
    progress : bool, optional
        Force the bar on or off; None: only on a terminal.
    """
    return tqdm(
        total=total,
        desc=desc,
        unit="pt",
        disable=not show_progress(progress),
        file=sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )


class FinishPoint:
    """Context manager: a first Ctrl-C inside waits for the block's end.

    Parameters
    ----------
    what : str
        What is being finished, for the log message.
    """

    def __init__(self, what: str = "the current point") -> None:
        self.what = what
        self._old: Any = None
        self._received: tuple[int, FrameType | None] | None = None

    def __enter__(self) -> FinishPoint:
        self._received = None
        self._old = None
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._old = signal.signal(signal.SIGINT, self._first)
        return self

    def _first(self, sig: int, frame: FrameType | None) -> None:
        self._received = (sig, frame)
        log.warning("Ctrl-C: finishing %s, then stopping (press again to stop now)", self.what)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        if self._received is not None and exc_type is None:
            raise KeyboardInterrupt
