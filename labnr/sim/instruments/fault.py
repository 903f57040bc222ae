"""Fault injection state shared by an emulated instrument and its TCP server.

A :class:`FaultInjector` is a thread-safe bag of pending faults. Every
:class:`~labnr.sim.instruments.scpi.SCPIInstrument` owns one
(``instrument.faults``); :class:`~labnr.sim.instruments.server.SCPIServer`
exposes the same object as ``server.faults`` and applies the transport faults
(drop, latency, freeze, malformed replies). The data faults are applied by the
instruments themselves: error pushes go to the instrument's error queue, and
NaN faults are consumed with :meth:`FaultInjector.take_nan`.

The same faults are reachable over the wire with the ``SIMulation:FAULt``
commands that every emulator understands (see
:class:`~labnr.sim.instruments.scpi.SCPIInstrument`) and from another process
with :func:`labnr.sim.faults.inject_fault`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["FaultInjector"]


class FaultInjector:
    """Pending faults of one emulated instrument.

    Parameters
    ----------
    error_sink : callable, optional
        ``error_sink(code, message)`` pushes an error into the instrument's
        error queue; set by the instrument that owns the injector.
    """

    def __init__(self, error_sink: Callable[[int, str], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._error_sink = error_sink
        self._drop_listeners: list[Callable[[], None]] = []
        self._reset_state()

    def _reset_state(self) -> None:
        self._drop_after: int | None = None
        self._latency = 0.0
        self._frozen_until = 0.0
        self._malformed = 0
        self._nan = 0

    # ------------------------------------------------------------------ user API

    def drop_connection(self, after_commands: int = 0) -> None:
        """Close the client connection(s), now or after ``after_commands`` more messages.

        Parameters
        ----------
        after_commands : int
            0 closes every open client connection at once (including, over
            the wire, the one that sent the command). N > 0 lets N more
            messages be answered; the connection that sends the next one is
            closed without executing it. The close is abortive (TCP reset), so
            the client sees a connection error rather than a timeout. Clients
            may reconnect.
        """
        after = _non_negative_int(after_commands, "after_commands")
        with self._lock:
            self._drop_after = None if after == 0 else after
            listeners = list(self._drop_listeners) if after == 0 else []
        for listener in listeners:
            listener()

    def add_latency(self, seconds: float) -> None:
        """Set the extra wall-clock delay before each reply (0 removes it).

        Parameters
        ----------
        seconds : float
            Delay in s, finite and >= 0. Replaces any previous value.
        """
        value = _non_negative_float(seconds, "seconds")
        with self._lock:
            self._latency = value

    def freeze(self, seconds: float | None = None) -> None:
        """Stop answering: messages received while frozen are discarded unexecuted.

        Parameters
        ----------
        seconds : float, optional
            Wall-clock duration in s; None freezes until :meth:`unfreeze` or
            :meth:`clear`. ``SIMulation`` fault commands are still executed.
        """
        until = (
            math.inf
            if seconds is None
            else time.monotonic() + _non_negative_float(seconds, "seconds")
        )
        with self._lock:
            self._frozen_until = until

    def unfreeze(self) -> None:
        """End a freeze."""
        with self._lock:
            self._frozen_until = 0.0

    def malformed_reply(self, count: int = 1) -> None:
        """Corrupt the next ``count`` replies.

        Text replies are truncated to half their length and end in ``"~?"``;
        a binary block keeps its payload but its length header announces half
        of it, so the rest desynchronises the client's next read.
        """
        value = _non_negative_int(count, "count")
        with self._lock:
            self._malformed = value

    def push_error(self, code: int, message: str) -> None:
        """Push ``code,"message"`` into the instrument's error queue."""
        if self._error_sink is None:
            raise RuntimeError("FaultInjector.push_error: no instrument attached")
        self._error_sink(int(code), str(message))

    def nan_data(self, count: int = 1) -> None:
        """Make the next ``count`` data replies contain NaN (see :meth:`take_nan`)."""
        value = _non_negative_int(count, "count")
        with self._lock:
            self._nan = value

    def clear(self) -> None:
        """Remove every pending fault (pushed errors stay in the error queue)."""
        with self._lock:
            self._reset_state()

    # ------------------------------------------------------- instrument / server side

    def take_nan(self) -> bool:
        """Consume one pending NaN fault.

        The hook for data-producing emulators: call it once per data reply
        and, if it returns True, put NaN into the data (e.g. with
        :func:`labnr.sim.instruments.scpi.inject_nan`). Float arrays returned
        by a query handler get this automatically.

        Returns
        -------
        bool
            True if this reply must contain NaN.
        """
        with self._lock:
            if self._nan <= 0:
                return False
            self._nan -= 1
            return True

    def take_malformed(self) -> bool:
        """Consume one pending malformed-reply fault (server side)."""
        with self._lock:
            if self._malformed <= 0:
                return False
            self._malformed -= 1
            return True

    def take_drop(self) -> bool:
        """Count one incoming message; True if its connection must be dropped now."""
        with self._lock:
            if self._drop_after is None:
                return False
            if self._drop_after == 0:
                self._drop_after = None
                return True
            self._drop_after -= 1
            return False

    @property
    def latency(self) -> float:
        """Extra delay before each reply, s."""
        with self._lock:
            return self._latency

    @property
    def frozen(self) -> bool:
        """True while a freeze is in effect."""
        with self._lock:
            return time.monotonic() < self._frozen_until

    def add_drop_listener(self, listener: Callable[[], None]) -> None:
        """Register a callable that closes client connections on an immediate drop."""
        with self._lock:
            self._drop_listeners.append(listener)

    def remove_drop_listener(self, listener: Callable[[], None]) -> None:
        """Unregister a listener added with :meth:`add_drop_listener` (no error if absent)."""
        with self._lock:
            if listener in self._drop_listeners:
                self._drop_listeners.remove(listener)


def _non_negative_int(value: int, what: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"FaultInjector: {what}={value!r} must be an integer >= 0")
    return int(value)


def _non_negative_float(value: float, what: str) -> float:
    value = float(value)
    if not (0.0 <= value < math.inf):
        raise ValueError(f"FaultInjector: {what}={value!r} must be finite and >= 0")
    return value
