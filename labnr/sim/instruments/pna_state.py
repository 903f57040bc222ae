"""Instrument state, limits, sweep-time model and trace formatting of the PNA-X emulator.

Everything here is independent of SCPI parsing: :mod:`labnr.sim.instruments.pna`
turns commands into changes of these dataclasses.

Limits are those of a Keysight N5242B PNA-X (4 ports, 26.5 GHz) with options
080 (frequency offset) and 419 (source attenuators, hence the low minimum
power). They are taken from the PNA help (IF bandwidth list, 1..100001 points,
averaging factor 1..65536, group count 1..2e6) and the N5242B data sheet
(10 MHz to 26.5 GHz).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Valid IF bandwidths of the PNA family, Hz (PNA help, "IF Bandwidth"). A value
#: in between is rounded *up* to the next valid one, as the real analyzer does.
IF_BANDWIDTHS: tuple[float, ...] = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700,
    1e3, 1.5e3, 2e3, 3e3, 5e3, 7e3, 10e3, 15e3, 20e3, 30e3, 50e3, 70e3,
    100e3, 150e3, 200e3, 280e3, 360e3, 600e3, 1e6, 1.5e6, 2e6, 3e6, 5e6,
    7e6, 10e6, 15e6,
)  # fmt: skip

#: Display formats understood by ``CALCulate:FORMat`` (short forms).
FORMATS: tuple[str, ...] = (
    "MLOG", "MLIN", "PHAS", "UPH", "REAL", "IMAG", "POL", "SMIT", "GDEL", "SWR",
)  # fmt: skip

#: Sweep types implemented (``SENSe:SWEep:TYPE``).
SWEEP_TYPES: tuple[str, ...] = ("LIN", "LOG", "CW")

#: Sweep (trigger) modes (``SENSe:SWEep:MODE``).
SWEEP_MODES: tuple[str, ...] = ("HOLD", "CONT", "SING", "GRO")

#: FOM range numbers and names of a 4-port, 2-source PNA-X (PNA help, SENS:FOM:RNUM?).
FOM_RANGE_NAMES: dict[int, str] = {1: "Primary", 2: "Source", 3: "Receivers", 4: "Source2"}


@dataclass(frozen=True)
class PNALimits:
    """Hardware limits of the emulated analyzer.

    Attributes
    ----------
    f_min, f_max : float
        Frequency range in Hz (N5242B: 10 MHz to 26.5 GHz).
    n_ports : int
        Number of test ports.
    max_points : int
        Maximum number of points per sweep.
    power_min, power_max : float
        Settable source power per port in dBm (-90 dBm needs the source
        attenuators of option 419; +20 dBm is the top of the settable range).
    max_averages : int
        Maximum averaging factor.
    max_channels : int
        Highest channel number accepted.
    """

    f_min: float = 10e6
    f_max: float = 26.5e9
    n_ports: int = 4
    max_points: int = 100001
    power_min: float = -90.0
    power_max: float = 20.0
    max_averages: int = 65536
    max_channels: int = 200


@dataclass(frozen=True)
class SweepTimeModel:
    r"""Time a PNA-X needs for a sweep.

    One *pass* is a sweep of all points with one source port driving:

    .. math:: T_\mathrm{pass} = N \left(\frac{k}{\mathrm{IFBW}} + t_\mathrm{pt}\right)
              + t_\mathrm{retrace}

    with the IF-filter settling factor :math:`k` (the digital IF filter needs a
    little more than one period of its bandwidth per point) and a per-point
    LO-retune/ADC overhead :math:`t_\mathrm{pt}`. ``SENSe:SWEep:TIME?`` reports
    :math:`T_\mathrm{pass}` (as the real analyzer reports the time of one sweep).
    A triggered acquisition of a channel whose measurements are driven from
    :math:`P` different source ports, repeated for :math:`G` triggered sweeps
    (``GROups`` count; 1 for ``SINGle``/``INITiate``), takes

    .. math:: T_\mathrm{acq} = G\, P\, T_\mathrm{pass} + t_\mathrm{trigger}.

    With averaging done the QCoDeS way (``AVER:COUN n``, ``SWE:GRO:COUN n``)
    :math:`G = n`, i.e. :math:`T \approx n N k / \mathrm{IFBW}` per source port.

    Attributes
    ----------
    settling_factor : float
        :math:`k`, IF periods per point.
    point_overhead : float
        :math:`t_\mathrm{pt}` in s.
    retrace : float
        :math:`t_\mathrm{retrace}` in s, per pass.
    trigger_latency : float
        :math:`t_\mathrm{trigger}` in s, per triggered acquisition.
    """

    settling_factor: float = 1.1
    point_overhead: float = 2e-6
    retrace: float = 1.5e-3
    trigger_latency: float = 0.5e-3

    def pass_time(self, npoints: int, if_bandwidth: float) -> float:
        """Duration of one pass over ``npoints`` points, s."""
        return npoints * (self.settling_factor / if_bandwidth + self.point_overhead) + self.retrace

    def acquisition_time(self, pass_time: float, sweeps: int, source_ports: int) -> float:
        """Duration of ``sweeps`` triggered sweeps with ``source_ports`` passes each, s."""
        return sweeps * max(source_ports, 1) * pass_time + self.trigger_latency


@dataclass
class FOMRange:
    """One frequency-offset (FOM) range of a channel.

    A coupled range follows the primary range:
    ``f = f_primary * multiplier / divisor + offset``. An uncoupled range sweeps
    on its own (``sweep_type`` LIN from ``start`` to ``stop``, or CW at ``cw``)
    with the channel's number of points.

    Attributes
    ----------
    name : str
        Range name ("Primary", "Source", "Receivers", "Source2").
    coupled : bool
        Coupled to the primary range.
    multiplier, divisor, offset : float
        Coupling coefficients (offset in Hz).
    sweep_type : str
        "LIN" or "CW" when uncoupled.
    start, stop, cw : float
        Own sweep when uncoupled, Hz.
    """

    name: str
    coupled: bool = True
    multiplier: float = 1.0
    divisor: float = 1.0
    offset: float = 0.0
    sweep_type: str = "LIN"
    start: float = 10e6
    stop: float = 26.5e9
    cw: float = 1e9

    def frequencies(self, primary: np.ndarray) -> np.ndarray:
        """Frequencies of this range given the primary range's, Hz."""
        if self.coupled:
            return primary * (self.multiplier / self.divisor) + self.offset
        if self.sweep_type == "CW":
            return np.full(primary.shape, self.cw)
        return np.linspace(self.start, self.stop, primary.size)


def _default_fom_ranges() -> dict[int, FOMRange]:
    return {num: FOMRange(name=name) for num, name in FOM_RANGE_NAMES.items()}


@dataclass
class FOMState:
    """Frequency-offset mode of a channel (``SENSe:FOM``).

    Attributes
    ----------
    enabled : bool
        ``SENSe:FOM[:STATe]``.
    ranges : dict of int to FOMRange
        Range number to range; 1 is the primary range (its frequencies are the
        channel's sweep), 2 the source, 3 the receivers, 4 the second source.
    display : int
        Range shown on the x axis (``SENSe:FOM:DISPlay:SELect``; default "Receivers").
    """

    enabled: bool = False
    ranges: dict[int, FOMRange] = field(default_factory=_default_fom_ranges)
    display: int = 3

    def range_number(self, name: str) -> int:
        """Range number of a (case-insensitive) range name; ``KeyError`` if unknown."""
        for num, rng in self.ranges.items():
            if rng.name.lower() == name.strip().lower():
                return num
        raise KeyError(name)


@dataclass
class ChannelState:
    """Settings of one measurement channel (``SENSe<cnum>``, ``SOURce<cnum>``).

    Attributes
    ----------
    number : int
        Channel number.
    start, stop : float
        Primary-range sweep limits, Hz (center and span are derived).
    points : int
        Number of points.
    if_bandwidth : float
        IF bandwidth, Hz.
    averaging : bool
        Sweep averaging on.
    average_count : int
        Averaging factor.
    averages_done : int
        Sweeps in the running average since the last ``AVERage:CLEar``.
    sweep_type : str
        "LIN", "LOG" or "CW".
    cw_frequency : float
        CW frequency, Hz.
    sweep_mode : str
        "HOLD", "CONT", "SING" or "GRO".
    group_count : int
        Triggers accepted in "GRO" mode.
    port_power_dbm : dict of int to float
        Source power per port, dBm.
    power_coupled : bool
        ``SOURce:POWer:COUPle``: setting one port's power sets all ports.
    sweep_time_auto : bool
        Fastest sweep (``SENSe:SWEep:TIME:AUTO``).
    sweep_time_set : float
        Sweep time requested with ``SENSe:SWEep:TIME`` when not auto, s.
    fom : FOMState
        Frequency-offset settings.
    last_sweep_end : float or None
        Simulated time at which the last acquisition ended.
    """

    number: int
    start: float = 10e6
    stop: float = 26.5e9
    points: int = 201
    if_bandwidth: float = 100e3
    averaging: bool = False
    average_count: int = 1
    averages_done: int = 0
    sweep_type: str = "LIN"
    cw_frequency: float = 1e9
    sweep_mode: str = "CONT"
    group_count: int = 1
    port_power_dbm: dict[int, float] = field(default_factory=dict)
    power_coupled: bool = True
    sweep_time_auto: bool = True
    sweep_time_set: float = 0.0
    fom: FOMState = field(default_factory=FOMState)
    last_sweep_end: float | None = None

    @property
    def center(self) -> float:
        """Center frequency, Hz."""
        return 0.5 * (self.start + self.stop)

    @property
    def span(self) -> float:
        """Frequency span, Hz."""
        return self.stop - self.start

    def primary_frequencies(self) -> np.ndarray:
        """Frequencies of the primary range (the channel's sweep), Hz."""
        if self.sweep_type == "CW":
            return np.full(self.points, self.cw_frequency)
        if self.sweep_type == "LOG":
            return np.geomspace(self.start, self.stop, self.points)
        return np.linspace(self.start, self.stop, self.points)

    def stimulus_and_receiver_frequencies(self) -> tuple[np.ndarray, np.ndarray]:
        """Source and receiver frequencies of the next sweep, Hz.

        Equal to the primary range unless frequency offset is on, in which case
        they are the "Source" (2) and "Receivers" (3) ranges.
        """
        primary = self.primary_frequencies()
        if not self.fom.enabled:
            return primary, primary
        return (
            self.fom.ranges[2].frequencies(primary),
            self.fom.ranges[3].frequencies(primary),
        )

    def x_axis(self) -> np.ndarray:
        """Stimulus values of the x axis (``SENSe:X?``), Hz."""
        primary = self.primary_frequencies()
        if not self.fom.enabled:
            return primary
        return self.fom.ranges[self.fom.display].frequencies(primary)


@dataclass
class Measurement:
    """One measurement (a "trace" in QCoDeS terms).

    Attributes
    ----------
    name : str
        Measurement name, unique on the instrument.
    number : int
        Measurement number (the "Tr#" of ``CALC:PAR:MNUM``), unique on the instrument.
    channel : int
        Channel the measurement belongs to.
    parameter : str
        S-parameter as defined, e.g. "S21".
    out_port, in_port : int
        Receiver (output) port and source (input) port.
    format : str
        Display format (short form, see :data:`FORMATS`).
    electrical_delay : float
        Electrical delay in s; applied to formatted data only.
    data : numpy.ndarray or None
        Complex corrected data of the last sweep (``SDATA``), or None.
    x_values : numpy.ndarray or None
        x-axis values at the time of the last sweep, Hz.
    receiver_frequencies : numpy.ndarray or None
        Receiver frequencies of the last sweep, Hz (used by electrical delay).
    """

    name: str
    number: int
    channel: int
    parameter: str
    out_port: int
    in_port: int
    format: str = "MLOG"
    electrical_delay: float = 0.0
    data: np.ndarray | None = None
    x_values: np.ndarray | None = None
    receiver_frequencies: np.ndarray | None = None


@dataclass
class PNAState:
    """Whole-instrument state of the PNA-X emulator.

    Attributes
    ----------
    channels : dict of int to ChannelState
        Existing channels.
    measurements : dict of str to Measurement
        Measurements by name, in creation order.
    selected : dict of int to str
        Selected measurement per channel (``CALC<cnum>:PAR:SEL``).
    windows : dict of int to dict of int to int
        Window number to {trace number: measurement number}.
    rf_on : bool
        ``OUTPut[:STATe]``: RF power on.
    data_format : str
        "ASC", "REAL32" or "REAL64" (``FORMat[:DATA]``).
    byte_order : str
        "NORM" (big-endian) or "SWAP" (little-endian), ``FORMat:BORDer``.
    trigger_source : str
        "IMM", "EXT" or "MAN" (``TRIGger:SOURce``); stored only.
    """

    channels: dict[int, ChannelState] = field(default_factory=dict)
    measurements: dict[str, Measurement] = field(default_factory=dict)
    selected: dict[int, str] = field(default_factory=dict)
    windows: dict[int, dict[int, int]] = field(default_factory=dict)
    rf_on: bool = True
    data_format: str = "ASC"
    byte_order: str = "NORM"
    trigger_source: str = "IMM"

    def by_number(self, number: int) -> Measurement | None:
        """Measurement with the given measurement number, or None."""
        for meas in self.measurements.values():
            if meas.number == number:
                return meas
        return None

    def free_number(self) -> int:
        """Lowest measurement number not in use (the PNA reuses freed numbers)."""
        used = {m.number for m in self.measurements.values()}
        return next(n for n in range(1, len(used) + 2) if n not in used)

    def in_channel(self, channel: int) -> list[Measurement]:
        """Measurements of a channel, in creation order."""
        return [m for m in self.measurements.values() if m.channel == channel]


def round_if_bandwidth(value: float) -> float:
    """Round an IF bandwidth up to the next valid value, as the PNA does.

    Parameters
    ----------
    value : float
        Requested IF bandwidth, Hz, within [1 Hz, 15 MHz].

    Returns
    -------
    float
        The valid IF bandwidth that will be used.
    """
    for bw in IF_BANDWIDTHS:
        if bw >= value * (1 - 1e-12):
            return float(bw)
    return float(IF_BANDWIDTHS[-1])


def format_trace(
    data: np.ndarray, fmt: str, frequencies: np.ndarray, electrical_delay: float = 0.0
) -> np.ndarray:
    """Formatted data (``FDATA``) of a complex trace.

    Electrical delay :math:`\\tau` is applied here (and not to ``SDATA``, which
    the PNA reads before the delay/phase-offset block of its data map):
    :math:`S \\to S\\,e^{+i 2\\pi f \\tau}`, which removes the phase slope of a
    line of delay :math:`\\tau`.

    Parameters
    ----------
    data : numpy.ndarray
        Complex data, shape (npoints,).
    fmt : str
        One of :data:`FORMATS`.
    frequencies : numpy.ndarray
        Receiver frequencies, Hz, shape (npoints,).
    electrical_delay : float
        Electrical delay, s.

    Returns
    -------
    numpy.ndarray
        Float array: one value per point, or interleaved pairs for POL/SMIT.
    """
    if electrical_delay:
        data = data * np.exp(2j * np.pi * frequencies * electrical_delay)
    with np.errstate(divide="ignore", invalid="ignore"):
        if fmt == "MLOG":
            return 20.0 * np.log10(np.abs(data))
        if fmt == "MLIN":
            return np.abs(data)
        if fmt == "PHAS":
            return np.degrees(np.angle(data))
        if fmt == "UPH":
            return np.degrees(np.unwrap(np.angle(data)))
        if fmt == "REAL":
            return data.real.copy()
        if fmt == "IMAG":
            return data.imag.copy()
        if fmt in ("POL", "SMIT"):
            return np.ascontiguousarray(data).view(np.float64).copy()
        if fmt == "SWR":
            mag = np.abs(data)
            return (1.0 + mag) / (1.0 - mag)
        if fmt == "GDEL":
            if data.size < 2:
                return np.zeros(data.size)
            phase = np.unwrap(np.angle(data))
            return -np.gradient(phase, 2.0 * math.pi * frequencies)
    raise ValueError(f"format_trace: format {fmt!r} is not one of {FORMATS}")
