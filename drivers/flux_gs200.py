"""Yokogawa GS200 as a labnr flux-bias current source.

Ramps run as **hardware programs** on the GS200: the driver plans a verified
ramp (:meth:`labnr.drivers.flux_ramp.CurrentSource.verified_ramp`: from a
level read back until two reads agree within the present range's resolution,
checked against what labnr last set), uploads each segment of breakpoints as
program steps with slope time = interval time, runs the program, waits for
its end-of-program event and reads the level back before the next segment.
The instrument slopes linearly from breakpoint to breakpoint on its own
clock, so the rate holds whatever the latency of the bus or the load of the
computer. A software ramp (write, sleep, write) only bounds the computer's
pace: a delayed write followed by a prompt one puts two steps closer
together than planned. The cost: a GS200 program step lasts
0.1 s to 3600 s, so a ramp is at most ``max_step / 0.1 s`` fast, and the
step time is rounded up to 0.1 s (the resolution the front panel shows;
rounding up keeps the ramp slower, never faster, whatever the true
resolution).

An interrupt (Ctrl-C) or any error while a program runs sends
``:PROG:HOLD``: the GS200 stops the slope where it is and holds that level;
the VISA session is then cleared (a reply left unread by an interrupted
query must not answer the next one). The next ramp plans from the held level
and replaces the held program with a new one.

QCoDeS's ``YokogawaGS200.ramp_current`` is not used for labnr's ramps: its
hardware mode is a single program step (no ``max_step``), it jumps when the
change is below ``ramp_step``, and it clips slopes longer than 3600 s, which
would exceed the rate. Everything else (mode, range, output, level reads,
snapshot) goes through the QCoDeS driver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from qcodes.instrument_drivers.yokogawa import YokogawaGS200
from qcodes.instrument_drivers.yokogawa.Yokogawa_GS200 import (
    ConditionRegister,
    ExtendedEventRegister,
)

from labnr.drivers.flux import CurrentSource, FluxBias
from labnr.drivers.parsing import is_no_error, parse_int
from labnr.drivers.resilience import InstrumentErrorReply, call_with_retries
from labnr.drivers.yokogawa_gs200 import YokogawaGS200 as CheckedGS200

__all__ = ["GS200_CURRENT_RANGES", "GS200CurrentSource", "GS200FluxBias"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurrentRange:
    """One current range of the GS200.

    Attributes
    ----------
    full_scale : float
        Nominal range, A.
    max_level : float
        Largest settable ``|level|``, A (120 % over-range except 200 mA).
    resolution : float
        Level resolution, A.
    """

    full_scale: float
    max_level: float
    resolution: float


#: The GS200's current ranges (GS200 user's manual, specifications).
GS200_CURRENT_RANGES: tuple[CurrentRange, ...] = (
    CurrentRange(1e-3, 1.2e-3, 10e-9),
    CurrentRange(10e-3, 12e-3, 100e-9),
    CurrentRange(100e-3, 120e-3, 1e-6),
    CurrentRange(200e-3, 200e-3, 1e-6),
)

_ABORT_EVENTS = ExtendedEventRegister.TRP | ExtendedEventRegister.EMR


class GS200CurrentSource(CurrentSource):
    """:class:`~labnr.drivers.flux.CurrentSource` adapter for QCoDeS's ``YokogawaGS200``.

    Parameters
    ----------
    instrument : YokogawaGS200
        The connected source (not modified by the adapter's construction).
    poll_interval : float
        Wall-clock time between end-of-program polls, s.
    timeout_margin : float
        Wall-clock time a ramp may overrun its planned duration before it is
        held and :class:`TimeoutError` raised, s.
    """

    #: Shortest, longest and resolution of the program's step time, s.
    min_interval: ClassVar[float] = 0.1
    max_interval: ClassVar[float] = 3600.0
    time_resolution: ClassVar[float] = 0.1
    #: Breakpoints per uploaded program; longer ramps run as several programs.
    max_program_steps: ClassVar[int] = 1000

    def __init__(
        self,
        instrument: YokogawaGS200,
        *,
        poll_interval: float = 0.02,
        timeout_margin: float = 30.0,
    ) -> None:
        self._gs = instrument
        self.poll_interval = float(poll_interval)
        self.timeout_margin = float(timeout_margin)

    # ------------------------------------------------------------------ CurrentSource

    @property
    def instrument(self) -> YokogawaGS200:
        """The wrapped QCoDeS ``YokogawaGS200``."""
        return self._gs

    def check_connected(self) -> None:
        """Refuse a source that is sourcing voltage (switching would jump); read only.

        Raises
        ------
        RuntimeError
            If the source is in voltage mode with its output on.
        """
        mode = self._gs.source_mode()
        if mode != "CURR" and self.output_enabled():
            raise RuntimeError(
                f"{self._gs.name}: the source is in {mode} mode with its output on; labnr will "
                "not switch it to current mode (that would jump). Ramp it down and switch the "
                "output off on the instrument, then connect again."
            )

    def output_enabled(self) -> bool:
        """Whether the output is on (queried, retried on transient faults)."""
        return call_with_retries(self._gs, "reading the output state", self._gs.output) == "on"

    def level(self) -> float:
        """Programmed current level, A (queried, retried on transient faults)."""
        return float(call_with_retries(self._gs, "reading the level", self._gs.current))

    def level_limit(self) -> float:
        """Largest ``|level|`` in the present current range, A (queried)."""
        return self._range(float(self._gs.current_range())).max_level

    def resolution(self, limit: float | None = None) -> float:
        """Level resolution of the present current range, A (queried; read only).

        With ``limit``: of the range :meth:`enable_output` selects for
        ``|limit|``, the finest that reaches it (nothing is sent).
        """
        if limit is not None:
            return self._needed_range(limit).resolution
        gs = self._gs
        if call_with_retries(gs, "reading the source mode", gs.source_mode) != "CURR":
            raise RuntimeError(f"{gs.name}: not in current mode, so no current resolution")
        full_scale = call_with_retries(gs, "reading the range", gs.current_range)
        return self._range(float(full_scale)).resolution

    def enable_output(self, limit: float) -> None:
        """Current mode, 0 A, the finest range covering ``limit``, output on (from off only)."""
        gs = self._gs
        if self.output_enabled():
            raise RuntimeError(f"{gs.name}: enable_output called with the output on")
        needed = self._needed_range(limit)
        if gs.source_mode() != "CURR":
            gs.source_mode("CURR")
        if self.level() != 0.0:  # output off: no current flows
            gs.write(":SOUR:LEV 0")
        if self._find_range(float(gs.current_range())) != needed:
            gs.current_range(needed.full_scale)
        self._check_errors("preparing the output")
        if self.level() != 0.0:  # e.g. a program held in edit mode swallowed the write
            raise RuntimeError(
                f"{gs.name}: the level is {self.level():g} A, not 0 A; output left off"
            )
        gs.on()
        self._check_errors("switching the output on")
        self._note_level(0.0)

    def disable_output(self) -> None:
        """Switch the output off, only if the level reads back 0 A (twice); confirm it is off.

        Raises
        ------
        RuntimeError
            If the level does not read 0 A (the output is left on: switching
            off would jump), or the output did not switch off.
        """
        gs = self._gs
        res = self.resolution()
        level = self.verified_level(res)
        if abs(level) > res / 2:
            raise RuntimeError(
                f"{gs.name}: the level reads {level:.9g} A, not 0 A; output left on (switching "
                "it off would jump to 0 A): ramp to 0 A first"
            )
        gs.off()
        if self.output_enabled():  # the read-back also waits for the write
            raise RuntimeError(f"{gs.name}: the output did not switch off")
        self._note_level(0.0)

    def ramp(self, target: float, rate: float, max_step: float) -> None:
        """Ramp to ``target`` A as GS200 programs (see the module doc).

        Every attempt is a verified ramp
        (:meth:`~labnr.drivers.flux_ramp.CurrentSource.verified_ramp`): from
        a level read back twice and checked against what labnr last set,
        each program's end read back before the next. A transient fault
        (timeout, dropped connection, malformed reply, an instrument error)
        holds what may still run, reconnects and ramps on from the level the
        source reports then (verified again) — never from where the
        interrupted plan was, so the output never jumps
        (:mod:`labnr.drivers.resilience`).

        Raises
        ------
        ValueError
            If ``target`` is beyond the present range (nothing is sent).
        RuntimeError
            If the source is not sourcing current with its output on, or the
            instrument reports an error (its own text is in the message).
        TimeoutError
            If the program does not end in time (the level is then held).
        LevelMismatch
            If the level read back cannot be trusted (never retried; see
            :mod:`labnr.drivers.flux_ramp`).
        InstrumentFault
            If a transient fault persists through the retries (the level is held).
        """
        gs = self._gs
        mode = call_with_retries(gs, "reading the source mode", gs.source_mode)
        if mode != "CURR" or not self.output_enabled():
            raise RuntimeError(f"{gs.name}: ramp needs current mode with the output on")
        spec = self._range(float(call_with_retries(gs, "reading the range", gs.current_range)))
        if abs(target) > spec.max_level:
            raise ValueError(
                f"{gs.name}: {target:g} A is beyond the present range ({spec.full_scale:g} A, "
                f"|level| <= {spec.max_level:g} A); change the range with the output off"
            )
        call_with_retries(
            gs,
            f"ramping to {target:.9g} A",
            lambda: self._ramp_from_present(target, rate, max_step, spec),
        )

    def _ramp_from_present(
        self, target: float, rate: float, max_step: float, spec: CurrentRange
    ) -> None:
        """Hold a running program, then a verified ramp from the level read now (one attempt)."""
        self._hold_running_program()
        self._drain_errors()
        plan = self.verified_ramp(target, rate, max_step, resolution=spec.resolution)
        log.debug("%s: ramp of %d breakpoints, %.3g s each", self._gs.name, len(plan.levels),
                  plan.interval)  # fmt: skip

    # ------------------------------------------------------------------ program

    def run_segment(self, levels: Sequence[float], interval: float) -> None:
        """Upload ``levels`` as a one-shot program with linear slopes, run, wait; hold on error."""
        gs = self._gs
        gs.write(":PROG:REP 0")
        gs.write(f":PROG:SLOP {interval:.6E}")
        gs.write(f":PROG:INT {interval:.6E}")
        gs.write(":PROG:EDIT:STAR")
        try:  # each step on its own: one short message per command suits every bus
            for level in levels:
                gs.write(f":SOUR:LEV {level:.7E}")
        finally:  # never leave edit mode open: it would swallow later level writes
            gs.write(":PROG:EDIT:END")
        self._check_errors("uploading the ramp program")
        gs.ask(":STAT:EVEN?")  # clear a stale end-of-program event
        try:
            gs.write(":PROG:RUN")
            self._check_errors("starting the ramp program")
            self._wait_for_end(len(levels) * interval)
        except BaseException:
            self._hold()
            raise

    def _wait_for_end(self, duration: float) -> None:
        """Poll the extended event register until the program ends."""
        deadline = time.monotonic() + duration + self.timeout_margin
        while True:
            events = ExtendedEventRegister(parse_int(self._gs.ask(":STAT:EVEN?"), "event register"))
            if events & _ABORT_EVENTS:
                raise RuntimeError(
                    f"{self._gs.name}: the source tripped during a ramp ({events!r})"
                )
            if ExtendedEventRegister.EOP in events:
                return
            if time.monotonic() > deadline:
                late = TimeoutError(
                    f"{self._gs.name}: ramp program of {duration:.1f} s did not end within "
                    f"{self.timeout_margin:.0f} s of its planned duration; level held"
                )
                late.transient = False  # type: ignore[attr-defined]  # not a bus fault
                raise late
            self._pause(self.poll_interval)

    def _pause(self, seconds: float) -> None:
        """Wall-clock wait between polls (a hook for tests)."""
        time.sleep(seconds)

    def _hold(self) -> None:
        """Hold a running program: the output stays at its present level.

        Then clear the VISA session: an interrupt inside a query may have left
        its reply unread, which the next query would otherwise take as its own.
        """
        try:
            self._gs.write(":PROG:HOLD")
            log.warning("%s: ramp interrupted; output held at its present level", self._gs.name)
            self._gs.device_clear()
        except Exception:  # the connection itself may be what failed
            log.exception("%s: could not hold the ramp program", self._gs.name)

    def _hold_running_program(self) -> None:
        """Hold a program left running (e.g. by a killed process) before planning."""
        condition = ConditionRegister(parse_int(self._gs.ask(":STAT:COND?"), "condition register"))
        if ConditionRegister.RFP not in condition:
            self._gs.write(":PROG:HOLD")

    def _drain_errors(self) -> None:
        """Log and discard errors queued before a ramp (not caused by it)."""
        for _ in range(20):
            reply = self._gs.ask(":SYST:ERR?").strip()
            if is_no_error(reply):
                return
            log.warning("%s: earlier instrument error: %s", self._gs.name, reply)

    def _check_errors(self, action: str) -> None:
        """Raise with the instrument's own text if its error queue is not empty."""
        errors = []
        for _ in range(20):
            reply = self._gs.ask(":SYST:ERR?").strip()
            if is_no_error(reply):
                break
            errors.append(reply)
        if errors:
            raise InstrumentErrorReply(
                f"{self._gs.name}: error while {action}: {'; '.join(errors)}"
            )

    def _needed_range(self, limit: float) -> CurrentRange:
        """The finest current range that reaches ``|limit|``."""
        needed = next((r for r in GS200_CURRENT_RANGES if r.max_level >= abs(limit)), None)
        if needed is None:
            raise ValueError(
                f"{self._gs.name}: current limit {limit:g} A exceeds the GS200's largest range "
                f"({GS200_CURRENT_RANGES[-1].max_level:g} A)"
            )
        return needed

    @staticmethod
    def _find_range(full_scale: float) -> CurrentRange | None:
        for spec in GS200_CURRENT_RANGES:
            if abs(spec.full_scale - full_scale) <= 1e-9 * spec.full_scale:
                return spec
        return None

    def _range(self, full_scale: float) -> CurrentRange:
        spec = self._find_range(full_scale)
        if spec is None:
            raise RuntimeError(f"{self._gs.name}: unknown current range {full_scale!r} A")
        return spec


class GS200FluxBias(FluxBias):
    """Flux bias through a Yokogawa GS200 it connects to (the class for station files).

    Connects a ``YokogawaGS200`` named ``<name>_source`` at ``address``
    (:class:`labnr.drivers.yokogawa_gs200.YokogawaGS200`, QCoDeS's driver with
    an identity check: ``*IDN?`` must answer YOKOGAWA GS2xx, and ``serial`` if
    given, before anything else is sent), owns it (closes it on
    :meth:`close`), and snapshots it under ``"source"``. Connecting only
    reads (see :mod:`labnr.drivers.flux`).

    Parameters
    ----------
    name : str
        Instrument name.
    address : str
        VISA resource of the GS200.
    current_per_flux_quantum, offset_current, current_limits, ramp_rate, max_step
        See :class:`~labnr.drivers.flux.FluxBias`.
    poll_interval, timeout_margin : float
        See :class:`GS200CurrentSource`.
    terminator : str
        VISA read/write termination.
    timeout : float
        VISA timeout, s.
    serial : str, optional
        Expected serial number of the GS200 (``*IDN?``); None: not checked.
    pyvisa_sim_file, visalib : str, optional
        For simulation (``"labnr.drivers.sims:yokogawa_gs200.yaml"``).
    **kwargs
        Passed to :class:`~labnr.drivers.flux.FluxBias`.
    """

    def __init__(
        self,
        name: str,
        address: str,
        *,
        current_per_flux_quantum: float,
        current_limits: Sequence[float],
        ramp_rate: float,
        max_step: float,
        offset_current: float = 0.0,
        poll_interval: float = 0.02,
        timeout_margin: float = 30.0,
        terminator: str = "\n",
        timeout: float = 5.0,
        pyvisa_sim_file: str | None = None,
        visalib: str | None = None,
        serial: str | None = None,
        **kwargs: Any,
    ) -> None:
        gs = CheckedGS200(
            f"{name}_source",
            address,
            terminator=terminator,
            timeout=timeout,
            pyvisa_sim_file=pyvisa_sim_file,
            visalib=visalib,
            serial=serial,
        )
        try:
            super().__init__(
                name,
                GS200CurrentSource(gs, poll_interval=poll_interval, timeout_margin=timeout_margin),
                current_per_flux_quantum=current_per_flux_quantum,
                offset_current=offset_current,
                current_limits=current_limits,
                ramp_rate=ramp_rate,
                max_step=max_step,
                owns_source=True,
                **kwargs,
            )
        except BaseException:
            gs.close()
            raise
        # Client-side settings only (nothing is written): a direct
        # ``flux.source.instrument.current(x)`` then runs QCoDeS's one-step
        # hardware ramp at the configured rate instead of jumping (QCoDeS's
        # slowest allowed rate is 1 mA/h; slower configurations keep QCoDeS's
        # default and only labnr's parameters are rate-limited).
        if ramp_rate >= 1e-3 / 3600:
            gs.ramp_mode("HARDWARE")
            gs.ramp_rate(float(ramp_rate))
