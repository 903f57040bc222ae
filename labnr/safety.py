"""The one safe state of a lab, what was confirmed of it, and SIGINT/SIGTERM as interrupts.

:func:`safe_state` is what every abnormal exit applies — an exception in a
sweep, Ctrl-C, SIGTERM, the lock's unrecoverable loss of lock or detected
instability (through :meth:`labnr.session.LabSession.safe_state`), and the
session's close:

* **pump outputs off** — every source / AWG channel / LO of the pump, each
  one tried even if another fails, with the drivers' retries and a
  reconnection of the pump's instruments if the first try fails; then **every
  output of every pump instrument is read back** (and switched off again if
  it reads on). Only what read back off is reported as confirmed;
* **flux held** — nothing is sent to the flux bias: its output stays at the
  level it has (a ramp interrupted by the fault was already held where it
  was by the driver); it is never ramped, switched or jumped here.

The outcome is a :class:`SafeStateReport` (facts, not intentions); its
:meth:`~SafeStateReport.line` is what labnr prints on an abnormal exit, e.g.
``pump outputs confirmed off (read back): pump_ab, pump_bc; pump_ca: NOT
confirmed (timeout); flux bias 'flux': nothing sent (held where it was)``.
:func:`last_safe_state` returns the latest one of this process.

Signals: :class:`Terminated` is the ``KeyboardInterrupt`` that SIGTERM raises
while a :class:`SignalGuard` is installed (``labnr`` installs one for the
command, :func:`labnr.session.open_lab` one for the session's lifetime, in the
main thread only), so ``kill <pid>`` runs exactly the Ctrl-C cleanup.
:func:`deferred_interrupts` holds a first SIGINT/SIGTERM until a short
critical block (switching pumps off) has finished, then raises it; a second
one raises at once. No handler is installed at import.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from qcodes.instrument import VisaInstrument

from labnr.drivers.resilience import (
    InstrumentFault,
    RetryPolicy,
    call_with_retries,
    fault_kind,
    reconnect_visa,
)

__all__ = [
    "SafeStateReport",
    "arm_interrupt_exit",
    "SignalGuard",
    "Terminated",
    "clear_last_safe_state",
    "confirm_outputs_off",
    "deferred_interrupts",
    "interrupt_exit_code",
    "last_safe_state",
    "pump_instruments",
    "record_safe_state",
    "safe_state",
    "sigterm_as_interrupt",
]

log = logging.getLogger(__name__)

#: Retries of the whole "pump off" after the drivers' own retries gave up.
OFF_POLICY = RetryPolicy(attempts=2, base_delay=0.05)

_LAST: list[SafeStateReport] = []


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (handled like Ctrl-C: whole points kept, safe state)."""


def interrupt_exit_code(exc: BaseException) -> int:
    """143 for SIGTERM (:class:`Terminated`, also as a cause), 130 for Ctrl-C."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, Terminated):
            return 143
        seen = seen.__cause__ or seen.__context__
    return 130


# ---------------------------------------------------------------------- confirmed facts


@dataclass
class SafeStateReport:
    """What the safe state achieved, as read back from the instruments.

    Attributes
    ----------
    confirmed : list of str
        Pump instruments whose every output read back off.
    unconfirmed : dict of str to str
        Pump instruments whose outputs could not be confirmed off, and why.
    flux : str
        What happened to the flux bias (always: nothing sent).
    when : str
        Where the safe state was applied ("start", "close", "safe state").
    time : float
        ``time.monotonic()`` when the report was made.
    """

    confirmed: list[str] = field(default_factory=list)
    unconfirmed: dict[str, str] = field(default_factory=dict)
    flux: str = ""
    when: str = "safe state"
    time: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        """True when every pump instrument was confirmed off."""
        return not self.unconfirmed

    @property
    def problems(self) -> list[str]:
        """One entry per instrument not confirmed off."""
        return [f"{n}: output NOT confirmed off ({why})" for n, why in self.unconfirmed.items()]

    def line(self) -> str:
        """One line: what read back off, what did not, the flux."""
        parts = []
        if self.confirmed:
            parts.append("pump outputs confirmed off (read back): " + ", ".join(self.confirmed))
        parts += [f"{name}: NOT confirmed ({why})" for name, why in self.unconfirmed.items()]
        if not parts:
            parts.append("no pump instrument connected")
        if self.flux:
            parts.append(self.flux)
        return "; ".join(parts)


def last_safe_state() -> SafeStateReport | None:
    """The latest :class:`SafeStateReport` of this process (None before any)."""
    return _LAST[-1] if _LAST else None


def clear_last_safe_state() -> None:
    """Forget the reports (``labnr`` does it when a command starts)."""
    _LAST.clear()


def record_safe_state(report: SafeStateReport, lab: Any = None) -> SafeStateReport:
    """Make ``report`` the latest (:func:`last_safe_state`) and ``lab.safe_report``."""
    _LAST[:] = [report]
    if lab is not None:
        try:
            lab.safe_report = report
        except AttributeError:
            pass
    return report


def pump_instruments(lab: Any) -> list[Any]:
    """The pump's instruments: ``lab.pump_sources`` if the session names them, else the
    station's VISA instruments other than the VNA."""
    named = getattr(lab, "pump_sources", None)
    if named is not None:
        return list(named.values())
    station = getattr(lab, "station", None)
    comps = list(getattr(station, "components", {}).values()) if station is not None else []
    return [c for c in comps if isinstance(c, VisaInstrument) and c is not lab.vna]


def _outputs(inst: Any) -> list[tuple[str, Any]]:
    """(label, parameter) of every output of a pump instrument (QCoDeS parameters only)."""
    params = getattr(inst, "parameters", {})
    if "status" in params:  # CW sources (R&S SGS100A and the like): RF output on/off
        return [(inst.name, params["status"])]
    n = getattr(inst, "num_channels", None)
    subs = getattr(inst, "submodules", {})
    if n:  # Tektronix AWG70000/5200 family: OUTPut<n>:STATe per channel
        chans = [subs.get(f"ch{k}") for k in range(1, int(n) + 1)]
        return [(f"{inst.name} ch{k}", c.parameters["state"]) for k, c in enumerate(chans, 1)
                if c is not None and "state" in c.parameters]  # fmt: skip
    return []


def _is_on(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().upper() not in ("0", "OFF", "FALSE")
    return bool(value)


def _why(exc: BaseException) -> str:
    if isinstance(exc, InstrumentFault):
        return exc.kind
    kind = fault_kind(exc)
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return kind or (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def switch_outputs_off(inst: Any) -> str | None:
    """Read back every output of ``inst``; switch on ones off and read them again.

    Returns None when every output read back off, else why not (one phrase).
    Never raises an ``Exception``.
    """
    outputs = _outputs(inst)
    if not outputs:
        return f"no output read-back known for {type(inst).__name__}"

    def once() -> list[str]:
        still = []
        for label, param in outputs:
            if _is_on(param.get()):
                param.set(0 if "state" == param.short_name else False)
                if _is_on(param.get()):
                    still.append(label)
        return still

    try:
        still = call_with_retries(inst, "confirming its outputs are off", once)
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        return _why(exc)
    return f"{', '.join(still)} still on after switching off" if still else None


def confirm_outputs_off(instruments: Sequence[Any], flux: str = "",
                        when: str = "safe state") -> SafeStateReport:  # fmt: skip
    """Switch off and read back every output of ``instruments``, each one independently."""
    report = SafeStateReport(flux=flux, when=when)
    for inst in instruments:
        why = switch_outputs_off(inst)
        if why is None:
            report.confirmed.append(inst.name)
        else:
            report.unconfirmed[inst.name] = why
    report.time = time.monotonic()
    return report


def _reconnect_pump(lab: Any) -> Any:
    def reconnect(_: Any) -> None:
        for inst in pump_instruments(lab):
            try:
                reconnect_visa(inst)
            except Exception:  # an unreachable one: the next attempt says so
                log.warning("safe state: reconnecting %s failed", inst.name, exc_info=True)

    return reconnect


def flux_note(lab: Any) -> str:
    """What the safe state does to the flux bias (nothing), for the report."""
    flux = getattr(lab, "flux", None)
    return "" if flux is None else f"flux bias {flux.name!r}: nothing sent (held where it was)"


def safe_state(lab: Any) -> list[str]:
    """Pump outputs off and read back, flux held (see the module doc). Never raises an
    ``Exception``; a first SIGINT/SIGTERM during it is held until it has finished.

    Parameters
    ----------
    lab : LabSession or MeasurementSession
        Anything with ``pump`` (None: no pump), ``station`` and ``vna``.

    Returns
    -------
    list of str
        What could not be confirmed safe (empty when every pump output read back
        off). The full :class:`SafeStateReport` is ``lab.safe_report`` (where it
        can be set) and :func:`last_safe_state`.
    """
    with deferred_interrupts("switching the pump outputs off"):
        return _safe_state(lab).problems


def _safe_state(lab: Any) -> SafeStateReport:
    problems: list[str] = []
    pump = getattr(lab, "pump", None)
    if pump is not None:
        try:
            call_with_retries(
                pump, "switching the pump outputs off", pump.off,
                reconnect=_reconnect_pump(lab), policy=OFF_POLICY,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the read-back below says what is off
            problems.append(f"pump outputs: {exc}")
            log.error("safe state: switching the pump outputs off failed: %s", exc)
    report = confirm_outputs_off(pump_instruments(lab), flux_note(lab))
    if pump is not None and problems and not report.unconfirmed and not report.confirmed:
        report.unconfirmed[pump.name] = problems[0]
    (log.info if report.ok else log.error)("safe state: %s", report.line())
    return record_safe_state(report, lab)


# ---------------------------------------------------------------------- signals

_STATE = {"terminating": False}


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class SignalGuard:
    """SIGTERM raises :class:`Terminated` (once; later ones are logged and ignored).

    :meth:`install` in the main thread (elsewhere it does nothing);
    :meth:`restore` puts the previous handler back if ours is still the one
    installed (a guard closed out of order leaves a newer handler alone).
    """

    def __init__(self, what: str = "stopping") -> None:
        self.what = what
        self.fired = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.fired or _STATE["terminating"]:
            log.warning("SIGTERM again: still cleaning up (pumps off, data kept)")
            return
        self.fired = _STATE["terminating"] = True
        log.warning("SIGTERM: %s (whole points kept, pumps off, flux held)", self.what)
        raise Terminated("SIGTERM")

    def install(self) -> SignalGuard:
        """Install the handler (main thread only); returns self."""
        if self._installed or not _in_main_thread():
            return self
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        except (ValueError, AttributeError):  # pragma: no cover - no SIGTERM here
            return self
        self._installed, self.fired = True, False
        _STATE["terminating"] = False
        return self

    def restore(self) -> None:
        """Put the previous handler back (idempotent)."""
        if not self._installed:
            return
        self._installed = False
        try:
            current = signal.getsignal(signal.SIGTERM)
            if getattr(current, "__self__", None) is self:
                signal.signal(signal.SIGTERM, self._previous)
        except ValueError:  # pragma: no cover - restored from another thread
            pass
        if self.fired:
            _STATE["terminating"] = False


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside: the first SIGTERM raises :class:`Terminated`; later ones are ignored.

    The previous handler is restored on exit. Only in the main thread
    (signals are delivered there); elsewhere this does nothing.
    """
    guard = SignalGuard().install()
    try:
        yield
    finally:
        guard.restore()


class InterruptHold:
    """Hold a first SIGINT/SIGTERM from :meth:`start` to :meth:`stop`, then raise it.

    A second signal raises at once (a stuck instrument can always be left).
    A SIGTERM while an earlier one's cleanup runs is ignored. Main thread only;
    an ignored SIGINT (``SIG_IGN``) stays ignored. As a context manager the
    held signal is raised at the end of the block (unless the block raised).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.pending: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM and _STATE["terminating"]:
            log.warning("SIGTERM again: still %s", self.what)
            return
        if self.pending is not None:
            raise Terminated("SIGTERM") if signum == signal.SIGTERM else KeyboardInterrupt
        self.pending = signum
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        log.warning("%s: finishing %s first (again to stop now)", name, self.what)

    def start(self) -> InterruptHold:
        """Install the holding handlers (main thread only); returns self."""
        if self._old or not _in_main_thread():
            return self
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._handler)
        except ValueError:  # pragma: no cover - not the main thread after all
            pass
        return self

    def stop(self, raise_pending: bool = True) -> None:
        """Restore the handlers; raise the held signal (if any and ``raise_pending``)."""
        old, self._old = self._old, {}
        for sig, h in old.items():
            signal.signal(sig, h)
        pending, self.pending = self.pending, None
        if pending is None or not raise_pending:
            return
        if pending == signal.SIGTERM:
            _STATE["terminating"] = True
            raise Terminated("SIGTERM")
        raise KeyboardInterrupt

    def __enter__(self) -> InterruptHold:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop(raise_pending=exc_type is None)


def deferred_interrupts(what: str) -> InterruptHold:
    """``with deferred_interrupts("switching the pumps off"): ...`` (see :class:`InterruptHold`)."""
    return InterruptHold(what)


_EXIT_HOOK: dict[str, Any] = {}


def arm_interrupt_exit(exc: BaseException) -> None:
    """If the interrupt that closed a session reaches the top of the program uncaught,
    print one line (what was confirmed safe) and exit 130 (Ctrl-C) or 143 (SIGTERM)
    instead of a traceback (which goes to the log at DEBUG; ``LABNR_DEBUG=1`` shows it)."""
    if _EXIT_HOOK.get("armed") or os.environ.get("LABNR_DEBUG"):
        return
    previous = sys.excepthook

    def hook(etype: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if not isinstance(value, KeyboardInterrupt):
            previous(etype, value, tb)
            return
        log.debug("uncaught interrupt", exc_info=(etype, value, tb))
        code = interrupt_exit_code(value)
        report = last_safe_state()
        what = "terminated (SIGTERM)" if code == 143 else "interrupted (Ctrl-C)"
        prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        tail = f"; {report.line()}" if report is not None else ""
        print(f"{prog}: {what}{tail}; measured data kept", file=sys.stderr, flush=True)
        atexit._run_exitfuncs()
        sys.stdout.flush()
        os._exit(code)

    _EXIT_HOOK["armed"] = True
    sys.excepthook = hook
