"""The one safe state of a lab, and SIGTERM as an interrupt.

:func:`safe_state` is what every abnormal exit applies — an exception in a
sweep, Ctrl-C, SIGTERM, the lock's unrecoverable loss of lock or detected
instability (through :meth:`labnr.session.LabSession.safe_state`), and the
session's close:

* **pump outputs off** — every source / AWG channel / LO of the pump, each
  one tried even if another fails, with the drivers' retries and a
  reconnection of the pump's instruments if the first try fails;
* **flux held** — nothing is sent to the flux bias: its output stays at the
  level it has (a ramp interrupted by the fault was already held where it
  was by the driver); it is never ramped, switched or jumped here.

:class:`Terminated` is the ``KeyboardInterrupt`` that :func:`sigterm_as_interrupt`
raises on SIGTERM, so ``kill <pid>`` runs exactly the Ctrl-C cleanup (the
sweep keeps its whole points and is marked, the session closes safely).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from qcodes.instrument import VisaInstrument

from labnr.drivers.resilience import RetryPolicy, call_with_retries, reconnect_visa

__all__ = ["Terminated", "pump_instruments", "safe_state", "sigterm_as_interrupt"]

log = logging.getLogger(__name__)

#: Retries of the whole "pump off" after the drivers' own retries gave up.
OFF_POLICY = RetryPolicy(attempts=2, base_delay=0.05)


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (handled like Ctrl-C: whole points kept, safe state)."""


def pump_instruments(lab: Any) -> list[Any]:
    """The VISA instruments of the station other than the VNA (pump sources, AWG, LOs)."""
    station = getattr(lab, "station", None)
    comps = list(getattr(station, "components", {}).values()) if station is not None else []
    return [c for c in comps if isinstance(c, VisaInstrument) and c is not lab.vna]


def _reconnect_pump(lab: Any) -> Any:
    def reconnect(_: Any) -> None:
        for inst in pump_instruments(lab):
            try:
                reconnect_visa(inst)
            except Exception:  # an unreachable one: the next attempt says so
                log.warning("safe state: reconnecting %s failed", inst.name, exc_info=True)

    return reconnect


def safe_state(lab: Any) -> list[str]:
    """Pump outputs off, flux held (see the module doc). Never raises an ``Exception``.

    Parameters
    ----------
    lab : LabSession or MeasurementSession
        Anything with ``pump`` (None: no pump), ``station`` and ``vna``.

    Returns
    -------
    list of str
        What could not be made safe (empty when the pumps are confirmed off).
    """
    problems: list[str] = []
    pump = getattr(lab, "pump", None)
    if pump is not None:
        try:
            call_with_retries(
                pump, "switching the pump outputs off", pump.off,
                reconnect=_reconnect_pump(lab), policy=OFF_POLICY,
            )  # fmt: skip
        except Exception as exc:
            problems.append(f"pump outputs: {exc}")
            log.error("safe state: switching the pump outputs off failed: %s", exc)
    flux = getattr(lab, "flux", None)
    held = f"; flux bias {flux.name!r} held where it is (nothing sent)" if flux is not None else ""
    if not problems:
        log.warning("safe state: pump outputs off%s", held)
    return problems


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside: the first SIGTERM raises :class:`Terminated`; later ones are ignored.

    Later SIGTERMs must not interrupt the cleanup the first one started. The
    previous handler is restored on exit. Only in the main thread (signals are
    delivered there); elsewhere this does nothing.
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, AttributeError):  # pragma: no cover - no SIGTERM on this platform
        yield
        return
    fired = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal fired
        if fired:
            log.warning("SIGTERM again: still cleaning up (pumps off, data kept)")
            return
        fired = True
        log.warning("SIGTERM: stopping (whole points kept, pumps off, flux held)")
        raise Terminated("SIGTERM")

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
