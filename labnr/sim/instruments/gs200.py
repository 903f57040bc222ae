"""Emulated Yokogawa GS200 (GS210) DC voltage/current source.

Speaks the subset of the GS200 SCPI set that QCoDeS's ``YokogawaGS200`` uses
at connect and in normal use, including its hardware ramps (one-step
programs polled through ``:STATus:EVENt?``). The instrument has no monitor
(``/MON``) option: ``*OPT?`` does not list it and the measurement commands
answer ``-241,"Hardware missing"``.

Limits follow the instrument: voltage ranges 10 mV, 100 mV, 1 V, 10 V, 30 V
and current ranges 1 mA, 10 mA, 100 mA, 200 mA, each usable to 120 % of
full scale (30 V to 32 V, 200 mA to 200 mA). A level beyond the range pushes
``-222,"Data out of range"`` and leaves the level unchanged; levels are
quantised to the range's resolution.

The device sees :attr:`GS200Emulator.current`; the trajectory of the
effective output is logged in ``state.history`` on the virtual clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from labnr.sim.instruments.backend import LabBackend
from labnr.sim.instruments.gs200_program import GS200Program
from labnr.sim.instruments.history import LevelRecorder
from labnr.sim.instruments.scpi import SCPICall, SCPIError, SCPIInstrument, scpi_query, scpi_set

__all__ = ["RANGES", "GS200Emulator", "GS200State"]


@dataclass(frozen=True)
class _Range:
    full_scale: float
    max_level: float
    resolution: float


#: Source ranges per function: full scale, largest settable |level|, resolution.
RANGES: dict[str, tuple[_Range, ...]] = {
    "VOLT": (
        _Range(10e-3, 12e-3, 100e-9),
        _Range(100e-3, 120e-3, 1e-6),
        _Range(1.0, 1.2, 10e-6),
        _Range(10.0, 12.0, 100e-6),
        _Range(30.0, 32.0, 1e-3),
    ),
    "CURR": (
        _Range(1e-3, 1.2e-3, 10e-9),
        _Range(10e-3, 12e-3, 100e-9),
        _Range(100e-3, 120e-3, 1e-6),
        _Range(200e-3, 200e-3, 1e-6),
    ),
}
_DEFAULT_RANGE = {"VOLT": 10.0, "CURR": 1e-3}
_FUNCTIONS = ("VOLTage", "CURRent")

# Extended event register bits (:STATus:EVENt?) used by the program runner.
_EOS, _EOP = 1 << 6, 1 << 7


@dataclass
class GS200State:
    """Settings of the emulated GS200.

    Attributes
    ----------
    function : str
        ``"VOLT"`` or ``"CURR"``.
    range : float
        Full scale of the active range, V or A.
    level : float
        Programmed level, V or A (follows a running program).
    output : bool
        Output switch.
    voltage_limit, current_limit : float
        Limiter levels, V and A.
    remote_sense, guard : bool
        Four-wire sensing and guard terminal.
    bnc_out, bnc_in : str
        BNC connector functions (``TRIG``, ``OUTP``, ``READ``).
    program_interval, program_slope : float
        Program step interval and slope time, s.
    program_trigger : str
        ``NORM`` or ``MEND``.
    program_repeat : bool
        Repeat the program.
    program_count : int
        Program repeat count setting.
    history : list of (float, float)
        Trajectory of the effective output (``level`` if output is on, else
        0; V or A) as (virtual time, value) breakpoints: linear interpolation
        between consecutive entries is exact, and a jump appears as two
        entries with the same time. Starts with ``(t0, 0.0)``.
    """

    function: str = "VOLT"
    range: float = 10.0
    level: float = 0.0
    output: bool = False
    voltage_limit: float = 30.0
    current_limit: float = 0.2
    remote_sense: bool = False
    guard: bool = False
    bnc_out: str = "TRIG"
    bnc_in: str = "TRIG"
    program_interval: float = 1.0
    program_slope: float = 0.0
    program_trigger: str = "NORM"
    program_repeat: bool = False
    program_count: int = 1
    history: list[tuple[float, float]] = field(default_factory=list)

    @property
    def effective(self) -> float:
        """Effective output: the level when the output is on, else 0."""
        return self.level if self.output else 0.0


class GS200Emulator(SCPIInstrument):
    """Emulated Yokogawa GS200 DC source.

    Parameters
    ----------
    name : str
        Instrument name (for :meth:`LabBackend.notify`).
    backend : LabBackend, optional
        Simulated lab; None for a free-standing emulator with its own clock.

    Attributes
    ----------
    state : GS200State
        Present settings and output history.
    applied : LevelRecorder
        Bounded record of the effective output and of every program run, with
        the largest rate, jump and program step (tests only).
    """

    manufacturer = "YOKOGAWA"
    model = "GS210"
    serial = "91W000001"
    firmware = "2.02"
    options = "NONE"
    #: Fraction of a program's duration by which each ``:STATus:EVENt?`` poll
    #: advances the virtual clock while a program runs: a client waiting for
    #: the end of a hardware ramp needs about 10 polls whatever its length.
    program_poll_fraction: ClassVar[float] = 0.1
    #: Fault hook (tests): added to every ``:SOURce:LEVel?`` reply, V or A; a
    #: source whose read-back lies. Set it on an instance; 0 tells the truth.
    level_offset: float = 0.0

    def __init__(self, name: str, backend: LabBackend | None = None) -> None:
        self.state = GS200State()
        self._program: GS200Program | None = None
        self._editing: list[float] | None = None
        self._steps: tuple[float, ...] = ()
        self._saved: dict[str, tuple[float, ...]] = {}
        self._loaded = ""
        self._events = 0
        self._synced = 0.0
        self._range_memory: dict[str, float] = {}
        super().__init__(name, backend)
        self.state.history.append((self.clock.now, 0.0))
        self.applied = LevelRecorder()
        self.applied.point(self.clock.now, 0.0)
        self._add_settings()

    # ------------------------------------------------------------ device side

    @property
    def current(self) -> float:
        """Current the device sees, A: the level if output is on in CURR mode, else 0."""
        with self.lock:
            self.advance_state()
            return self.state.effective if self.state.function == "CURR" else 0.0

    @property
    def voltage(self) -> float:
        """Voltage sourced, V: the level if output is on in VOLT mode, else 0."""
        with self.lock:
            self.advance_state()
            return self.state.effective if self.state.function == "VOLT" else 0.0

    def reset(self) -> None:
        """``*RST``: default settings, output off, program stopped (history kept)."""
        with self.lock:
            self.advance_state()
            self._program = None
            self._editing = None
            self._range_memory.clear()
            history = self.state.history
            before = self.state.effective
            self.state = GS200State(history=history)
            self._move(self.clock.now, self.clock.now, 0.0, before)

    def clear_status(self) -> None:
        """``*CLS``: also clears the extended event register."""
        super().clear_status()
        self._events = 0

    def advance_state(self) -> None:
        """Run the program up to ``clock.now``, logging the output trajectory."""
        program = self._program
        if program is None or program.paused_at is not None:
            return
        now = self.clock.now
        changed = False
        for start, end, level in program.segments(self._synced, now):
            before = self.state.effective
            self.state.level = level
            changed |= self._move(start, end, self.state.effective, before)
        self._synced = now
        if now >= program.end:
            self._program = None
            self._events |= _EOS | _EOP
        if changed:
            self.changed()

    # --------------------------------------------------------------- helpers

    def _move(self, start: float, end: float, value: float, before: float) -> bool:
        """Log that the effective output went from ``before`` (at ``start``) to ``value``."""
        if value == before:
            return False
        history = self.state.history
        if start > history[-1][0]:
            history.append((start, before))
        history.append((end, value))
        self.applied.move(start, end, value, before)
        return True

    def _set_level(self, level: float, *, range_: float | None = None) -> None:
        if self._program is not None:
            raise SCPIError(-221, "source level cannot change while a program runs")
        before = self.state.effective
        if range_ is not None:
            self.state.range = range_
        self.state.level = level
        now = self.clock.now
        if self._move(now, now, self.state.effective, before) or range_ is not None:
            self.changed()

    def _range_spec(self, function: str | None = None, full_scale: float | None = None) -> _Range:
        function = function or self.state.function
        full_scale = self.state.range if full_scale is None else full_scale
        return next(r for r in RANGES[function] if r.full_scale == full_scale)

    def _quantise(self, level: float, spec: _Range) -> float:
        return round(round(level / spec.resolution) * spec.resolution, 12)

    def _level_arg(self, call: SCPICall, spec: _Range) -> float:
        unit = " V" if self.state.function == "VOLT" else " A"
        level = call.number(0, low=-spec.max_level, high=spec.max_level, name="level", unit=unit)
        return self._quantise(level, spec)

    def _auto_range(self, call: SCPICall) -> tuple[float, _Range]:
        specs = RANGES[self.state.function]
        top = specs[-1].max_level
        level = call.number(0, low=-top, high=top, name="level")
        spec = next(r for r in specs if abs(level) <= r.max_level)
        return self._quantise(level, spec), spec

    # ----------------------------------------------------------- source

    @scpi_set(":SOURce:FUNCtion", nargs=1)
    def _set_function(self, call: SCPICall) -> None:
        function = call.choice(0, _FUNCTIONS, name="function")[:4].upper()
        if function == self.state.function:
            return
        if self.state.output or self._program is not None:
            raise SCPIError(-221, "turn the output off before changing the source function")
        self._range_memory[self.state.function] = self.state.range
        self.state.function = function
        self.state.range = self._range_memory.get(function, _DEFAULT_RANGE[function])
        self.state.level = 0.0
        self.changed()

    @scpi_query(":SOURce:FUNCtion")
    def _get_function(self, call: SCPICall) -> str:
        return self.state.function

    @scpi_set(":SOURce:RANGe", nargs=1)
    def _set_range(self, call: SCPICall) -> None:
        specs = RANGES[self.state.function]
        index = specs.index(self._range_spec())
        keyword = call.string(0).strip().upper()
        steps = {"UP": min(index + 1, len(specs) - 1), "DOWN": max(index - 1, 0)}
        if keyword in steps:
            spec = specs[steps[keyword]]
        else:
            value = abs(
                call.number(0, low=-specs[-1].full_scale, high=specs[-1].full_scale, name="range")
            )
            spec = next(r for r in specs if value <= r.full_scale * (1 + 1e-9))
        if abs(self.state.level) > spec.max_level:
            raise SCPIError(-221, f"level {self.state.level:g} exceeds range {spec.full_scale:g}")
        if spec.full_scale != self.state.range:
            self.state.range = spec.full_scale
            self.changed()

    @scpi_query(":SOURce:RANGe")
    def _get_range(self, call: SCPICall) -> float:
        return self.state.range

    @scpi_set(":SOURce:LEVel[:FIX]", nargs=1)
    def _set_level_fix(self, call: SCPICall) -> None:
        level = self._level_arg(call, self._range_spec())
        if self._editing is not None:
            self._editing.append(level)
        else:
            self._set_level(level)

    @scpi_set(":SOURce:LEVel:AUTO", nargs=1)
    def _set_level_auto(self, call: SCPICall) -> None:
        level, spec = self._auto_range(call)
        if self._editing is not None:
            self._editing.append(self._level_arg(call, self._range_spec()))
        else:
            self._set_level(level, range_=spec.full_scale)

    @scpi_query(":SOURce:LEVel[:FIX]")
    def _get_level(self, call: SCPICall) -> float:
        if call.has_arg():
            spec = self._range_spec()
            return call.number(0, low=-spec.max_level, high=spec.max_level)
        return self.state.level + self.level_offset

    @scpi_query(":SOURce:LEVel:AUTO")
    def _get_level_auto(self, call: SCPICall) -> float:
        return self._get_level(call)

    @scpi_set(":OUTPut[:STATe]", nargs=1)
    def _set_output(self, call: SCPICall) -> None:
        on = call.boolean(0, name="output")
        before = self.state.effective
        self.state.output = on
        now = self.clock.now
        if self._move(now, now, self.state.effective, before):
            self.changed()

    @scpi_query(":OUTPut[:STATe]")
    def _get_output(self, call: SCPICall) -> bool:
        return self.state.output

    # ----------------------------------------------------------- program

    @scpi_set(":PROGram:EDIT:STARt", nargs=0)
    def _edit_start(self, call: SCPICall) -> None:
        self._editing = []

    @scpi_set(":PROGram:EDIT:END", nargs=0)
    def _edit_end(self, call: SCPICall) -> None:
        if self._editing is None:
            raise SCPIError(-221, "program editing was not started")
        self._steps, self._editing = tuple(self._editing), None

    @scpi_set(":PROGram:RUN", nargs=0)
    def _run(self, call: SCPICall) -> None:
        if self._editing is not None or not self._steps:
            raise SCPIError(-221, "no program to run (edit one with :PROG:EDIT:STAR/END)")
        spec = self._range_spec()
        if any(abs(step) > spec.max_level for step in self._steps):
            raise SCPIError(-221, f"program level outside range {spec.full_scale:g}")
        now = self.clock.now
        self._program = GS200Program(
            self._steps,
            now,
            self.state.level,
            self.state.program_interval,
            self.state.program_slope,
            self.state.program_repeat,
        )
        program = self._program
        self.applied.program(
            now, program.start_level, program.steps, program.interval, program.slope,
            program.repeat,
        )  # fmt: skip
        self._synced = now
        self._events &= ~(_EOS | _EOP)
        self.advance_state()

    @scpi_set(":PROGram:HOLD|PAUSe", nargs=0)
    def _pause(self, call: SCPICall) -> None:
        if self._program is not None and self._program.paused_at is None:
            self._program.paused_at = self.clock.now

    @scpi_set(":PROGram:CONTinue", nargs=0)
    def _continue(self, call: SCPICall) -> None:
        program = self._program
        if program is not None and program.paused_at is not None:
            program.start += self.clock.now - program.paused_at
            self._synced = self.clock.now
            program.paused_at = None

    @scpi_set(":PROGram:SAVE", nargs=1)
    def _save(self, call: SCPICall) -> None:
        self._saved[call.string(0)] = self._steps

    @scpi_set(":PROGram:LOAD", nargs=1)
    def _load(self, call: SCPICall) -> None:
        name = call.string(0)
        if name not in self._saved:
            raise SCPIError(-256, f"program file {name!r}")
        self._steps, self._loaded = self._saved[name], name

    @scpi_query(":PROGram:LOAD")
    def _get_load(self, call: SCPICall) -> str:
        return f'"{self._loaded}"'

    # ----------------------------------------------------------- status

    @scpi_query(":STATus:EVENt")
    def _get_events(self, call: SCPICall) -> int:
        program = self._program
        if program is not None and program.paused_at is None:
            span = program.cycle if program.repeat else program.end - program.start
            remaining = program.end - self.clock.now
            step = min(remaining, max(self.command_latency, self.program_poll_fraction * span))
            if step > 0:
                self.clock.advance(step)
            self.advance_state()
        value, self._events = self._events, 0
        return value

    @scpi_query(":STATus:CONDition")
    def _get_condition(self, call: SCPICall) -> int:
        return 0 if self._program is not None else 1 << 8  # RFP: ready for program

    @scpi_query(":SYSTem:LFRequency")
    def _get_line_frequency(self, call: SCPICall) -> int:
        return 50

    @scpi_query("SIMulation:APPLied")
    def _get_applied(self, call: SCPICall) -> tuple[float, ...]:
        """Tests only: max jump, max rate, max segment, max program step, effective output."""
        self.advance_state()
        a = self.applied
        return a.max_jump, a.max_rate, a.max_segment, a.max_program_step, self.state.effective

    @scpi_set("SIMulation:APPLied:CLEar", nargs=0)
    def _clear_applied(self, call: SCPICall) -> None:
        self.advance_state()
        self.applied.clear()

    def _missing_monitor(self, call: SCPICall) -> None:
        raise SCPIError(-241, f"{call.header}: monitor option (/MON) not installed")

    def _add_settings(self) -> None:
        state = self._current_state
        self.add_number_setting(
            ":SOURce:PROTection:VOLTage", state, "voltage_limit", low=1.0, high=30.0, unit=" V"
        )
        self.add_number_setting(
            ":SOURce:PROTection:CURRent", state, "current_limit", low=1e-3, high=0.2, unit=" A"
        )
        self.add_bool_setting(":SENSe:REMote", state, "remote_sense")
        self.add_bool_setting(":SENSe:GUARd", state, "guard")
        self.add_choice_setting(":ROUTe:BNCO", state, "bnc_out", ("TRIGger", "OUTPut", "READy"))
        self.add_choice_setting(":ROUTe:BNCI", state, "bnc_in", ("TRIGger", "OUTPut"))
        self.add_number_setting(
            ":PROGram:INTerval", state, "program_interval", low=0.1, high=3600.0, unit=" s"
        )
        self.add_number_setting(
            ":PROGram:SLOPe", state, "program_slope", low=0.0, high=3600.0, unit=" s"
        )
        self.add_choice_setting(":PROGram:TRIGger", state, "program_trigger", ("NORMal", "MEND"))
        self.add_bool_setting(":PROGram:REPeat", state, "program_repeat")
        self.add_integer_setting(":PROGram:COUNt", state, "program_count", low=1, high=10000)
        for pattern in (
            ":SENSe[:STATe]",
            ":SENSe:NPLC",
            ":SENSe:DELay",
            ":SENSe:TRIGger",
            ":SENSe:INTerval",
            ":MEASure",
            ":READ",
            ":INITiate",
        ):
            self.add_command(pattern, set=self._missing_monitor, query=self._missing_monitor)

    def _current_state(self, suffixes: tuple[int, ...]) -> GS200State:
        """The current :class:`GS200State` (``*RST`` replaces the object)."""
        return self.state
