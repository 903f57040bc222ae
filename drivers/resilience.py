"""Bounded retries with back-off and reconnection for transient instrument faults.

One policy for every labnr driver. A driver wraps each **idempotent**
operation — a query, setting a parameter to an absolute value and reading it
back, one complete acquisition — in :func:`call_with_retries`::

    data = call_with_retries(self, "sweep S21,S11", acquire_once, check=require_finite)

and on a transient fault the operation runs again, after a short back-off and,
where the fault left the connection in an unknown state, a reconnection:

=====================  ==============================================  =================
fault                  how it shows                                     before the retry
=====================  ==============================================  =================
``timeout``            VISA timeout (a freeze, latency beyond it)      reconnect
``connection``         connection reset / broken pipe / closed session reconnect
``malformed``          a reply parser raised ``ValueError``            reconnect (resync)
``nan``                :class:`NonFiniteData` from the ``check``        none (re-acquire)
``instrument error``   the instrument's error queue held an error      none (queue drained)
=====================  ==============================================  =================

An instrument error is retried once (the driver drained the queue when it
raised); a second one in the same operation is persistent. Every other kind
gets :attr:`RetryPolicy.attempts` attempts. When the attempts are used up,
:class:`InstrumentFault` is raised with the instrument, the operation, the
fault kind, the number of attempts and the last error. Anything that is not a
transient fault (a validation error raised before anything was sent, a
``KeyboardInterrupt``) propagates at once, untouched.

Relative or incremental commands and anything whose repetition is not the
same as doing it once (a flux ramp program: re-running it would start from the
wrong level) must not be wrapped as one operation: the flux driver instead
re-reads the output level after a reconnection and plans the rest of the ramp
from there (:meth:`labnr.drivers.flux_gs200.GS200CurrentSource.ramp`).

A timeout, a dropped connection or a malformed reply may leave a late reply
in the connection that would answer the next query. Drivers built on
:class:`labnr.drivers.visa_guard.GuardedVisaInstrument` are told so
(``instrument.mark_dirty``) and flush the connection and check it with an
``*IDN?`` pairing round trip (or reconnect) before their next exchange, with
or without ``reconnect``.

Retries nest safely: inside a wrapped operation of an instrument, further
wrapped operations of the same instrument run once (the outermost one retries),
so attempts never multiply.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyvisa.constants
import pyvisa.errors

__all__ = [
    "DEFAULT_POLICY",
    "FAULT_KINDS",
    "InstrumentErrorReply",
    "InstrumentFault",
    "NonFiniteData",
    "RetryPolicy",
    "call_with_retries",
    "fault_kind",
    "reconnect_visa",
    "require_finite",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The transient fault kinds, in the order of the module table.
FAULT_KINDS = ("timeout", "connection", "malformed", "nan", "instrument error")
_RECONNECT_KINDS = frozenset({"timeout", "connection", "malformed"})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently an operation is retried.

    Attributes
    ----------
    attempts : int
        Attempts in all (first try included) for timeouts, dropped
        connections, malformed replies and non-finite data; >= 1.
    base_delay : float
        Wall-clock pause before the first retry, s.
    factor : float
        Each further pause is this many times longer (exponential back-off).
    max_delay : float
        Longest pause, s.
    error_attempts : int
        Attempts when the instrument reports an error in its queue (2: log,
        clear, retry once).
    """

    attempts: int = 3
    base_delay: float = 0.01
    factor: float = 4.0
    max_delay: float = 0.5
    error_attempts: int = 2

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.error_attempts < 1:
            raise ValueError(
                f"RetryPolicy: attempts={self.attempts}, error_attempts={self.error_attempts}; "
                "both must be >= 1"
            )
        if not (self.base_delay >= 0 and self.factor >= 1 and self.max_delay >= 0):
            raise ValueError(
                f"RetryPolicy: base_delay={self.base_delay}, factor={self.factor}, "
                f"max_delay={self.max_delay}; need delays >= 0 and factor >= 1"
            )

    def delay(self, retry: int) -> float:
        """Pause before retry number ``retry`` (1 = the first retry), s."""
        return float(min(self.max_delay, self.base_delay * self.factor ** max(retry - 1, 0)))

    def limit(self, kind: str) -> int:
        """Attempts allowed for a fault of ``kind``."""
        return self.error_attempts if kind == "instrument error" else self.attempts


#: The policy of every instrument without its own ``retry_policy`` attribute.
DEFAULT_POLICY = RetryPolicy()


class InstrumentFault(RuntimeError):
    """A fault that retries and reconnection could not clear.

    Attributes
    ----------
    instrument : str
        Instrument name.
    operation : str
        What the driver was doing.
    kind : str
        One of :data:`FAULT_KINDS`.
    attempts : int
        Attempts made.
    cause : BaseException
        The last error.
    """

    def __init__(
        self, instrument: str, operation: str, kind: str, attempts: int, cause: BaseException
    ) -> None:
        self.instrument = instrument
        self.operation = operation
        self.kind = kind
        self.attempts = attempts
        self.cause = cause
        text = str(cause)
        text = text if len(text) <= 400 else text[:400] + " ..."
        super().__init__(
            f"{instrument}: {operation} failed after {attempts} attempt(s): {kind} "
            f"({type(cause).__name__}: {text})"
        )


    def __str__(self) -> str:  # QCoDeS appends "setting <param> to <value>" to args
        return "; ".join(str(a) for a in self.args)


class NonFiniteData(ValueError):
    """An acquisition returned NaN or infinite values."""


class InstrumentErrorReply(RuntimeError):
    """The instrument's error queue held errors after an operation (its own text inside)."""


def require_finite(data: Any, what: str = "data") -> None:
    """Raise :class:`NonFiniteData` unless every value of ``data`` is finite."""
    values = np.asarray(data)
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise NonFiniteData(f"{what}: {bad} of {values.size} values are not finite")


def fault_kind(exc: BaseException) -> str | None:
    """The transient fault kind of ``exc`` (see the module table), None if it is none.

    A :class:`InstrumentFault` (already final), a ``KeyboardInterrupt`` and
    anything not listed (``TypeError``, an ordinary ``RuntimeError``) are not
    transient faults.
    """
    if isinstance(exc, InstrumentFault) or not isinstance(exc, Exception):
        return None
    if getattr(exc, "transient", True) is False:  # the driver says: not a bus fault
        return None
    if isinstance(exc, NonFiniteData):
        return "nan"
    if isinstance(exc, pyvisa.errors.VisaIOError):
        timeout = exc.error_code == pyvisa.constants.StatusCode.error_timeout
        return "timeout" if timeout else "connection"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, (OSError, pyvisa.errors.InvalidSession)):
        return "connection"
    if isinstance(exc, InstrumentErrorReply) or isinstance(getattr(exc, "errors", None), tuple):
        return "instrument error"
    if isinstance(exc, ValueError):
        return "malformed"
    return None


def reconnect_visa(instrument: Any) -> None:
    """Close and reopen a QCoDeS ``VisaInstrument``'s resource, keeping its settings.

    The same address and VISA backend, terminators and timeout as before; a
    reply left in the old connection's buffer is gone with it. Raises what
    opening raises (e.g. ``ConnectionRefusedError``) if the instrument is unreachable.
    """
    handle = instrument.visa_handle
    saved = _saved_connection(instrument, handle)
    try:
        handle.close()
    except Exception:  # a broken socket may refuse a clean close; it is closed anyway
        log.debug("%s: closing the broken connection raised", instrument.name, exc_info=True)
    instrument.set_address(saved["address"], saved["visalib"])
    new = instrument.visa_handle
    new.write_termination = saved["write_termination"]
    new.read_termination = saved["read_termination"]
    new.timeout = saved["timeout"]
    log.warning("%s: reconnected to %s", instrument.name, saved["address"])


def _saved_connection(instrument: Any, handle: Any) -> dict[str, Any]:
    """The connection settings, remembered at the first reconnection."""
    saved = getattr(instrument, "_labnr_connection", None)
    if saved is None:
        backend = instrument.visabackend
        visalib = {"py": "@py", "ivi": None}.get(backend)
        if backend == "sim":
            visalib = f"{handle.visalib.library_path}@sim"
        saved = {
            "address": handle.resource_name,
            "visalib": visalib,
            "write_termination": handle.write_termination,
            "read_termination": handle.read_termination,
            "timeout": handle.timeout,
        }
        instrument._labnr_connection = saved
    else:  # the timeout may have been changed since (e.g. by a test or the user)
        try:
            saved["timeout"] = handle.timeout
        except Exception:  # a closed handle after a failed reconnection
            pass
    return saved


def _mark_dirty(instrument: Any, reason: str) -> None:
    """Tell a guarded driver its connection may hold a stale reply.

    :class:`labnr.drivers.visa_guard.GuardedVisaInstrument` then flushes and
    pairs (or reconnects) before its next exchange, even when ``reconnect``
    is None; other instruments have no ``mark_dirty`` and are left alone.
    """
    mark = getattr(instrument, "mark_dirty", None)
    if callable(mark) and hasattr(instrument, "_labnr_guard"):
        mark(reason)


_active = threading.local()


def _running(instrument: Any) -> set[int]:
    ids = getattr(_active, "ids", None)
    if ids is None:
        ids = _active.ids = set()
    return ids


def call_with_retries(
    instrument: Any,
    operation: str,
    fn: Callable[[], T],
    *,
    check: Callable[[T], None] | None = None,
    reconnect: Callable[[Any], None] | None = reconnect_visa,
    on_retry: Callable[[str], None] | None = None,
    policy: RetryPolicy | None = None,
) -> T:
    """Run one idempotent operation, retrying transient faults (see the module doc).

    Parameters
    ----------
    instrument : Instrument
        Whose operation it is (its ``name``; ``retry_policy`` if it has one).
    operation : str
        What it does, for messages ("setting pump_ab.phase to 12.5").
    fn : callable
        The operation; called once per attempt.
    check : callable, optional
        ``check(result)`` raises (e.g. :class:`NonFiniteData`) to reject a result.
    reconnect : callable, optional
        ``reconnect(instrument)`` after a timeout, a dropped connection or a
        malformed reply (default :func:`reconnect_visa`; None: no reconnection).
    on_retry : callable, optional
        ``on_retry(kind)`` before each retry (e.g. to forget cached channel setups).
    policy : RetryPolicy, optional
        Default: ``instrument.retry_policy`` or :data:`DEFAULT_POLICY`.

    Raises
    ------
    InstrumentFault
        When the fault persists through the allowed attempts.
    """
    running = _running(instrument)
    if id(instrument) in running:  # nested: the outermost operation retries
        result = fn()
        if check is not None:
            check(result)
        return result
    policy = policy or getattr(instrument, "retry_policy", None) or DEFAULT_POLICY
    name = str(getattr(instrument, "name", instrument))
    seen: dict[str, int] = {}
    attempt = 0
    broken = False
    running.add(id(instrument))
    try:
        while True:
            attempt += 1
            try:
                if broken and reconnect is not None:
                    reconnect(instrument)
                    broken = False
                result = fn()
                if check is not None:
                    check(result)
                if attempt > 1:
                    log.warning("%s: %s recovered on attempt %d", name, operation, attempt)
                return result
            except Exception as exc:
                kind = fault_kind(exc)
                if kind is None:
                    raise
                seen[kind] = seen.get(kind, 0) + 1
                if attempt >= policy.attempts or seen[kind] >= policy.limit(kind):
                    raise InstrumentFault(name, operation, kind, attempt, exc) from exc
                log.warning(
                    "%s: %s: %s (%s: %s); retry %d", name, operation, kind,
                    type(exc).__name__, exc, attempt,
                )  # fmt: skip
                if kind in _RECONNECT_KINDS:
                    broken = True
                    _mark_dirty(instrument, f"{kind} in {operation}")
                if on_retry is not None:
                    on_retry(kind)
                pause = policy.delay(attempt)
                if pause > 0 and math.isfinite(pause):
                    time.sleep(pause)
    finally:
        running.discard(id(instrument))
