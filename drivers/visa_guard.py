"""Identity guard and query/answer hygiene for labnr's VISA drivers.

:class:`GuardedVisaInstrument` sits between a driver and QCoDeS's
``VisaInstrument`` (a base class of labnr's own drivers, or mixed into a thin
subclass of a QCoDeS driver: ``class RohdeSchwarzSGS100A(qcodes_SGS100A,
GuardedVisaInstrument)`` puts it right above ``VisaInstrument`` in the MRO).
It does two things:

**Identity before any write.** Its ``__init__`` opens the connection
(``VisaInstrument.__init__``) and then, before the driver's own ``__init__``
goes on, queries ``*IDN?`` and checks it against the class's
:attr:`~GuardedVisaInstrument.identity` and the optional ``serial`` keyword
(:func:`labnr.drivers.identity.confirm_identity`). Until that succeeds,
``write_raw`` refuses everything and ``ask_raw`` everything but ``*IDN?``; on
a mismatch the instrument is closed (VISA handle released) and
:class:`~labnr.drivers.identity.IdentityError` raised, one line.

**No stale reply is ever taken as an answer.** A reply that arrives after
its query timed out sits in the connection and would answer the next query.
So after any failed exchange (a VISA timeout, a dropped connection, an
interrupt; and, through :func:`labnr.drivers.resilience.call_with_retries`,
a reply that did not parse) the connection is marked *dirty*, and before the
next exchange it is resynchronised:

1. *flush*: read with a short timeout (:attr:`~GuardedVisaInstrument.flush_timeout`)
   until nothing is left, discarding what comes;
2. *pairing check*: send ``*IDN?`` and read replies until the one equal to
   the identity confirmed on connect arrives, discarding every other (an
   instrument answers in order, so a late reply to an earlier query comes
   before it), at most :attr:`~GuardedVisaInstrument.max_stale_replies`;
3. if that fails (no answer in the timeout, only other replies, or the lost
   query was itself ``*IDN?``, whose late reply would pass as the pairing
   answer), reconnect (:func:`labnr.drivers.resilience.reconnect_visa`),
   device-clear (not on raw sockets, where the new socket is clean), and
   pair again on the fresh connection;
4. if that fails too, the connection stays dirty and the exchange raises:
   :class:`StaleConnectionError` (a ``TimeoutError``) without an answer,
   :class:`PairingMismatch` (a ``ValueError``: a malformed reply) with only
   other answers, or the connection error. The resilience layer retries all
   three as transient faults.

Only an exact repetition of the ``*IDN?`` reply confirmed on connect pairs a
connection, so another instrument that appeared at the address after a
reconnection never pairs and never receives a write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyvisa.errors
from pyvisa.constants import StatusCode
from qcodes.instrument import VisaInstrument

from labnr.drivers.identity import IDN_QUERY, Identity, IdentityError, confirm_identity
from labnr.drivers.resilience import reconnect_visa

if TYPE_CHECKING:
    from qcodes.instrument import VisaInstrumentKWArgs
    from typing_extensions import Unpack

__all__ = ["GuardedVisaInstrument", "PairingMismatch", "StaleConnectionError"]

log = logging.getLogger(__name__)


class StaleConnectionError(TimeoutError):
    """The connection could not be resynchronised (transient: a timeout to the retry layer)."""


class PairingMismatch(ValueError):
    """Only replies other than the confirmed ``*IDN?`` came (transient: a malformed reply).

    Another instrument now at the address can never pair, so the connection
    stays dirty and nothing more is written to it.
    """


@dataclass
class _GuardState:
    """The guard's bookkeeping (one per instrument)."""

    confirmed: bool = False
    idn_reply: str | None = None
    dirty: bool = False
    reconnect: bool = False  # flushing cannot help: reconnect first
    discarded: int = 0  # stale replies thrown away so far (diagnostics)


def _is_idn_query(cmd: str) -> bool:
    return cmd.strip().upper() == IDN_QUERY


class GuardedVisaInstrument(VisaInstrument):
    """A ``VisaInstrument`` that confirms its identity on connect and resyncs after faults.

    Subclasses set :attr:`identity`. See the module doc.

    Parameters
    ----------
    name : str
        Instrument name.
    address : str, optional
        VISA resource.
    serial : str, optional
        Expected serial number (``*IDN?`` third field), e.g. from the station
        file's ``init: {serial: ...}``; None: not checked.
    **kwargs
        :class:`~qcodes.instrument.VisaInstrument` arguments.

    Raises
    ------
    IdentityError
        If the instrument at ``address`` is not :attr:`identity` (or has
        another serial); the connection is closed and nothing was written.
    """

    #: What the instrument must answer to ``*IDN?``.
    identity: ClassVar[Identity]
    #: Read timeout while flushing a dirty connection, s.
    flush_timeout: ClassVar[float] = 0.02
    #: Most replies discarded in one pairing check before reconnecting.
    max_stale_replies: ClassVar[int] = 32

    def __init__(
        self,
        name: str,
        address: str | None = None,
        *,
        serial: str | None = None,
        **kwargs: Unpack[VisaInstrumentKWArgs],
    ) -> None:
        if not isinstance(getattr(type(self), "identity", None), Identity):
            raise TypeError(f"{type(self).__name__} must define an 'identity' (an Identity)")
        self._labnr_guard = _GuardState()
        self.labnr_address = address
        self.expected_serial = None if serial is None else str(serial)
        super().__init__(name, address, **kwargs)
        try:
            fields = confirm_identity(self, self.identity, serial=self.expected_serial)
        except BaseException:
            self.close()
            raise
        self._labnr_guard.idn_reply = str(fields["reply"])
        self._labnr_guard.confirmed = True
        if self._labnr_guard.dirty:  # a lost *IDN? may still answer: reconnect and pair first
            self._labnr_guard.reconnect = True
        #: The ``*IDN?`` fields confirmed on connect (vendor, model, serial, firmware, reply).
        self.confirmed_idn: dict[str, Any] = fields

    # ------------------------------------------------------------------ state

    @property
    def identity_confirmed(self) -> bool:
        """Whether ``*IDN?`` was confirmed (writes are allowed)."""
        return self._labnr_guard.confirmed

    @property
    def connection_dirty(self) -> bool:
        """Whether the next exchange resynchronises the connection first."""
        return self._labnr_guard.dirty

    @property
    def stale_replies_discarded(self) -> int:
        """How many stale replies the resynchronisations threw away."""
        return self._labnr_guard.discarded

    def mark_dirty(self, reason: str, *, reconnect: bool = False) -> None:
        """Resynchronise before the next exchange (``reconnect``: skip the flush)."""
        guard = self._labnr_guard
        if not guard.dirty:
            log.info("%s: connection marked dirty (%s)", self.name, reason)
        guard.dirty = True
        guard.reconnect = guard.reconnect or reconnect

    # --------------------------------------------------------------- transport

    def write_raw(self, cmd: str) -> None:
        """Write, once the identity is confirmed and the connection clean."""
        with self.exchange(cmd, write=True):
            super().write_raw(cmd)

    def ask_raw(self, cmd: str) -> str:
        """Query; before confirmation only ``*IDN?`` is allowed."""
        with self.exchange(cmd, write=False):
            return super().ask_raw(cmd)

    @contextmanager
    def exchange(self, cmd: str, *, write: bool) -> Iterator[None]:
        """Guard one exchange done directly on ``visa_handle`` (e.g. binary blocks).

        Refuses it before the identity is confirmed (``*IDN?`` queries
        excepted), resynchronises a dirty connection first, and marks the
        connection dirty if the exchange raises.
        """
        guard = self._labnr_guard
        if not guard.confirmed and (write or not _is_idn_query(cmd)):
            kind = "write" if write else "query"
            raise IdentityError(
                f"instrument {self.name!r} at {self.labnr_address}: {kind} {cmd[:60]!r} refused: "
                "its identity (*IDN?) is not confirmed; it was not sent"
            )
        if guard.dirty:
            self.resync()
        try:
            yield
        except BaseException as exc:
            self.mark_dirty(f"{type(exc).__name__} during {cmd[:40]!r}",
                            reconnect=_is_idn_query(cmd))  # fmt: skip
            raise

    def set_address(self, address: str, visalib: str | None) -> None:
        """Open a new connection (used by reconnection); it is paired before use."""
        super().set_address(address, visalib)
        self.mark_dirty("reconnected")
        self._labnr_guard.reconnect = False

    # ------------------------------------------------------------ resynchronise

    def resync(self) -> None:
        """Flush and pair a dirty connection; reconnect if that fails (see the module doc).

        Raises
        ------
        StaleConnectionError
            If no reply came to the pairing query, even after reconnecting
            (the connection stays dirty).
        PairingMismatch
            If only other replies came (e.g. corrupted ones; stays dirty).
        OSError, pyvisa.errors.VisaIOError
            If the reconnected session fails (the connection stays dirty).
        """
        guard = self._labnr_guard
        if not guard.dirty:
            return
        if guard.idn_reply is None:  # nothing confirmed to pair with yet (during connect)
            try:
                self._flush()
            except Exception as exc:
                log.info("%s: flush before the identity check failed: %s", self.name, exc)
            return  # stays dirty: paired (after reconnecting) once confirmed
        if not guard.reconnect:
            try:
                self._flush()
                if self._pair():
                    self._clean()
                    return
            except Exception as exc:  # a broken session, or only wrong replies: reconnect
                log.info("%s: resync on the old connection failed: %s", self.name, exc)
        guard.reconnect = True
        reconnect_visa(self)  # set_address marks it dirty again, to be paired
        guard.reconnect = True
        if "SOCKET" not in str(self.visa_handle.resource_name).upper():
            try:  # GPIB, VXI-11, HiSLIP: clears the instrument's output queue too
                self.device_clear()
            except Exception:  # not every transport supports a device clear
                log.debug("%s: device clear after reconnecting failed", self.name, exc_info=True)
        if self._pair():
            self._clean()
            return
        raise StaleConnectionError(
            f"instrument {self.name!r} at {self.labnr_address}: no answer to the pairing "
            "*IDN? after flushing and reconnecting; no reply on this connection is trusted "
            "until one comes"
        )

    def _clean(self) -> None:
        guard = self._labnr_guard
        guard.dirty = False
        guard.reconnect = False
        log.info("%s: connection resynchronised", self.name)

    def _flush(self) -> None:
        """Read with a short timeout until nothing is left (replies discarded)."""
        handle = self.visa_handle
        old = handle.timeout
        handle.timeout = self.flush_timeout * 1000.0
        try:
            for _ in range(self.max_stale_replies):
                try:
                    reply = handle.read()
                except pyvisa.errors.VisaIOError as exc:
                    if exc.error_code == StatusCode.error_timeout:
                        return  # nothing left
                    raise
                self._discard(reply)
        finally:
            handle.timeout = old

    def _pair(self) -> bool:
        """``*IDN?`` round trip: True once the identity confirmed on connect answers.

        False if no reply came within the timeout; :class:`PairingMismatch` if
        only other replies came; connection errors propagate.
        """
        guard = self._labnr_guard
        handle = self.visa_handle
        others: list[str] = []
        handle.write(IDN_QUERY)
        for _ in range(self.max_stale_replies + 1):
            try:
                reply = handle.read()
            except pyvisa.errors.VisaIOError as exc:
                if exc.error_code != StatusCode.error_timeout:
                    raise
                if others:
                    break
                log.info("%s: no answer to the pairing *IDN?", self.name)
                return False
            if reply.strip() == guard.idn_reply:
                return True
            others.append(reply.strip())
            self._discard(reply)
        raise PairingMismatch(
            f"instrument {self.name!r} at {self.labnr_address}: the pairing *IDN? was "
            f"answered by {len(others)} other repl{'y' if len(others) == 1 else 'ies'} "
            f"(last {others[-1][:80]!r}), not {guard.idn_reply!r}"
        )

    def _discard(self, reply: str) -> None:
        self._labnr_guard.discarded += 1
        log.warning("%s: discarded a stale reply %r", self.name, reply.strip()[:80])
