"""Channel configuration and acquisition engine of the Keysight PNA-X driver.

One analyzer channel is set up for a :class:`ChannelConfig` (which S-parameters,
which stimulus, frequency offset, IF bandwidth, powers, averaging) once; the
result, a :class:`PreparedChannel`, holds everything an acquisition needs —
measurement numbers, frequency axes, the expected sweep duration and the exact
command strings — so an acquisition is one trigger message
(``INIT<c>;*OPC?;:SYST:ERR?``) and one ``SDATA`` block read per measurement.

The instrument side is the :class:`PNATransport` protocol, implemented by
:class:`labnr.drivers.keysight_pna.KeysightPNAXBase`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from .keysight_pna_params import channel_catalog, format_value, sparameter_label
from .parsing import (
    ReplyError,
    is_no_error,
    parse_bool,
    parse_fields,
    parse_int,
    parse_number,
)

if TYPE_CHECKING:
    from .keysight_pna_transport import PNATransportMixin

__all__ = [
    "ChannelConfig",
    "FrequencyOffset",
    "OffsetTransmission",
    "PNAError",
    "PNATransport",
    "PointReader",
    "PreparedChannel",
    "Stimulus",
    "acquire",
    "prepare",
    "sweep_timeout_seconds",
]

#: The visa timeout during a sweep is the base timeout plus this factor times the
#: expected acquisition time.
SWEEP_TIMEOUT_FACTOR = 1.5


class PNATransport(Protocol):
    """What the engine needs from the instrument."""

    fom_available: bool

    def write_raw(self, cmd: str) -> None: ...

    def ask_raw(self, cmd: str) -> str: ...

    def ask_block(self, cmd: str) -> npt.NDArray[np.float64]: ...

    def check_errors(self, context: str, first_reply: str | None = None) -> None: ...

    def sweep_timeout(self, duration: float) -> AbstractContextManager[object]: ...


def read_stimulus(pna: PNATransport, chan: int) -> npt.NDArray[np.float64]:
    """The channel's stimulus frequencies (``SENS:X?``), checked against its point count.

    pyvisa's block reader accepts a truncated or mislabelled block (e.g. ``#13abc``
    gives no values); the count and finiteness checks turn that into a
    :class:`~labnr.drivers.parsing.ReplyError` (retried as a malformed reply).
    """
    cmd = f"SENS{chan}:X?"
    points = parse_int(pna.ask_raw(f"SENS{chan}:SWE:POIN?"), f"SENS{chan}:SWE:POIN?")
    values = np.array(pna.ask_block(cmd), dtype=float)
    if values.size != points or not np.all(np.isfinite(values)):
        raise ReplyError(cmd, f"{values.size} finite values expected {points}", values[:8])
    return values


@dataclass(frozen=True)
class Stimulus:
    """A channel's stimulus sweep.

    Attributes
    ----------
    kind : str
        ``"LIN"`` (linear from ``start`` to ``stop``) or ``"CW"`` (``points``
        readings at ``start``; ``stop`` equals ``start``).
    start, stop : float
        Hz.
    points : int
        Number of points.
    """

    kind: str
    start: float
    stop: float
    points: int

    def frequencies(self) -> npt.NDArray[np.float64]:
        """Stimulus frequency of each point, Hz."""
        if self.kind == "CW":
            return np.full(self.points, self.start)
        return np.linspace(self.start, self.stop, self.points)

    def commands(self, chan: int) -> list[str]:
        """SCPI that sets this stimulus on channel ``chan``."""
        if self.kind == "CW":
            return [
                f"SENS{chan}:SWE:TYPE CW",
                f"SENS{chan}:FREQ:CW {format_value(self.start)}",
                f"SENS{chan}:SWE:POIN {self.points}",
            ]
        return [  # start before stop works from any previous [start, stop]
            f"SENS{chan}:SWE:TYPE LIN",
            f"SENS{chan}:SWE:POIN {self.points}",
            f"SENS{chan}:FREQ:STAR {format_value(self.start)}",
            f"SENS{chan}:FREQ:STOP {format_value(self.stop)}",
        ]


@dataclass(frozen=True)
class FrequencyOffset:
    """Receivers at ``f * multiplier / divisor + offset`` for stimulus ``f`` (FOM).

    Attributes
    ----------
    multiplier, divisor : float
        Coupling coefficients (divisor > 0, multiplier != 0).
    offset : float
        Hz.
    """

    multiplier: float = 1.0
    divisor: float = 1.0
    offset: float = 0.0

    def receiver(self, stimulus: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Receiver frequencies for the given stimulus frequencies, Hz."""
        return stimulus * (self.multiplier / self.divisor) + self.offset

    @property
    def is_identity(self) -> bool:
        """True if the receivers are at the stimulus frequency."""
        return self.multiplier == self.divisor and self.offset == 0.0

    def commands(self, chan: int) -> list[str]:
        """SCPI: source range 2 and receiver range 3 coupled to the primary, FOM on."""
        return [
            f"SENS{chan}:FOM:RANG2:COUP ON",
            f"SENS{chan}:FOM:RANG2:FREQ:MULT 1",
            f"SENS{chan}:FOM:RANG2:FREQ:DIV 1",
            f"SENS{chan}:FOM:RANG2:FREQ:OFFS 0",
            f"SENS{chan}:FOM:RANG3:COUP ON",
            f"SENS{chan}:FOM:RANG3:FREQ:MULT {format_value(self.multiplier)}",
            f"SENS{chan}:FOM:RANG3:FREQ:DIV {format_value(self.divisor)}",
            f"SENS{chan}:FOM:RANG3:FREQ:OFFS {format_value(self.offset)}",
            f"SENS{chan}:FOM ON",
        ]


@dataclass(frozen=True)
class ChannelConfig:
    """Everything that defines an acquisition on one channel (the cache key).

    Attributes
    ----------
    params : tuple of (int, int)
        (out, in) S-parameters, in the order the data are returned.
    stimulus : Stimulus or None
        None: keep the channel's own sweep settings (the driver's sweep
        channel, set through its parameters).
    offset : FrequencyOffset or None
        Frequency-offset mode; None turns it off.
    if_bandwidth : float or None
        Hz; None keeps the channel's setting.
    powers : tuple of (int, float)
        (port, dBm) source powers to set; empty keeps the channel's.
    averages : int or None
        Averaging factor (1: off); None keeps the channel's setting.
    electrical_delay : float or None
        Applied to newly defined measurements, s; None leaves them at 0.
    """

    params: tuple[tuple[int, int], ...]
    stimulus: Stimulus | None = None
    offset: FrequencyOffset | None = None
    if_bandwidth: float | None = None
    powers: tuple[tuple[int, float], ...] = ()
    averages: int | None = None
    electrical_delay: float | None = None

    @property
    def source_ports(self) -> int:
        """Number of distinct driven ports: passes per sweep."""
        return len({i for _, i in self.params})


@dataclass(frozen=True)
class PreparedChannel:
    """A configured channel, ready for acquisitions.

    Attributes
    ----------
    channel : int
    config : ChannelConfig
    stimulus, receiver : numpy.ndarray
        Stimulus and receiver frequency of every point, Hz.
    pass_time : float
        One pass over the points (``SENSe:SWEep:TIME?``), s.
    sweeps : int
        Sweeps per acquisition (the averaging factor, or 1).
    trigger : str
        The trigger message, ending in ``*OPC?;:SYST:ERR?``.
    reads : tuple of str
        One ``SDATA`` query per parameter.
    """

    channel: int
    config: ChannelConfig
    stimulus: npt.NDArray[np.float64]
    receiver: npt.NDArray[np.float64]
    pass_time: float
    sweeps: int
    trigger: str
    reads: tuple[str, ...]

    @property
    def duration(self) -> float:
        """Expected duration of one acquisition, s (P source ports cost P passes)."""
        return self.sweeps * max(1, self.config.source_ports) * self.pass_time


def measurement_name(chan: int, param: tuple[int, int]) -> str:
    """Name of a measurement the driver defines: ``"labnr_c1_S21"``."""
    return f"labnr_c{chan}_{sparameter_label(*param)}"


def _measurement_commands(
    pna: PNATransport, chan: int, config: ChannelConfig
) -> tuple[list[str], list[str]]:
    """Commands that leave exactly ``config.params`` defined on ``chan``, and their names.

    Existing measurements of a wanted S-parameter are reused; the others are
    deleted after the new ones are defined (a channel whose last measurement
    is deleted disappears with its settings).
    """
    existing = channel_catalog(pna, chan)
    by_param: dict[tuple[int, int], str] = {}
    for known, param in existing:
        if param is not None:
            by_param.setdefault(param, known)
    names: list[str] = []
    define: list[str] = []
    for param in config.params:
        name = by_param.get(param)
        if name is None:
            name = measurement_name(chan, param)
            define.append(f"CALC{chan}:PAR:DEF:EXT '{name}','{sparameter_label(*param)}'")
            if config.electrical_delay:
                define.append(f"CALC{chan}:PAR:SEL '{name}'")
                define.append(f"CALC{chan}:CORR:EDEL {format_value(config.electrical_delay)}")
        names.append(name)
    delete = [f"CALC{chan}:PAR:DEL '{n}'" for n, _ in existing if n not in names]
    return define + delete, names


def _settings_commands(pna: PNATransport, chan: int, config: ChannelConfig) -> list[str]:
    # Frequency offset off while the stimulus changes (the receivers of the old
    # coupling could leave the hardware range), back on at the end if wanted.
    cmds = [f"SENS{chan}:FOM OFF"] if pna.fom_available else []
    if config.stimulus is not None:
        cmds += config.stimulus.commands(chan)
    if config.offset is not None:
        cmds += config.offset.commands(chan)
    if config.if_bandwidth is not None:
        cmds.append(f"SENS{chan}:BAND {format_value(config.if_bandwidth)}")
    if config.powers:
        cmds.append(f"SOUR{chan}:POW:COUP OFF")
        cmds += [f"SOUR{chan}:POW{p} {format_value(level)}" for p, level in config.powers]
    if config.averages is not None:
        if config.averages > 1:
            cmds += [f"SENS{chan}:AVER ON", f"SENS{chan}:AVER:COUN {config.averages}"]
        else:
            cmds.append(f"SENS{chan}:AVER OFF")
    cmds += [f"SENS{chan}:SWE:MODE HOLD", "FORM REAL,64", "FORM:BORD SWAP"]
    return cmds


def prepare(pna: PNATransport, chan: int, config: ChannelConfig) -> PreparedChannel:
    """Configure channel ``chan`` for ``config`` and read back what acquisitions need.

    Raises :class:`~labnr.drivers.keysight_pna.PNAError` (through
    ``pna.check_errors``) with the analyzer's error text if any command failed.
    """
    cmds, names = _measurement_commands(pna, chan, config)
    cmds += _settings_commands(pna, chan, config)
    for cmd in cmds:
        pna.write_raw(cmd)
    pna.check_errors(f"configuring channel {chan} for {_describe(config)}")
    numbers = _measurement_numbers(pna, chan, names)
    averaging, count, pass_time = _read_timing(pna, chan)
    sweeps = count if averaging and count > 1 else 1
    if sweeps > 1:  # one trigger runs the whole average (QCoDeS convention)
        pna.write_raw(f"SENS{chan}:SWE:GRO:COUN {sweeps}")
        pna.check_errors(f"setting the group count of channel {chan} to {sweeps}")
        trigger = f"SENS{chan}:AVER:CLE;:SENS{chan}:SWE:MODE GRO;*OPC?;:SYST:ERR?"
    else:
        trigger = f"INIT{chan};*OPC?;:SYST:ERR?"
    if config.stimulus is not None:
        stimulus = config.stimulus.frequencies()
    else:
        stimulus = read_stimulus(pna, chan)
    receiver = config.offset.receiver(stimulus) if config.offset is not None else stimulus
    reads = tuple(f"CALC{chan}:MEAS{m}:DATA:SDATA?" for m in numbers)
    return PreparedChannel(chan, config, stimulus, receiver, pass_time, sweeps, trigger, reads)


def _measurement_numbers(pna: PNATransport, chan: int, names: Sequence[str]) -> list[int]:
    query = ";:".join(f"CALC{chan}:PAR:SEL '{n}';:CALC{chan}:PAR:MNUM?" for n in names)
    reply = pna.ask_raw(query).split(";")
    if len(reply) != len(names):
        pna.check_errors(f"reading the measurement numbers of channel {chan}")
        raise ValueError(f"measurement numbers of {list(names)}: unexpected reply {reply!r}")
    return [parse_int(r, f"measurement number of {n!r}") for r, n in zip(reply, names, strict=True)]


def _read_timing(pna: PNATransport, chan: int) -> tuple[bool, int, float]:
    reply = pna.ask_raw(f"SENS{chan}:AVER?;:SENS{chan}:AVER:COUN?;:SENS{chan}:SWE:TIME?")
    state, count, seconds = parse_fields(reply, 3, f"averaging and sweep time of channel {chan}")
    what = f"channel {chan}"
    return (
        parse_bool(state, f"{what} averaging state"),
        parse_int(count, f"{what} averaging factor"),
        parse_number(seconds, f"{what} sweep time"),
    )


def _describe(config: ChannelConfig) -> str:
    labels = ",".join(sparameter_label(*p) for p in config.params)
    text = labels
    if config.stimulus is not None:
        s = config.stimulus
        text += f" {s.kind} {s.start:.9g}..{s.stop:.9g} Hz x {s.points}"
    if config.offset is not None:
        o = config.offset
        text += f", receivers f*{o.multiplier:g}/{o.divisor:g}{o.offset:+.9g} Hz"
    return text


def acquire(pna: PNATransport, prep: PreparedChannel) -> npt.NDArray[np.complex128]:
    """Trigger one acquisition of a prepared channel and read every parameter.

    Returns
    -------
    numpy.ndarray
        Complex ``SDATA``, shape (points, nparams), in ``prep.config.params`` order.
    """
    with pna.sweep_timeout(prep.duration):
        reply = pna.ask_raw(prep.trigger)
    opc, _, error = reply.partition(";")
    if not is_no_error(error):
        pna.check_errors(f"sweeping channel {prep.channel}", first_reply=error)
    npoints = prep.stimulus.size
    out = np.empty((npoints, len(prep.reads)), dtype=np.complex128)
    for k, cmd in enumerate(prep.reads):
        values = pna.ask_block(cmd)
        if values.size != 2 * npoints:
            pna.check_errors(f"reading {cmd}")
            raise ValueError(
                f"{cmd}: {values.size} values, expected {2 * npoints} (re, im for {npoints} points)"
            )
        out[:, k] = values.view(np.complex128)
    if opc.strip().lstrip("+") != "1":
        raise ValueError(f"{prep.trigger}: *OPC? answered {opc!r}, expected 1")
    return out


def sweep_timeout_seconds(base: float | None, duration: float) -> float:
    """Visa timeout for a sweep of ``duration`` s given the base timeout (None: infinite)."""
    if base is None or math.isinf(base):
        return math.inf
    return base + SWEEP_TIMEOUT_FACTOR * duration


class PNAError(RuntimeError):
    """The analyzer reported errors (``SYST:ERR?``) after a command.

    Attributes
    ----------
    errors : tuple of str
        The analyzer's error replies, oldest first, e.g. ``'-222,"Data out of range"'``.
    context : str
        What the driver was doing.
    """

    def __init__(self, instrument: str, context: str, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        self.context = context
        super().__init__(
            f"{instrument} reported {len(self.errors)} error(s) after {context}: "
            + "; ".join(self.errors)
        )


class OffsetTransmission(NamedTuple):
    """Result of :meth:`KeysightPNAXBase.transmission_offset`.

    Attributes
    ----------
    stimulus : numpy.ndarray
        Frequencies driven at the input port, Hz, shape (points,).
    receiver : numpy.ndarray
        Frequencies received at the output port, Hz, shape (points,).
    data : numpy.ndarray
        Complex transmission b_out(f_receiver) / a_in(f_stimulus), shape (points,).
    """

    stimulus: npt.NDArray[np.float64]
    receiver: npt.NDArray[np.float64]
    data: npt.NDArray[np.complex128]


class PointReader:
    """A prepared point read: the same few S-parameters at one frequency, repeatedly.

    Made by :meth:`KeysightPNAXBase.point_reader`; its configuration (including
    IF bandwidth, powers and averaging) is frozen at creation. The first read
    configures a point channel; later reads only trigger and read data, as long
    as the channel was not reassigned to another configuration meanwhile.

    Attributes
    ----------
    config : ChannelConfig
        The channel configuration (cache key).
    """

    def __init__(self, instrument: PNATransportMixin, config: ChannelConfig) -> None:
        self._instrument = instrument
        self.config = config

    @property
    def params(self) -> tuple[tuple[int, int], ...]:
        """The (out, in) S-parameters, in the order of the returned values."""
        return self.config.params

    def read_trace(self) -> npt.NDArray[np.complex128]:
        """One acquisition: complex data of every point, shape (points, nparams)."""
        return self._instrument._read_points(self.config)

    def read(self) -> npt.NDArray[np.complex128]:
        """One acquisition, averaged over its points: shape (nparams,)."""
        return self.read_trace().mean(axis=0)

    __call__ = read
