"""Channel-scoped commands of the PNA-X emulator: stimulus, receiver, source power, FOM.

Mixed into :class:`labnr.sim.instruments.pna.PNAXEmulator`; the command list
with real long/short forms is at the top of :mod:`labnr.sim.instruments.pna`.
Setting a stimulus value outside the analyzer's limits raises -222 "Data out
of range" and keeps the old value; changing the stimulus grid (frequencies,
points, sweep type, FOM) discards the measured data of the channel, so that
data and x axis never disagree.
"""

from __future__ import annotations

import math

import numpy as np

from labnr.sim.instruments.pna_state import (
    FOM_RANGE_NAMES,
    ChannelState,
    FOMRange,
    PNALimits,
    PNAState,
    SweepTimeModel,
    round_if_bandwidth,
)
from labnr.sim.instruments.scpi import SCPICall, SCPIError, scpi_query, scpi_set


def _hz(value: float) -> str:
    return f"{value:.6g} Hz"


class PNAChannelCommands:
    """SENSe/SOURce command handlers and channel helpers (mixin)."""

    state: PNAState
    limits: PNALimits
    timing: SweepTimeModel

    # ------------------------------------------------------------------ helpers

    def _channel(self, cnum: int) -> ChannelState:
        """Existing channel ``cnum``; -114 if it does not exist."""
        ch = self.state.channels.get(cnum)
        if ch is None:
            existing = ",".join(str(c) for c in sorted(self.state.channels)) or "none"
            raise SCPIError(-114, f"channel {cnum} does not exist (existing: {existing})")
        return ch

    def _new_channel(self, cnum: int) -> ChannelState:
        """Channel ``cnum``, created with preset settings if needed."""
        if not 1 <= cnum <= self.limits.max_channels:
            raise SCPIError(-114, f"channel {cnum} outside 1..{self.limits.max_channels}")
        if cnum not in self.state.channels:
            lim = self.limits
            ch = ChannelState(number=cnum, start=lim.f_min, stop=lim.f_max)
            ch.port_power_dbm = {p: 0.0 for p in range(1, lim.n_ports + 1)}
            for rng in ch.fom.ranges.values():
                rng.start, rng.stop = lim.f_min, lim.f_max
            self.state.channels[cnum] = ch
        return self.state.channels[cnum]

    def _invalidate(self, ch: ChannelState) -> None:
        """Discard measured data of a channel whose stimulus grid changed."""
        for meas in self.state.in_channel(ch.number):
            meas.data = None
        ch.last_sweep_end = None
        ch.averages_done = 0

    def _frequency(self, call: SCPICall, name: str) -> float:
        return call.number(0, low=self.limits.f_min, high=self.limits.f_max, name=name, unit=" Hz")

    def _pass_time(self, ch: ChannelState) -> float:
        """Time of one pass over the channel's points (``SENS:SWE:TIME?``), s."""
        fastest = self.timing.pass_time(ch.points, ch.if_bandwidth)
        return fastest if ch.sweep_time_auto else max(fastest, ch.sweep_time_set)

    def _check_frequencies(self, ch: ChannelState, stim: np.ndarray, recv: np.ndarray) -> None:
        """-221 if frequency offset puts the source or receivers outside the hardware range."""
        lim = self.limits
        for label, freqs in (("Source", stim), ("Receivers", recv)):
            lo, hi = float(freqs.min()), float(freqs.max())
            if lo < lim.f_min or hi > lim.f_max:
                raise SCPIError(
                    -221,
                    f"channel {ch.number}: FOM range {label!r} spans {_hz(lo)}..{_hz(hi)}, "
                    f"outside [{_hz(lim.f_min)}, {_hz(lim.f_max)}]",
                )

    # ---------------------------------------------------------------- frequency

    @scpi_set("SENSe#:FREQuency:STARt", nargs=1)
    def _set_start(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        ch.start = self._frequency(call, "start")
        ch.stop = max(ch.stop, ch.start)
        self._invalidate(ch)

    @scpi_query("SENSe#:FREQuency:STARt")
    def _q_start(self, call: SCPICall) -> float:
        return self._channel(call.suffix()).start

    @scpi_set("SENSe#:FREQuency:STOP", nargs=1)
    def _set_stop(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        ch.stop = self._frequency(call, "stop")
        ch.start = min(ch.start, ch.stop)
        self._invalidate(ch)

    @scpi_query("SENSe#:FREQuency:STOP")
    def _q_stop(self, call: SCPICall) -> float:
        return self._channel(call.suffix()).stop

    def _set_center_span(self, ch: ChannelState, center: float, span: float) -> None:
        half = min(0.5 * span, center - self.limits.f_min, self.limits.f_max - center)
        ch.start, ch.stop = center - half, center + half
        self._invalidate(ch)

    @scpi_set("SENSe#:FREQuency:CENTer", nargs=1)
    def _set_center(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        self._set_center_span(ch, self._frequency(call, "center"), ch.span)

    @scpi_query("SENSe#:FREQuency:CENTer")
    def _q_center(self, call: SCPICall) -> float:
        return self._channel(call.suffix()).center

    @scpi_set("SENSe#:FREQuency:SPAN", nargs=1)
    def _set_span(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        lim = self.limits
        span = call.number(0, low=0.0, high=lim.f_max - lim.f_min, name="span", unit=" Hz")
        self._set_center_span(ch, ch.center, span)

    @scpi_query("SENSe#:FREQuency:SPAN")
    def _q_span(self, call: SCPICall) -> float:
        return self._channel(call.suffix()).span

    @scpi_set("SENSe#:FREQuency:CW|FIXed", nargs=1)
    def _set_cw(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        ch.cw_frequency = self._frequency(call, "CW frequency")
        if ch.sweep_type == "CW":
            self._invalidate(ch)

    @scpi_query("SENSe#:FREQuency:CW|FIXed")
    def _q_cw(self, call: SCPICall) -> float:
        return self._channel(call.suffix()).cw_frequency

    @scpi_query("SENSe#:X[:VALues]")
    def _q_sense_x(self, call: SCPICall) -> bytes | np.ndarray:
        ch = self._channel(call.suffix())
        return self._data_reply(self._x_axis(ch))

    # ------------------------------------------------------------------- sweep

    @scpi_set("SENSe#:SWEep:POINts", nargs=1)
    def _set_points(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        ch.points = call.integer(0, low=1, high=self.limits.max_points, name="points")
        self._invalidate(ch)

    @scpi_query("SENSe#:SWEep:POINts")
    def _q_points(self, call: SCPICall) -> int:
        return self._channel(call.suffix()).points

    @scpi_set("SENSe#:SWEep:TYPE", nargs=1)
    def _set_sweep_type(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        ch.sweep_type = call.choice(0, ("LINear", "LOGarithmic", "CW"), name="sweep type")[:3]
        self._invalidate(ch)

    @scpi_query("SENSe#:SWEep:TYPE")
    def _q_sweep_type(self, call: SCPICall) -> str:
        return self._channel(call.suffix()).sweep_type

    @scpi_set("SENSe#:SWEep:TIME[:STOP]", nargs=1)
    def _set_sweep_time(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        fastest = self.timing.pass_time(ch.points, ch.if_bandwidth)
        value = call.number(0, low=0.0, high=1e5, name="sweep time", unit=" s")
        if str(call.arg(0)).strip().upper() in ("MIN", "MINIMUM"):
            ch.sweep_time_auto = True
        else:
            ch.sweep_time_auto, ch.sweep_time_set = False, max(value, fastest)

    @scpi_query("SENSe#:SWEep:TIME[:STOP]")
    def _q_sweep_time(self, call: SCPICall) -> float:
        return self._pass_time(self._channel(call.suffix()))

    @scpi_set("SENSe#:SWEep:TIME:AUTO", nargs=1)
    def _set_sweep_time_auto(self, call: SCPICall) -> None:
        self._channel(call.suffix()).sweep_time_auto = call.boolean(0)

    @scpi_query("SENSe#:SWEep:TIME:AUTO")
    def _q_sweep_time_auto(self, call: SCPICall) -> bool:
        return self._channel(call.suffix()).sweep_time_auto

    @scpi_set("SENSe#:SWEep:GROups:COUNt", nargs=1)
    def _set_group_count(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        ch.group_count = call.integer(0, low=1, high=2_000_000, name="group count")

    @scpi_query("SENSe#:SWEep:GROups:COUNt")
    def _q_group_count(self, call: SCPICall) -> int:
        return self._channel(call.suffix()).group_count

    # --------------------------------------------------- receiver and averaging

    @scpi_set("SENSe#:BANDwidth|BWIDth[:RESolution]", nargs=1)
    def _set_ifbw(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        ch.if_bandwidth = round_if_bandwidth(
            call.number(0, low=1.0, high=15e6, name="IF bandwidth", unit=" Hz")
        )

    @scpi_query("SENSe#:BANDwidth|BWIDth[:RESolution]")
    def _q_ifbw(self, call: SCPICall) -> float:
        return self._channel(call.suffix()).if_bandwidth

    @scpi_set("SENSe#:AVERage[:STATe]", nargs=1)
    def _set_averaging(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        ch.averaging, ch.averages_done = call.boolean(0), 0

    @scpi_query("SENSe#:AVERage[:STATe]")
    def _q_averaging(self, call: SCPICall) -> bool:
        return self._channel(call.suffix()).averaging

    @scpi_set("SENSe#:AVERage:COUNt", nargs=1)
    def _set_average_count(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        ch.average_count = call.integer(0, low=1, high=self.limits.max_averages, name="count")
        ch.averages_done = 0

    @scpi_query("SENSe#:AVERage:COUNt")
    def _q_average_count(self, call: SCPICall) -> int:
        return self._channel(call.suffix()).average_count

    @scpi_set("SENSe#:AVERage:CLEar", nargs=0)
    def _clear_average(self, call: SCPICall) -> None:
        self._channel(call.suffix()).averages_done = 0

    # ------------------------------------------------------------- source power

    @scpi_set("SOURce#:POWer#[:LEVel][:IMMediate][:AMPLitude]", nargs=1)
    def _set_power(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix(0))
        port = self._port(call.suffix(1))
        lim = self.limits
        level = call.number(0, low=lim.power_min, high=lim.power_max, name="power", unit=" dBm")
        ports = ch.port_power_dbm if ch.power_coupled else (port,)
        for p in list(ports):
            ch.port_power_dbm[p] = level

    @scpi_query("SOURce#:POWer#[:LEVel][:IMMediate][:AMPLitude]")
    def _q_power(self, call: SCPICall) -> float:
        return self._channel(call.suffix(0)).port_power_dbm[self._port(call.suffix(1))]

    @scpi_set("SOURce#:POWer#:COUPle", nargs=1)
    def _set_power_couple(self, call: SCPICall) -> None:
        self._channel(call.suffix(0)).power_coupled = call.boolean(0)

    @scpi_query("SOURce#:POWer#:COUPle")
    def _q_power_couple(self, call: SCPICall) -> bool:
        return self._channel(call.suffix(0)).power_coupled

    def _port(self, port: int) -> int:
        if not 1 <= port <= self.limits.n_ports:
            raise SCPIError(-114, f"port {port} outside 1..{self.limits.n_ports}")
        return port

    # ---------------------------------------------------------- frequency offset

    def _fom_range(self, call: SCPICall) -> tuple[ChannelState, int, FOMRange]:
        ch = self._channel(call.suffix(0))
        num = call.suffix(1)
        if num not in ch.fom.ranges:
            raise SCPIError(-114, f"FOM range {num} outside 1..{len(ch.fom.ranges)}")
        return ch, num, ch.fom.ranges[num]

    def _fom_changed(self, ch: ChannelState) -> None:
        if ch.fom.enabled:
            self._invalidate(ch)

    @scpi_set("SENSe#:FOM[:STATe]", nargs=1)
    def _set_fom(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        enable = call.boolean(0)
        if enable:
            primary = ch.primary_frequencies()
            rngs = ch.fom.ranges
            self._check_frequencies(ch, rngs[2].frequencies(primary), rngs[3].frequencies(primary))
        ch.fom.enabled = enable
        self._invalidate(ch)

    @scpi_query("SENSe#:FOM[:STATe]")
    def _q_fom(self, call: SCPICall) -> bool:
        return self._channel(call.suffix()).fom.enabled

    @scpi_set("SENSe#:FOM:RANGe#:FREQuency:MULTiplier|DIVisor|OFFSet", nargs=1)
    def _set_fom_coupling(self, call: SCPICall) -> None:
        ch, num, rng = self._fom_range(call)
        if num == 1:
            raise SCPIError(-221, "the primary FOM range (1) has no coupling coefficients")
        key = call.header.split(":")[-1][:3]
        value = call.number(0, low=-1e12, high=1e12, name="FOM coefficient")
        if not math.isfinite(value) or (key in ("MUL", "DIV") and value == 0.0):
            raise SCPIError(-222, f"FOM range {num} {key}: {value!r} is not allowed")
        if key == "DIV" and value < 0:
            raise SCPIError(-222, f"FOM range {num} divisor {value!r} must be > 0")
        attr = {"MUL": "multiplier", "DIV": "divisor", "OFF": "offset"}[key]
        setattr(rng, attr, value)
        self._fom_changed(ch)

    @scpi_query("SENSe#:FOM:RANGe#:FREQuency:MULTiplier|DIVisor|OFFSet")
    def _q_fom_coupling(self, call: SCPICall) -> float:
        _, _, rng = self._fom_range(call)
        key = call.header.split(":")[-1][:3]
        return {"MUL": rng.multiplier, "DIV": rng.divisor, "OFF": rng.offset}[key]

    @scpi_set("SENSe#:FOM:RANGe#:FREQuency:STARt|STOP|CW|FIXed", nargs=1)
    def _set_fom_frequency(self, call: SCPICall) -> None:
        ch, num, rng = self._fom_range(call)
        key = call.header.split(":")[-1][:3]
        key = "CW" if key == "FIX" else key
        if num == 1:  # the primary range is the channel's own sweep
            handler = {"STA": self._set_start, "STO": self._set_stop, "CW": self._set_cw}[key]
            handler(SCPICall(call.instrument, call.header, (ch.number,), call.args, False))
            return
        if rng.coupled:
            raise SCPIError(-221, f"FOM range {num} ({rng.name}) is coupled; uncouple it first")
        value = self._frequency(call, f"FOM range {num} frequency")
        setattr(rng, {"STA": "start", "STO": "stop", "CW": "cw"}[key], value)
        self._fom_changed(ch)

    @scpi_query("SENSe#:FOM:RANGe#:FREQuency:STARt|STOP|CW|FIXed")
    def _q_fom_frequency(self, call: SCPICall) -> float:
        ch, num, rng = self._fom_range(call)
        key = call.header.split(":")[-1][:3]
        primary = ch.cw_frequency if key in ("CW", "FIX") else ch.start if key == "STA" else ch.stop
        if num == 1:
            return primary
        if rng.coupled:
            return float(rng.frequencies(np.array([primary]))[0])
        return rng.cw if key in ("CW", "FIX") else rng.start if key == "STA" else rng.stop

    @scpi_set("SENSe#:FOM:RANGe#:COUPled", nargs=1)
    def _set_fom_coupled(self, call: SCPICall) -> None:
        ch, num, rng = self._fom_range(call)
        if num == 1:
            raise SCPIError(-221, "the primary FOM range (1) cannot be coupled to itself")
        rng.coupled = call.boolean(0)
        self._fom_changed(ch)

    @scpi_query("SENSe#:FOM:RANGe#:COUPled")
    def _q_fom_coupled(self, call: SCPICall) -> bool:
        _, num, rng = self._fom_range(call)
        return rng.coupled if num != 1 else False

    @scpi_set("SENSe#:FOM:RANGe#:SWEep:TYPE", nargs=1)
    def _set_fom_sweep_type(self, call: SCPICall) -> None:
        ch, num, rng = self._fom_range(call)
        if num == 1:
            self._set_sweep_type(
                SCPICall(call.instrument, call.header, (ch.number,), call.args, False)
            )
            return
        rng.sweep_type = call.choice(0, ("LINear", "CW"), name="FOM sweep type")[:3]
        self._fom_changed(ch)

    @scpi_query("SENSe#:FOM:RANGe#:SWEep:TYPE")
    def _q_fom_sweep_type(self, call: SCPICall) -> str:
        ch, num, rng = self._fom_range(call)
        return ch.sweep_type if num == 1 else rng.sweep_type

    @scpi_query("SENSe#:FOM:RANGe#:NAME")
    def _q_fom_name(self, call: SCPICall) -> str:
        return f'"{self._fom_range(call)[2].name}"'

    @scpi_query("SENSe#:FOM:CATalog")
    def _q_fom_catalog(self, call: SCPICall) -> str:
        self._channel(call.suffix())
        return '"' + ",".join(FOM_RANGE_NAMES.values()) + '"'

    @scpi_query("SENSe#:FOM:COUNt")
    def _q_fom_count(self, call: SCPICall) -> int:
        return len(self._channel(call.suffix()).fom.ranges)

    @scpi_query("SENSe#:FOM:RNUM")
    def _q_fom_rnum(self, call: SCPICall) -> int:
        ch = self._channel(call.suffix())
        try:
            return ch.fom.range_number(call.string(0))
        except KeyError:
            names = ",".join(FOM_RANGE_NAMES.values())
            raise SCPIError(-224, f"FOM range {call.string(0)!r} is not one of {names}") from None

    @scpi_set("SENSe#:FOM:DISPlay:SELect", nargs=1)
    def _set_fom_display(self, call: SCPICall) -> None:
        ch = self._channel(call.suffix())
        ch.fom.display = self._q_fom_rnum(call)
        for meas in self.state.in_channel(ch.number):
            meas.x_values = None

    @scpi_query("SENSe#:FOM:DISPlay:SELect")
    def _q_fom_display(self, call: SCPICall) -> str:
        ch = self._channel(call.suffix())
        return f'"{ch.fom.ranges[ch.fom.display].name}"'

    # Provided by the emulator class.
    def _x_axis(self, ch: ChannelState) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def _data_reply(self, values: np.ndarray) -> bytes | np.ndarray:  # pragma: no cover
        raise NotImplementedError
