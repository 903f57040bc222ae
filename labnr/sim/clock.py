"""The virtual lab's clock.

Every emulated instrument operation advances simulated time by what it would
take on the real instrument, and every drift in the simulated device evolves on
this clock. A simulated 24-hour lock therefore runs in minutes of wall time.
"""

from __future__ import annotations

import threading
import time


class VirtualClock:
    """Monotonic simulated time in seconds.

    Parameters
    ----------
    start : float
        Initial simulated time in s.
    realtime : bool
        If True, :meth:`advance` also sleeps for the advanced time, so the
        virtual lab runs at the pace of a real one.
    """

    def __init__(self, start: float = 0.0, realtime: bool = False) -> None:
        self._now = float(start)
        self.realtime = bool(realtime)
        self._lock = threading.Lock()

    @property
    def now(self) -> float:
        """Current simulated time in s."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Advance simulated time.

        Parameters
        ----------
        seconds : float
            Duration in s; must be finite and non-negative.

        Returns
        -------
        float
            The new simulated time in s.
        """
        if not (seconds >= 0.0 and seconds < float("inf")):
            raise ValueError(
                f"VirtualClock.advance: seconds={seconds!r} is not allowed; "
                "it must be a finite number >= 0"
            )
        if self.realtime and seconds > 0:
            time.sleep(seconds)
        with self._lock:
            self._now += seconds
            return self._now
