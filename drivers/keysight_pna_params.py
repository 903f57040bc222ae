"""Parameters, validators, port channels and reply parsers of the Keysight PNA-X driver.

Used by :mod:`labnr.drivers.keysight_pna`; nothing here talks to an instrument
except through the instrument object it belongs to. The model limits
(:class:`PNALimits`, :data:`PNA_MODEL_LIMITS`, :data:`PNA_IF_BANDWIDTHS`) live in
:mod:`labnr.drivers.keysight_pna_limits` and are re-exported here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from qcodes import validators as vals
from qcodes.instrument import InstrumentChannel
from qcodes.parameters import Parameter, ParameterWithSetpoints, create_on_off_val_mapping

from .keysight_pna_limits import PNA_IF_BANDWIDTHS, PNA_MODEL_LIMITS, PNALimits
from .keysight_pna_power import PortPowerRange, limit_port_power
from .parsing import ReplyError, parse_error, parse_int, parse_number

if TYPE_CHECKING:
    from .keysight_pna import KeysightPNAXBase

__all__ = [
    "PNA_IF_BANDWIDTHS",
    "PNA_MODEL_LIMITS",
    "FrequencyAxis",
    "PNALimits",
    "PNAParameter",
    "PNAPort",
    "PermittedValues",
    "PNAParameterMixin",
    "SParameterTrace",
    "channel_catalog",
    "describe_instrument",
    "error_code",
    "format_value",
    "parse_catalog",
    "parse_sparameter",
    "sparameter_label",
]

_SPARAM_RE = re.compile(r"^S(\d)(\d)$|^S(\d{1,3})_(\d{1,3})$", re.IGNORECASE | re.ASCII)


def describe_instrument(instrument: Any) -> str:
    """``"KeysightN5242B 'vna'"``: class and name, for error messages."""
    return f"{type(instrument).__name__} {getattr(instrument, 'name', '?')!r}"


def format_value(value: float) -> str:
    """A number as sent in SCPI: the shortest text that round-trips the float."""
    return repr(float(value))


class PermittedValues(vals.Validator[float]):
    """A number equal (to 1e-9 relative) to one of a fixed set, e.g. the valid IF bandwidths.

    Parameters
    ----------
    values : sequence of float
        The permitted values.
    unit : str
        Unit shown in the error message.
    """

    def __init__(self, values: Sequence[float], unit: str = "") -> None:
        self._values = tuple(sorted(float(v) for v in values))
        self._unit = f" {unit}" if unit else ""
        self._valid_values = self._values

    def validate(self, value: float, context: str = "") -> None:
        """Raise ``ValueError`` unless ``value`` is one of the permitted values."""
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise TypeError(f"{value!r} is not a number; {context}")
        if not any(math.isclose(value, v, rel_tol=1e-9) for v in self._values):
            shown = ", ".join(f"{v:g}" for v in self._values)
            raise ValueError(f"{value!r} is invalid: must be one of {shown}{self._unit}; {context}")

    def __repr__(self) -> str:
        return f"<PermittedValues {self._values[0]:g}..{self._values[-1]:g}{self._unit}>"


class PNAParameter(Parameter):
    """A :class:`~qcodes.parameters.Parameter` whose validation errors name everything.

    A rejected value raises (before anything is sent) a message with the
    instrument (class and name), the parameter, the value with its unit and
    the validator's description of what is allowed.
    """

    def validate(self, value: Any) -> None:
        """Validate ``value``; re-raise failures with instrument and parameter named."""
        try:
            super().validate(value)
        except (TypeError, ValueError) as err:
            unit = f" {self.unit}" if self.unit else ""
            raise type(err)(
                f"{describe_instrument(self.root_instrument)}: cannot set {self.name} "
                f"({self.full_name}) to {value!r}{unit}: {err}"
            ) from None


class PNAPort(InstrumentChannel):
    """One test port of the analyzer: its source power in the driver's sweep channel.

    Parameters
    ----------
    parent : KeysightPNAXBase
        The analyzer.
    name : str
        Submodule name, ``"port<n>"``.
    port : int
        Port number, 1-based.
    setter : callable
        ``setter(command)`` writes a configuration command and checks the error queue.
    """

    def __init__(
        self,
        parent: KeysightPNAXBase,
        name: str,
        port: int,
        setter: Callable[[str], None],
    ) -> None:
        super().__init__(parent, name)
        self.port = port
        lim = parent.limits
        chan = parent.sweep_channel

        def set_power(level: float) -> None:
            setter(f"SOUR{chan}:POW{port} {format_value(level)}")

        #: Validator of ``power``: the source range, up to the port's stimulus limit.
        self.power_range = PortPowerRange(lim.min_power, lim.max_power, port)
        self.power: PNAParameter = self.add_parameter(
            "power",
            parameter_class=PNAParameter,
            label=f"Port {port} source power",
            unit="dBm",
            get_cmd=f"SOUR{chan}:POW{port}?",
            get_parser=parse_number,
            set_cmd=set_power,
            vals=self.power_range,
            docstring=(
                f"Source power of port {port} in the sweep channel (channel {chan}), dBm. "
                "Port powers are uncoupled by the driver, so this sets port "
                f"{port} only. Allowed: {lim.min_power:g} dBm up to the port's limit "
                f"(max_power; {lim.max_power:g} dBm until limit_power lowers it)."
            ),
        )

    @property
    def max_power(self) -> float:
        """The port's stimulus limit, dBm (no power above it is ever sent)."""
        return self.power_range.limit

    def limit_power(self, max_dbm: float) -> float:
        """Lower the port's stimulus limit; see :func:`~.keysight_pna_power.limit_port_power`."""
        return limit_port_power(self, max_dbm)


class FrequencyAxis(Parameter):
    """Stimulus frequencies of the sweep channel, Hz (the setpoints of the S traces).

    Returns the axis of the last configured acquisition without I/O, else asks
    the analyzer (``SENSe:X?``).
    """

    def get_raw(self) -> npt.NDArray[np.float64]:
        """Frequency axis, Hz, shape (points,)."""
        # qcodes types it InstrumentBase | None; it is always the analyzer here
        instrument: KeysightPNAXBase = self.instrument  # type: ignore[assignment]
        return instrument._sweep_axis()


class SParameterTrace(ParameterWithSetpoints):
    """One complex S-parameter trace of the sweep channel (one sweep per ``get``).

    Parameters
    ----------
    name : str
        ``"S21"`` etc.
    out_port, in_port : int
        Receiver and source ports.
    **kwargs
        Passed to :class:`~qcodes.parameters.ParameterWithSetpoints`.
    """

    def __init__(self, name: str, out_port: int, in_port: int, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.out_port = out_port
        self.in_port = in_port

    def get_raw(self) -> npt.NDArray[np.complex128]:
        """Sweep once with only this S-parameter defined and return it, shape (points,)."""
        # qcodes types it InstrumentBase | None; it is always the analyzer here
        instrument: KeysightPNAXBase = self.instrument  # type: ignore[assignment]
        _, data = instrument.sweep([(self.out_port, self.in_port)])
        return data[:, 0]


def sparameter_label(out_port: int, in_port: int) -> str:
    """``"S21"``, or ``"S12_3"`` when a port number has two digits."""
    if out_port < 10 and in_port < 10:
        return f"S{out_port}{in_port}"
    return f"S{out_port}_{in_port}"


def parse_sparameter(text: str) -> tuple[int, int] | None:
    """(out, in) of an S-parameter name like ``"S21"`` or ``"S12_3"``; None otherwise."""
    if not isinstance(text, str):
        return None
    match = _SPARAM_RE.match(text.strip().strip("'\""))
    if match is None:
        return None
    out_port, in_port = (int(g) for g in match.groups() if g is not None)
    return out_port, in_port


def parse_catalog(reply: str) -> list[tuple[str, tuple[int, int] | None]]:
    """Measurements of a ``CALC:PAR:CAT:EXT?`` reply as (name, (out, in) or None).

    ``"NO CATALOG"`` gives an empty list; measurements that are not
    S-parameters (receiver ratios etc.) have None.
    """
    if not isinstance(reply, str):
        raise ReplyError("measurement catalog", "expected text", reply)
    text = reply.strip().strip('"')
    if not text or text.upper() == "NO CATALOG":
        return []
    items = text.split(",")
    if len(items) % 2:
        raise ReplyError("measurement catalog", "does not hold name,parameter pairs", reply)
    return [(items[k], parse_sparameter(items[k + 1])) for k in range(0, len(items), 2)]


def channel_catalog(pna: Any, chan: int) -> list[tuple[str, tuple[int, int] | None]]:
    """Measurements of channel ``chan`` as (name, (out, in) or None); [] if it does not exist."""
    channels = pna.ask_raw("SYST:CHAN:CAT?").strip().strip('"').split(",")
    if str(chan) not in {c.strip() for c in channels}:
        return []
    return parse_catalog(pna.ask_raw(f"CALC{chan}:PAR:CAT:EXT?"))


def error_code(reply: str) -> int | None:
    """The code of a ``SYSTem:ERRor?`` reply (``'-222,"Data out of range"'``); None if garbled."""
    try:
        return parse_error(reply)[0]
    except ReplyError:
        return None


class PNAParameterMixin:
    """The ``_add_*_parameters`` helpers of :class:`~labnr.drivers.keysight_pna.KeysightPNAXBase`.

    Every settable parameter acts on the driver's sweep channel, validates
    before sending, checks the error queue after sending and drops the sweep
    channel's acquisition cache.
    """

    limits: PNALimits
    sweep_channel: int
    _electrical_delay: float
    add_parameter: Callable[..., Any]
    ask_raw: Callable[[str], str]
    write_raw: Callable[[str], None]
    _set_sweep_setting: Callable[[str], None]
    check_errors: Callable[..., None]
    parameters: dict[str, Any]
    ports: Sequence[PNAPort]

    def _add_frequency_parameters(self) -> None:
        lim, c = self.limits, self.sweep_channel
        band = vals.Numbers(lim.min_frequency, lim.max_frequency)
        span = vals.Numbers(0.0, lim.max_frequency - lim.min_frequency)
        linked = ("start", "stop", "center", "span")
        docs = {
            "start": "Start of the sweep channel's linear sweep, Hz. Raising it above stop "
            "moves stop with it (as the analyzer does).",
            "stop": "Stop of the sweep channel's linear sweep, Hz. Lowering it below start "
            "moves start with it.",
            "center": "Center of the sweep, Hz (keeps the span, clipped to the frequency range).",
            "span": "Span of the sweep, Hz (keeps the center, clipped to the frequency range).",
        }
        for name, key, validator in (
            ("start", "STAR", band), ("stop", "STOP", band),
            ("center", "CENT", band), ("span", "SPAN", span),
        ):  # fmt: skip
            self.add_parameter(
                name,
                parameter_class=PNAParameter,
                label=f"Sweep {name}",
                unit="Hz",
                get_cmd=f"SENS{c}:FREQ:{key}?",
                get_parser=parse_number,
                set_cmd=self._frequency_setter(f"SENS{c}:FREQ:{key}", name, linked),
                vals=validator,
                docstring=docs[name],
            )
        self.add_parameter(
            "points",
            parameter_class=PNAParameter,
            label="Sweep points",
            get_cmd=f"SENS{c}:SWE:POIN?",
            get_parser=parse_int,
            set_cmd=lambda n: self._set_sweep_setting(f"SENS{c}:SWE:POIN {int(n)}"),
            vals=vals.Ints(1, lim.max_points),
            docstring=f"Number of points of the sweep channel (1 to {lim.max_points}).",
        )
        self.add_parameter(
            "frequency",
            parameter_class=FrequencyAxis,
            label="Frequency",
            unit="Hz",
            vals=vals.Arrays(shape=(self._points_now,)),
            snapshot_get=False,
            snapshot_value=False,
            docstring="Stimulus frequencies of the sweep channel, Hz (setpoints of S traces).",
        )

    def _frequency_setter(
        self, header: str, name: str, linked: Sequence[str]
    ) -> Callable[[float], None]:
        def set_frequency(value: float) -> None:
            self._set_sweep_setting(f"{header} {format_value(value)}")
            for other in linked:  # the analyzer keeps start <= stop: all four may change
                if other != name:
                    self.parameters[other].cache.invalidate()

        return set_frequency

    def _points_now(self) -> int:
        return int(self.parameters["points"].cache.get())

    def _add_receiver_parameters(self) -> None:
        lim, c = self.limits, self.sweep_channel
        on_off = create_on_off_val_mapping(on_val="1", off_val="0")
        self.add_parameter(
            "if_bandwidth",
            parameter_class=PNAParameter,
            label="IF bandwidth",
            unit="Hz",
            get_cmd=f"SENS{c}:BAND?",
            get_parser=parse_number,
            set_cmd=lambda bw: self._set_sweep_setting(f"SENS{c}:BAND {format_value(bw)}"),
            vals=PermittedValues(lim.if_bandwidths, "Hz"),
            docstring="IF (receiver) bandwidth of the sweep channel, Hz; one of the analyzer's "
            "values (no silent rounding). Noise scales as sqrt(IF bandwidth).",
        )
        self.add_parameter(
            "averaging",
            parameter_class=PNAParameter,
            label="Sweep averaging",
            get_cmd=f"SENS{c}:AVER?",
            set_cmd=lambda v: self._set_sweep_setting(f"SENS{c}:AVER {v}"),
            val_mapping=on_off,
            docstring="Sweep averaging on the sweep channel. When on, every acquisition "
            "clears the average and takes `averages` sweeps (group trigger).",
        )
        self.add_parameter(
            "averages",
            parameter_class=PNAParameter,
            label="Averaging factor",
            get_cmd=f"SENS{c}:AVER:COUN?",
            get_parser=parse_int,
            set_cmd=lambda n: self._set_sweep_setting(f"SENS{c}:AVER:COUN {int(n)}"),
            vals=vals.Ints(1, lim.max_averages),
            docstring="Number of sweeps averaged when `averaging` is on "
            f"(1 to {lim.max_averages}).",
        )
        self.add_parameter(
            "sweep_time",
            label="Sweep time",
            unit="s",
            get_cmd=f"SENS{c}:SWE:TIME?",
            get_parser=parse_number,
            docstring="Duration of one pass over the points (one source port), s. An "
            "acquisition driving P ports with averaging factor n takes n * P passes.",
        )
        self.add_parameter(
            "electrical_delay",
            parameter_class=PNAParameter,
            label="Electrical delay",
            unit="s",
            get_cmd=lambda: parse_number(self.ask_raw(f"CALC{c}:CORR:EDEL?"), "electrical delay"),
            set_cmd=self._set_electrical_delay,
            vals=vals.Numbers(-10.0, 10.0),
            docstring="Electrical delay of every measurement of the sweep channel, s. It "
            "removes a line's phase slope from formatted (displayed, FDATA) data only; "
            "smatrix/sweep read SDATA, which comes before the delay in the analyzer's "
            "data map and is not changed by it.",
        )
        self.add_parameter(
            "rf_output",
            parameter_class=PNAParameter,
            label="RF output",
            get_cmd="OUTP?",
            set_cmd=lambda v: self._set_sweep_setting(f"OUTP {v}"),
            val_mapping=on_off,
            docstring="RF power of all sources on (True) or off.",
        )

    def _set_electrical_delay(self, seconds: float) -> None:
        c = self.sweep_channel
        for name, _ in channel_catalog(self, c):
            self.write_raw(f"CALC{c}:PAR:SEL '{name}'")
            self.write_raw(f"CALC{c}:CORR:EDEL {format_value(seconds)}")
        self.check_errors(f"setting the electrical delay of channel {c} to {seconds!r} s")
        self._electrical_delay = float(seconds)

    def _add_trace_parameters(self) -> None:
        n = self.limits.n_ports
        frequency = self.parameters["frequency"]
        for out_port in range(1, n + 1):
            for in_port in range(1, n + 1):
                label = sparameter_label(out_port, in_port)
                self.add_parameter(
                    label,
                    parameter_class=SParameterTrace,
                    out_port=out_port,
                    in_port=in_port,
                    label=label,
                    unit="",
                    setpoints=(frequency,),
                    vals=vals.Arrays(shape=(self._points_now,), valid_types=(np.complexfloating,)),
                    docstring=f"Complex {label} (SDATA) of the sweep channel; each get sweeps "
                    f"once with only {label} defined. Ratio b{out_port}/a{in_port}, unitless.",
                )

    def limit_power(self, port: int, max_dbm: float) -> float:
        """Lower test port ``port``'s stimulus limit to ``max_dbm`` dBm (never raised).

        Every power the driver sends to that port is then checked against it;
        a present power above it is lowered to it. Returns the port's power
        read back, dBm. See :mod:`labnr.drivers.keysight_pna_power`.
        """
        ports = self.ports
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= len(ports):
            raise ValueError(f"{describe_instrument(self)}: limit_power: port {port!r} is not "
                             f"one of 1..{len(ports)}")  # fmt: skip
        return ports[port - 1].limit_power(max_dbm)

    def trace(self, out_port: int, in_port: int) -> SParameterTrace:
        """The ``S<out><in>`` trace parameter.

        Parameters
        ----------
        out_port, in_port : int
            Port numbers.

        Returns
        -------
        SParameterTrace
        """
        return self.parameters[sparameter_label(out_port, in_port)]
