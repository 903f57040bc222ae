"""Bounded records of what the emulated instruments were told to put out (tests only).

Each emulator keeps one recorder and appends to it whenever a setting that
reaches the device is applied: the SGS100A its level (as the peak voltage of
the CW tone into 50 ohm) and output switch, the AWG5208 the peak of every
waveform a channel holds times the channel's amplitude, the GS200 every
breakpoint of its output trajectory on the virtual clock and every program it
runs. A recorder keeps the last ``maxlen`` entries and running maxima over
everything it ever saw, so a long run costs a fixed amount of memory and the
maxima stay exact.

Tests and benchmarks read them through
:meth:`labnr.sim.lab.VirtualLab.command_history` and assert the safety limits
on *every* command the instruments received. Nothing in labnr's measurement,
calibration or lock code may read them (truth firewall).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from labnr.sim.instruments.awg5208_state import AWGState

__all__ = [
    "DEFAULT_MAXLEN",
    "AWGChannelRecord",
    "AWGRecorder",
    "LevelRecorder",
    "SourceRecord",
    "SourceRecorder",
    "peak_volts",
]

#: Entries kept per recorder (the running maxima cover everything).
DEFAULT_MAXLEN = 10_000


def peak_volts(power_dbm: float, impedance: float = 50.0) -> float:
    """Peak voltage of a CW tone of ``power_dbm`` into ``impedance`` ohm.

    The relation of :func:`labnr.drivers.pumps.dbm_to_volts` (restated here:
    the simulator does not import the drivers).
    """
    return float(np.sqrt(2.0 * impedance * 10 ** ((power_dbm - 30.0) / 10.0)))


@dataclass(frozen=True)
class SourceRecord:
    """One applied level or output switch of a CW source.

    Attributes
    ----------
    time : float
        Virtual time, s.
    power_dbm : float
        Level, dBm.
    volts : float
        Peak voltage of that level into 50 ohm, V.
    output : bool
        RF output on after the change.
    """

    time: float
    power_dbm: float
    volts: float
    output: bool


@dataclass
class SourceRecorder:
    """Levels of a CW source: the last ``maxlen`` changes and the largest ever applied.

    Attributes
    ----------
    entries : deque of SourceRecord
    max_volts : float
        Largest level applied, whatever the output switch, V.
    max_volts_on : float
        Largest level applied or kept while the output was on, V.
    """

    maxlen: int = DEFAULT_MAXLEN
    entries: deque[SourceRecord] = field(default_factory=deque)
    max_volts: float = 0.0
    max_volts_on: float = 0.0

    def __post_init__(self) -> None:
        self.entries = deque(self.entries, maxlen=self.maxlen)

    def record(self, time: float, power_dbm: float, output: bool) -> None:
        """Log the level and switch now in effect."""
        volts = peak_volts(power_dbm)
        self.entries.append(SourceRecord(float(time), float(power_dbm), volts, bool(output)))
        self.max_volts = max(self.max_volts, volts)
        if output:
            self.max_volts_on = max(self.max_volts_on, volts)

    def clear(self) -> None:
        """Forget the entries and maxima, keeping the level in effect (between test examples)."""
        last = self.entries[-1] if self.entries else None
        self.entries.clear()
        self.max_volts = self.max_volts_on = 0.0
        if last is not None:
            self.record(last.time, last.power_dbm, last.output)


@dataclass(frozen=True)
class AWGChannelRecord:
    """What one AWG channel held after a change of its waveform, amplitude or output.

    Attributes
    ----------
    time : float
        Virtual time, s.
    channel : int
        Channel number.
    peak_sample : float
        Largest ``|sample|`` of the assigned waveform (full scale is 1).
    amplitude_vpp : float
        Channel amplitude, Vpp.
    offset : float
        Channel DC offset, V.
    playing : bool
        Whether the channel puts the waveform out (AWG running, output on).
    """

    time: float
    channel: int
    peak_sample: float
    amplitude_vpp: float
    offset: float
    playing: bool

    @property
    def peak_volts(self) -> float:
        """Peak output voltage the samples ask for, ``peak_sample * Vpp / 2`` (before clipping)."""
        return self.peak_sample * self.amplitude_vpp / 2.0


@dataclass
class AWGRecorder:
    """Per channel: the last ``maxlen`` records and the largest peak ever held.

    Attributes
    ----------
    entries : deque of AWGChannelRecord
    max_peak_sample : dict of int to float
        Largest ``|sample|`` of any waveform a channel held.
    max_peak_volts : dict of int to float
        Largest ``peak_sample * Vpp / 2`` a channel held, V.
    """

    maxlen: int = DEFAULT_MAXLEN
    entries: deque[AWGChannelRecord] = field(default_factory=deque)
    max_peak_sample: dict[int, float] = field(default_factory=dict)
    max_peak_volts: dict[int, float] = field(default_factory=dict)
    _last: dict[int, tuple[float, float, float, bool]] = field(default_factory=dict)
    _peaks: dict[int, tuple[float, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.entries = deque(self.entries, maxlen=self.maxlen)

    def record(self, rec: AWGChannelRecord) -> None:
        """Log a channel's state (repeats of an unchanged state are skipped)."""
        key = (rec.peak_sample, rec.amplitude_vpp, rec.offset, rec.playing)
        if self._last.get(rec.channel) == key:
            return
        self._last[rec.channel] = key
        self.entries.append(rec)
        ch = rec.channel
        self.max_peak_sample[ch] = max(self.max_peak_sample.get(ch, 0.0), rec.peak_sample)
        self.max_peak_volts[ch] = max(self.max_peak_volts.get(ch, 0.0), rec.peak_volts)

    def observe(self, time: float, state: AWGState) -> None:
        """Record every channel that holds a waveform (after any output-visible change)."""
        for number, ch in state.channels.items():
            wave = state.waveforms.get(ch.waveform or "")
            if wave is None:
                continue
            self.record(
                AWGChannelRecord(
                    float(time), number, self._peak(wave.samples), float(ch.amplitude_vpp),
                    float(ch.offset_v), state.is_playing(number),
                )
            )  # fmt: skip

    def _peak(self, samples: np.ndarray) -> float:
        """``max |samples|``, cached per array (uploads replace the array, never mutate it)."""
        key = id(samples)
        hit = self._peaks.get(key)
        if hit is None or hit[1] is not samples:
            if len(self._peaks) >= 32:
                self._peaks.clear()
            peak = float(np.max(np.abs(samples))) if samples.size else 0.0
            hit = self._peaks[key] = (peak, samples)
        return hit[0]

    def clear(self) -> None:
        """Forget the entries and maxima, keeping each channel's state (between test examples)."""
        last = {rec.channel: rec for rec in self.entries}
        self.entries.clear()
        self.max_peak_sample.clear()
        self.max_peak_volts.clear()
        self._last.clear()
        for rec in last.values():
            self.record(rec)


@dataclass
class LevelRecorder:
    """A DC source's effective output on the virtual clock, and its programs.

    ``breakpoints`` hold ``(time, level)``: the output moves linearly between
    consecutive entries, and a jump is two entries at the same time.
    ``programs`` hold ``(time, start_level, steps, interval, slope)`` of every
    program run. The running maxima cover everything recorded since the last
    :meth:`clear`.

    Attributes
    ----------
    max_rate : float
        Largest ``|d level / dt|`` of a sloped segment, units/s.
    max_jump : float
        Largest instantaneous change of the output, units.
    max_segment : float
        Largest change over one recorded segment (sloped or jump), units.
    max_program_step : float
        Largest change between consecutive levels of a program (from its start
        level, and last-to-first for a repeating one), units.
    """

    maxlen: int = DEFAULT_MAXLEN
    breakpoints: deque[tuple[float, float]] = field(default_factory=deque)
    programs: deque[tuple[float, float, tuple[float, ...], float, float]] = field(
        default_factory=deque
    )
    max_rate: float = 0.0
    max_jump: float = 0.0
    max_segment: float = 0.0
    max_program_step: float = 0.0

    def __post_init__(self) -> None:
        self.breakpoints = deque(self.breakpoints, maxlen=self.maxlen)
        self.programs = deque(self.programs, maxlen=self.maxlen)

    def point(self, time: float, level: float) -> None:
        """Append a breakpoint; update the maxima from the previous one."""
        if self.breakpoints:
            t0, v0 = self.breakpoints[-1]
            dv, dt = abs(level - v0), time - t0
            self.max_segment = max(self.max_segment, dv)
            if dv > 0:
                if dt <= 0:
                    self.max_jump = max(self.max_jump, dv)
                else:
                    self.max_rate = max(self.max_rate, dv / dt)
        self.breakpoints.append((float(time), float(level)))

    def move(self, start: float, end: float, value: float, before: float) -> None:
        """The output went from ``before`` (at ``start``) to ``value`` (at ``end``)."""
        if not self.breakpoints or start > self.breakpoints[-1][0]:
            self.point(start, before)
        self.point(end, value)

    def program(
        self, time: float, start: float, steps: tuple[float, ...], interval: float, slope: float,
        repeat: bool,
    ) -> None:  # fmt: skip
        """Log a program run and its largest step."""
        self.programs.append((float(time), float(start), tuple(steps), interval, slope))
        levels = (start, *steps) + ((steps[0],) if repeat else ())
        biggest = max((abs(b - a) for a, b in zip(levels, levels[1:], strict=False)), default=0.0)
        self.max_program_step = max(self.max_program_step, biggest)

    def clear(self) -> None:
        """Keep only the present level as the first breakpoint; reset the maxima."""
        last = self.breakpoints[-1] if self.breakpoints else None
        self.breakpoints.clear()
        self.programs.clear()
        self.max_rate = self.max_jump = self.max_segment = self.max_program_step = 0.0
        if last is not None:
            self.breakpoints.append(last)
