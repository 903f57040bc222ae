"""Emulator of a Keysight PNA-X N5242B (4 ports, 10 MHz - 26.5 GHz, options 080 and 419).

SCPI subset (long form; upper case = short form; ``<c>`` channel, ``<m>``
measurement number, ``<p>`` port, ``<r>`` FOM range, ``<w>``/``<t>`` window/trace):

Measurements and data (CALCulate acts on the channel's *selected* measurement)
    CALCulate<c>:PARameter[:DEFine]:EXTended "<name>","S21"   create (S-parameters only)
    CALCulate<c>:PARameter[:DEFine] "<name>",S21[,<port>]      superseded form
    CALCulate<c>:PARameter:CATalog[:EXTended]?                 "name,S21,name2,S11"
    CALCulate<c>:PARameter:DELete[:NAME] "<name>" | :DELete:ALL
    CALCulate<c>:PARameter:SELect "<name>"[,fast] | SELect?
    CALCulate<c>:PARameter:MNUMber[:SELect] <m>[,fast] | MNUMber?
    CALCulate<c>:PARameter:MODify[:EXTended] "S12" | TNUMber? | WNUMber?
    CALCulate<c>:DATA? FDATa|SDATa|RDATa                         SDATA: re,im pairs
    CALCulate<c>:FORMat MLOGarithmic|MLINear|PHASe|UPHase|REAL|IMAGinary|POLar|SMITh|GDELay|SWR
    CALCulate<c>:CORRection:EDELay[:TIME] <s>                  electrical delay
    CALCulate<c>:X[:VALues]?                                   stimulus of the selected meas.
    CALCulate<c>:MEASure<m>:DATA:SDATa? | :FDATa? | :X[:VALues]? | :FORMat
    CALCulate<c>:MEASure<m>:CORRection:EDELay[:TIME] | :PARameter?
Stimulus and receivers (see :mod:`labnr.sim.instruments.pna_channel`)
    SENSe<c>:FREQuency:STARt|STOP|CENTer|SPAN|CW|FIXed, SENSe<c>:X[:VALues]?
    SENSe<c>:SWEep:POINts | :TYPE LINear|LOGarithmic|CW | :MODE HOLD|CONTinuous|SINGle|GROups
    SENSe<c>:SWEep:GROups:COUNt | :TIME[:STOP] | :TIME:AUTO
    SENSe<c>:BANDwidth|BWIDth[:RESolution], SENSe<c>:AVERage[:STATe] | :COUNt | :CLEar
    SOURce<c>:POWer<p>[:LEVel][:IMMediate][:AMPLitude] <dBm>, SOURce<c>:POWer:COUPle
    SENSe<c>:FOM[:STATe] | :CATalog? | :COUNt? | :RNUM? "<name>" | :DISPlay:SELect "<name>"
    SENSe<c>:FOM:RANGe<r>:FREQuency:MULTiplier|DIVisor|OFFSet|STARt|STOP|CW
    SENSe<c>:FOM:RANGe<r>:COUPled | :SWEep:TYPE | :NAME?   (1 Primary, 2 Source,
                                                            3 Receivers, 4 Source2)
Triggering, output, transfer format, display, system
    INITiate<c>[:IMMediate], INITiate:CONTinuous, TRIGger[:SEQuence]:SOURce
    OUTPut[:STATe] ON|OFF (RF power), FORMat[:DATA] REAL,32|REAL,64|ASCii,0,
    FORMat:BORDer NORMal|SWAPped
    DISPlay:WINDow<w>[:STATe] | :CATalog? | :TRACe<t>:FEED "<name>" | :TRACe<t>:DELete
    DISPlay:MEASure<m>:FEED <w> | :DELete, DISPlay:TRACe<m>[:STATe], DISPlay:CATalog?
    SYSTem:PRESet, SYSTem:FPReset, SYSTem:CHANnels:CATalog?, plus the IEEE 488.2 common
    commands, SYSTem:ERRor? and SIMulation:FAULt of :class:`SCPIInstrument`.

Behaviour
---------
- Preset (``*RST``, ``SYSTem:PRESet``): channel 1, measurement ``CH1_S11_1``
  (S11, number 1) in window 1, 10 MHz - 26.5 GHz, 201 points, IF bandwidth
  100 kHz (the PNA-X factory preset), 0 dBm on all ports (coupled), sweep
  mode CONTinuous, averaging off. ``*RST`` also sets ``FORMat ASCii,0``.
- A triggered sweep (``INIT`` in any mode, ``SENS:SWE:MODE SING`` or ``GRO``)
  builds ONE :class:`VNARequest` for all measurements of the channel and calls
  :meth:`LabBackend.vna_acquire` once; ``*OPC?`` then answers 1 (the emulator
  is synchronous). ``SING``/``GRO`` end in ``HOLD``. In ``CONTinuous`` mode a
  data query takes a new sweep when at least one acquisition time has passed
  on the virtual clock since the last one (a continuously sweeping analyzer).
- Sweep time: :class:`~labnr.sim.instruments.pna_state.SweepTimeModel`;
  ``SENS:SWE:TIME?`` is one pass, an acquisition takes sweeps x source ports
  passes.
- Averaging (sweep averaging): a batch of G triggered sweeps is requested with
  ``averages = b = min(G, count)`` and mixed with the previous average with
  weights ``b`` and ``w = min(done, count - b)``: the exact mean while fewer
  than ``count`` sweeps were taken since ``AVERage:CLEar``, then the PNA's
  formula ``new/n + old (n - 1)/n`` (for b = 1).
- Electrical delay only affects formatted data (``FDATA``); ``SDATA`` is read
  before the delay block of the PNA data map, as on the real analyzer.
- Data stay in double precision (the real PNA: 32-bit); without a backend it measures zeros.
- With RF off (``OUTP OFF``) the request carries ``-inf`` dBm on every port.
"""

from __future__ import annotations

import math
import re
from typing import ClassVar

import numpy as np

from labnr.sim.instruments.backend import LabBackend, VNARequest
from labnr.sim.instruments.pna_channel import PNAChannelCommands
from labnr.sim.instruments.pna_state import (
    FORMATS,
    ChannelState,
    Measurement,
    PNALimits,
    PNAState,
    SweepTimeModel,
    format_trace,
)
from labnr.sim.instruments.scpi import (
    SCPICall,
    SCPIError,
    SCPIInstrument,
    inject_nan,
    mnemonic_forms,
    scpi_query,
    scpi_set,
)

__all__ = ["PNAXEmulator"]

_SPARAM_RE = re.compile(r"^S(\d)_?(\d)$|^S(\d+)_(\d+)$")
_FORMAT_CHOICES = (
    "MLOGarithmic",
    "MLINear",
    "PHASe",
    "UPHase",
    "REAL",
    "IMAGinary",
    "POLar",
    "SMITh",
    "GDELay",
    "SWR",
)


class PNAXEmulator(PNAChannelCommands, SCPIInstrument):
    """Keysight PNA-X N5242B emulator (see the module docstring for the SCPI subset).

    Parameters
    ----------
    name : str
        Instrument name (``VNARequest.instrument`` and ``backend.notify``).
    backend : LabBackend, optional
        The simulated lab; None measures zeros on a private clock.
    limits : PNALimits, optional
        Hardware limits (default: N5242B with options 080 and 419).
    timing : SweepTimeModel, optional
        Sweep-time model.

    Attributes
    ----------
    state : PNAState
        The whole instrument state.
    limits : PNALimits
    timing : SweepTimeModel
    """

    manufacturer: ClassVar[str] = "Keysight Technologies"
    model: ClassVar[str] = "N5242B"
    serial: ClassVar[str] = "MY59100001"
    firmware: ClassVar[str] = "A.15.20.07"
    options: ClassVar[str] = '"080,419"'

    def __init__(
        self,
        name: str = "pna",
        backend: LabBackend | None = None,
        limits: PNALimits | None = None,
        timing: SweepTimeModel | None = None,
    ) -> None:
        self.limits = limits if limits is not None else PNALimits()
        self.timing = timing if timing is not None else SweepTimeModel()
        self.state = PNAState()
        super().__init__(name, backend)
        self.reset()

    # ------------------------------------------------------------------ presets

    def reset(self) -> None:
        """``*RST``: preset state (channel 1 with ``CH1_S11_1`` in window 1), ASCii format."""
        self._preset(keep_format=False)

    def _preset(self, keep_format: bool) -> None:
        old = self.state
        self.state = PNAState()
        if keep_format:
            self.state.data_format, self.state.byte_order = old.data_format, old.byte_order
        self._new_channel(1)
        self._define(1, "CH1_S11_1", "S11")
        self.state.windows[1] = {1: 1}

    @scpi_set("SYSTem:PRESet", nargs=0)
    def _system_preset(self, call: SCPICall) -> None:
        self._preset(keep_format=True)
        self.changed()

    @scpi_set("SYSTem:FPReset", nargs=0)
    def _factory_preset(self, call: SCPICall) -> None:
        self._preset(keep_format=True)
        self.state.measurements.clear()
        self.state.selected.clear()
        self.state.windows.clear()
        self.changed()

    @scpi_query("SYSTem:CHANnels:CATalog")
    def _q_channels(self, call: SCPICall) -> str:
        return '"' + ",".join(str(c) for c in sorted(self.state.channels)) + '"'

    # ------------------------------------------------------------- measurements

    def _define(self, cnum: int, name: str, parameter: str) -> Measurement:
        if not name or name in self.state.measurements:
            raise SCPIError(-224, f"measurement name {name!r} is empty or already exists")
        out_port, in_port = self._parse_sparameter(parameter)
        self._new_channel(cnum)
        meas = Measurement(name, self.state.free_number(), cnum, parameter, out_port, in_port)
        self.state.measurements[name] = meas
        self.state.selected.setdefault(cnum, name)
        return meas

    def _parse_sparameter(self, parameter: str) -> tuple[int, int]:
        match = _SPARAM_RE.match(parameter.strip())
        if match is None:
            raise SCPIError(
                -224, f'parameter {parameter!r}: only S-parameters like "S21" are emulated'
            )
        out_port, in_port = (int(g) for g in match.groups() if g is not None)
        for port in (out_port, in_port):
            self._port(port)
        return out_port, in_port

    def _selected(self, cnum: int) -> Measurement:
        name = self.state.selected.get(cnum)
        if name is None or name not in self.state.measurements:
            raise SCPIError(-221, f"no measurement selected on channel {cnum} (CALC{cnum}:PAR:SEL)")
        return self.state.measurements[name]

    def _by_number(self, mnum: int) -> Measurement:
        meas = self.state.by_number(mnum)
        if meas is None:
            raise SCPIError(-114, f"measurement number {mnum} does not exist")
        return meas

    def _by_name(self, name: str) -> Measurement:
        meas = self.state.measurements.get(name)
        if meas is None:
            names = ",".join(self.state.measurements) or "none"
            raise SCPIError(-224, f"measurement {name!r} not found (existing: {names})")
        return meas

    def _delete(self, meas: Measurement) -> None:
        del self.state.measurements[meas.name]
        for traces in self.state.windows.values():
            for tnum in [t for t, m in traces.items() if m == meas.number]:
                del traces[tnum]
        if self.state.selected.get(meas.channel) == meas.name:
            rest = self.state.in_channel(meas.channel)
            if rest:
                self.state.selected[meas.channel] = rest[0].name
            else:
                del self.state.selected[meas.channel]

    @scpi_set("CALCulate#:PARameter[:DEFine]:EXTended", nargs=2)
    def _define_extended(self, call: SCPICall) -> None:
        self._define(call.suffix(), call.string(0), call.string(1))

    @scpi_set("CALCulate#:PARameter[:DEFine]", nargs=(2, 3))
    def _define_superseded(self, call: SCPICall) -> None:
        self._define(call.suffix(), call.string(0), call.string(1))

    @scpi_query("CALCulate#:PARameter:CATalog[:EXTended]")
    def _q_catalog(self, call: SCPICall) -> str:
        self._channel(call.suffix())
        items = [f"{m.name},{m.parameter}" for m in self.state.in_channel(call.suffix())]
        return '"' + (",".join(items) if items else "NO CATALOG") + '"'

    @scpi_set("CALCulate#:PARameter:DELete[:NAME]", nargs=1)
    def _delete_name(self, call: SCPICall) -> None:
        self._delete(self._by_name(call.string(0)))

    @scpi_set("CALCulate#:PARameter:DELete:ALL", nargs=0)
    def _delete_all(self, call: SCPICall) -> None:
        for meas in list(self.state.measurements.values()):
            self._delete(meas)

    @scpi_set("CALCulate#:PARameter:SELect", nargs=(1, 2))
    def _select(self, call: SCPICall) -> None:
        meas = self._by_name(call.string(0))
        if meas.channel != call.suffix():
            raise SCPIError(
                -224, f"measurement {meas.name!r} is on channel {meas.channel}, not {call.suffix()}"
            )
        self.state.selected[meas.channel] = meas.name

    @scpi_query("CALCulate#:PARameter:SELect")
    def _q_select(self, call: SCPICall) -> str:
        return f'"{self._selected(call.suffix()).name}"'

    @scpi_set("CALCulate#:PARameter:MNUMber[:SELect]", nargs=(1, 2))
    def _select_number(self, call: SCPICall) -> None:
        meas = self._by_number(call.integer(0, low=1, name="measurement number"))
        if meas.channel != call.suffix():
            raise SCPIError(
                -224, f"measurement {meas.number} is on channel {meas.channel}, not {call.suffix()}"
            )
        self.state.selected[meas.channel] = meas.name

    @scpi_query("CALCulate#:PARameter:MNUMber[:SELect]")
    def _q_select_number(self, call: SCPICall) -> int:
        return self._selected(call.suffix()).number

    @scpi_set("CALCulate#:PARameter:MODify[:EXTended]", nargs=1)
    def _modify(self, call: SCPICall) -> None:
        meas = self._selected(call.suffix())
        meas.out_port, meas.in_port = self._parse_sparameter(call.string(0))
        meas.parameter, meas.data = call.string(0), None

    @scpi_query("CALCulate#:PARameter:TNUMber|WNUMber")
    def _q_trace_window(self, call: SCPICall) -> int:
        meas = self._selected(call.suffix())
        for wnum, traces in sorted(self.state.windows.items()):
            for tnum, mnum in traces.items():
                if mnum == meas.number:
                    return tnum if call.header.split(":")[-1].startswith("T") else wnum
        raise SCPIError(-221, f"measurement {meas.name!r} is not displayed")

    # ---------------------------------------------------------------- triggers

    @scpi_set("SENSe#:SWEep:MODE", nargs=1)
    def _set_sweep_mode(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        choice = call.choice(0, ("HOLD", "CONTinuous", "SINGle", "GROups"), name="sweep mode")
        mode = ch.sweep_mode = mnemonic_forms(choice)[0]
        if mode in ("SING", "GRO"):
            try:
                self._acquire(ch, 1 if mode == "SING" else ch.group_count)
            finally:
                ch.sweep_mode = "HOLD"

    @scpi_query("SENSe#:SWEep:MODE")
    def _q_sweep_mode(self, call: SCPICall) -> str:
        return self._channel(call.suffix()).sweep_mode

    @scpi_set("INITiate#[:IMMediate]", nargs=0)
    def _initiate(self, call: SCPICall) -> None:
        self._acquire(self._channel(call.suffix()), 1)

    @scpi_set("INITiate:CONTinuous", nargs=1)
    def _set_init_cont(self, call: SCPICall) -> None:
        self.state.trigger_source = "IMM" if call.boolean(0) else "MAN"

    @scpi_query("INITiate:CONTinuous")
    def _q_init_cont(self, call: SCPICall) -> bool:
        return self.state.trigger_source != "MAN"

    @scpi_set("TRIGger[:SEQuence]:SOURce", nargs=1)
    def _set_trigger_source(self, call: SCPICall) -> None:
        choice = call.choice(0, ("EXTernal", "IMMediate", "MANual"), name="trigger source")
        self.state.trigger_source = choice[:3]

    @scpi_query("TRIGger[:SEQuence]:SOURce")
    def _q_trigger_source(self, call: SCPICall) -> str:
        return self.state.trigger_source

    @scpi_set("OUTPut[:STATe]", nargs=1)
    def _set_output(self, call: SCPICall) -> None:
        state = call.boolean(0)
        if state != self.state.rf_on:
            self.state.rf_on = state
            self.changed()

    @scpi_query("OUTPut[:STATe]")
    def _q_output(self, call: SCPICall) -> bool:
        return self.state.rf_on

    # ------------------------------------------------------------- acquisition

    def _acquire(self, ch: ChannelState, sweeps: int) -> None:
        """Take ``sweeps`` triggered sweeps of channel ``ch`` in one backend request."""
        stim, recv = ch.stimulus_and_receiver_frequencies()
        self._check_frequencies(ch, stim, recv)
        measurements = self.state.in_channel(ch.number)
        params = tuple(dict.fromkeys((m.out_port, m.in_port) for m in measurements))
        batch = min(sweeps, ch.average_count) if ch.averaging else 1
        powers = {p: (v if self.state.rf_on else -math.inf) for p, v in ch.port_power_dbm.items()}
        sweep_time = self.timing.acquisition_time(
            self._pass_time(ch), sweeps, len({p[1] for p in params})
        )
        request = VNARequest(
            instrument=self.name,
            stimulus_frequencies=stim,
            receiver_frequencies=recv,
            parameters=params,
            port_power_dbm=powers,
            if_bandwidth=ch.if_bandwidth,
            averages=batch,
            sweep_time=sweep_time,
        )
        if self.backend is not None and params:
            results = self.backend.vna_acquire(request)
        else:
            self.clock.advance(sweep_time)
            results = {p: np.zeros(ch.points, dtype=complex) for p in params}
        old_weight = min(ch.averages_done, ch.average_count - batch) if ch.averaging else 0
        x_values = self._x_axis(ch)
        for meas in measurements:
            new = np.array(results[(meas.out_port, meas.in_port)], dtype=np.complex128)
            if new.shape != (ch.points,):
                raise SCPIError(
                    -310,
                    f"backend returned shape {new.shape} for "
                    f"S{meas.out_port}{meas.in_port}, expected ({ch.points},)",
                )
            if old_weight > 0 and meas.data is not None and meas.data.shape == new.shape:
                new = (meas.data * old_weight + new * batch) / (old_weight + batch)
            meas.data, meas.x_values, meas.receiver_frequencies = new, x_values, recv
        ch.averages_done += sweeps
        ch.last_sweep_end = self.clock.now

    def _x_axis(self, ch: ChannelState) -> np.ndarray:
        """x-axis values: frequencies, or time from 0 to the sweep time for a CW sweep."""
        if ch.sweep_type == "CW":
            return np.linspace(0.0, self._pass_time(ch), ch.points)
        return ch.x_axis()

    def _complex_data(self, meas: Measurement) -> np.ndarray:
        """Current complex data of a measurement (takes a sweep in CONTinuous mode)."""
        ch = self._channel(meas.channel)
        if ch.sweep_mode == "CONT":
            sources = len({m.in_port for m in self.state.in_channel(ch.number)})
            period = self.timing.acquisition_time(self._pass_time(ch), 1, sources)
            if (
                meas.data is None
                or ch.last_sweep_end is None
                or self.clock.now - ch.last_sweep_end >= period
            ):
                self._acquire(ch, 1)
        if meas.data is None:
            raise SCPIError(
                -230,
                f"measurement {meas.name!r} has no data: trigger a sweep "
                f"first (INIT{ch.number} or SENS{ch.number}:SWE:MODE SING)",
            )
        return meas.data

    def _data_reply(self, values: np.ndarray) -> bytes | np.ndarray:
        """Real values in the current ``FORMat``: a block for REAL, an array for ASCii."""
        fmt = self.state.data_format
        if fmt == "ASC":
            return values  # the base class formats it (exact repr) and applies the NaN fault
        if self.take_nan():
            values = inject_nan(values)
        order = ">" if self.state.byte_order == "NORM" else "<"
        return values.astype(order + ("f8" if fmt == "REAL64" else "f4"), copy=False).tobytes()

    def _read(self, meas: Measurement, what: str) -> bytes | np.ndarray:
        data = self._complex_data(meas)
        if what in ("SDAT", "RDAT"):
            return self._data_reply(data.view(np.float64))
        freqs = meas.receiver_frequencies
        assert freqs is not None
        return self._data_reply(format_trace(data, meas.format, freqs, meas.electrical_delay))

    @scpi_query("CALCulate#:DATA")
    def _q_data(self, call: SCPICall) -> bytes | np.ndarray:
        call.expect_args(1)
        what = call.choice(0, ("FDATa", "SDATa", "RDATa"), name="data type")[:4].upper()
        return self._read(self._selected(call.suffix()), what)

    @scpi_query("CALCulate#:MEASure#:DATA:SDATa|FDATa|RDATa")
    def _q_meas_data(self, call: SCPICall) -> bytes | np.ndarray:
        return self._read(self._by_number(call.suffix(1)), call.header.split(":")[-1][:4])

    def _x_values(self, meas: Measurement) -> bytes | np.ndarray:
        values = meas.x_values
        if values is None or meas.data is None:
            values = self._x_axis(self._channel(meas.channel))
        return self._data_reply(values)

    @scpi_query("CALCulate#:X[:VALues]")
    def _q_x(self, call: SCPICall) -> bytes | np.ndarray:
        return self._x_values(self._selected(call.suffix()))

    @scpi_query("CALCulate#:MEASure#:X[:VALues]")
    def _q_meas_x(self, call: SCPICall) -> bytes | np.ndarray:
        return self._x_values(self._by_number(call.suffix(1)))

    # --------------------------------------------------- per-measurement settings

    def _set_format(self, meas: Measurement, call: SCPICall) -> None:
        choice = call.choice(0, _FORMAT_CHOICES, name="format")
        meas.format = next(f for f in FORMATS if choice.upper().startswith(f))

    @scpi_set("CALCulate#:FORMat", nargs=1)
    def _set_calc_format(self, call: SCPICall) -> None:
        self._set_format(self._selected(call.suffix()), call)

    @scpi_query("CALCulate#:FORMat")
    def _q_calc_format(self, call: SCPICall) -> str:
        return self._selected(call.suffix()).format

    @scpi_set("CALCulate#:MEASure#:FORMat", nargs=1)
    def _set_meas_format(self, call: SCPICall) -> None:
        self._set_format(self._by_number(call.suffix(1)), call)

    @scpi_query("CALCulate#:MEASure#:FORMat")
    def _q_meas_format(self, call: SCPICall) -> str:
        return self._by_number(call.suffix(1)).format

    def _edelay(self, call: SCPICall) -> float:
        return call.number(0, low=-10.0, high=10.0, name="electrical delay", unit=" s")

    @scpi_set("CALCulate#:CORRection:EDELay[:TIME]", nargs=1)
    def _set_edelay(self, call: SCPICall) -> None:
        self._selected(call.suffix()).electrical_delay = self._edelay(call)

    @scpi_query("CALCulate#:CORRection:EDELay[:TIME]")
    def _q_edelay(self, call: SCPICall) -> float:
        return self._selected(call.suffix()).electrical_delay

    @scpi_set("CALCulate#:MEASure#:CORRection:EDELay[:TIME]", nargs=1)
    def _set_meas_edelay(self, call: SCPICall) -> None:
        self._by_number(call.suffix(1)).electrical_delay = self._edelay(call)

    @scpi_query("CALCulate#:MEASure#:CORRection:EDELay[:TIME]")
    def _q_meas_edelay(self, call: SCPICall) -> float:
        return self._by_number(call.suffix(1)).electrical_delay

    @scpi_query("CALCulate#:MEASure#:PARameter")
    def _q_meas_parameter(self, call: SCPICall) -> str:
        return f'"{self._by_number(call.suffix(1)).parameter}"'

    # ------------------------------------------------------------ data transfer

    @scpi_set("FORMat[:DATA]", nargs=(1, 2))
    def _set_data_format(self, call: SCPICall) -> None:
        kind = call.choice(0, ("REAL", "ASCii"), name="data format")
        if kind == "ASCii":
            self.state.data_format = "ASC"
            return
        bits = call.integer(1, name="bits") if call.has_arg(1) else 32
        if bits not in (32, 64):
            raise SCPIError(-224, f"FORMat REAL,{bits}: only REAL,32 and REAL,64 exist")
        self.state.data_format = f"REAL{bits}"

    @scpi_query("FORMat[:DATA]")
    def _q_data_format(self, call: SCPICall) -> str:
        fmt = self.state.data_format
        return "ASC,0" if fmt == "ASC" else f"REAL,{fmt[4:]}"

    @scpi_set("FORMat:BORDer", nargs=1)
    def _set_byte_order(self, call: SCPICall) -> None:
        self.state.byte_order = call.choice(0, ("NORMal", "SWAPped"), name="byte order")[:4]

    @scpi_query("FORMat:BORDer")
    def _q_byte_order(self, call: SCPICall) -> str:
        return self.state.byte_order

    # ------------------------------------------------------------------ display

    def _feed(self, wnum: int, tnum: int, meas: Measurement) -> None:
        traces = self.state.windows.setdefault(wnum, {})
        if tnum in traces:
            raise SCPIError(-224, f"window {wnum} already has trace {tnum}")
        for other in self.state.windows.values():
            for t in [t for t, m in other.items() if m == meas.number]:
                del other[t]
        traces[tnum] = meas.number

    @scpi_set("DISPlay:WINDow#[:STATe]", nargs=1)
    def _set_window(self, call: SCPICall) -> None:
        if call.boolean(0):
            self.state.windows.setdefault(call.suffix(), {})
        else:
            self.state.windows.pop(call.suffix(), None)

    @scpi_query("DISPlay:WINDow#[:STATe]")
    def _q_window(self, call: SCPICall) -> bool:
        return call.suffix() in self.state.windows

    @scpi_query("DISPlay:WINDow#:CATalog")
    def _q_window_catalog(self, call: SCPICall) -> str:
        traces = self.state.windows.get(call.suffix())
        if traces is None:
            raise SCPIError(-114, f"window {call.suffix()} does not exist")
        return '"' + (",".join(str(t) for t in sorted(traces)) or "EMPTY") + '"'

    @scpi_query("DISPlay:CATalog")
    def _q_display_catalog(self, call: SCPICall) -> str:
        return '"' + (",".join(str(w) for w in sorted(self.state.windows)) or "EMPTY") + '"'

    @scpi_set("DISPlay:WINDow#:TRACe#:FEED", nargs=1)
    def _feed_trace(self, call: SCPICall) -> None:
        self._feed(call.suffix(0), call.suffix(1), self._by_name(call.string(0)))

    @scpi_set("DISPlay:WINDow#:TRACe#:DELete", nargs=0)
    def _delete_trace(self, call: SCPICall) -> None:
        self.state.windows.get(call.suffix(0), {}).pop(call.suffix(1), None)

    @scpi_set("DISPlay:MEASure#:FEED", nargs=1)
    def _feed_measure(self, call: SCPICall) -> None:
        wnum = call.integer(0, low=1, high=500, name="window")
        traces = self.state.windows.get(wnum, {})
        self._feed(wnum, max(traces, default=0) + 1, self._by_number(call.suffix()))

    @scpi_set("DISPlay:MEASure#:DELete", nargs=0)
    def _delete_measure_trace(self, call: SCPICall) -> None:
        mnum = self._by_number(call.suffix()).number
        for traces in self.state.windows.values():
            for t in [t for t, m in traces.items() if m == mnum]:
                del traces[t]

    @scpi_set("DISPlay:TRACe#[:STATe]", nargs=1)
    def _set_trace_state(self, call: SCPICall) -> None:
        meas = self._by_number(call.suffix())
        shown = self._q_trace_state(call)
        if call.boolean(0) and not shown:
            self._feed(1, max(self.state.windows.get(1, {}), default=0) + 1, meas)
        elif not call.boolean(0):
            self._delete_measure_trace(call)

    @scpi_query("DISPlay:TRACe#[:STATe]")
    def _q_trace_state(self, call: SCPICall) -> bool:
        mnum = self._by_number(call.suffix()).number
        return any(mnum in traces.values() for traces in self.state.windows.values())
