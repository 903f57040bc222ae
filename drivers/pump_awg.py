"""AWG backend of :class:`~labnr.drivers.pumps.MultiTonePump` (Tektronix AWG5208).

Each AWG channel plays the sum of its tones, synthesised exactly by
:mod:`labnr.drivers.pump_synthesis`; channels pairs can drive IQ mixers whose
LO is a CW source. Needs an AWG driver with the interface of
:class:`~labnr.drivers.tektronix_awg5208.TektronixAWG5208Direct`.

**Periodic records.** The pump plans one tone grid :math:`\\Delta f`
(``frequency_resolution``), sample rate :math:`f_s = n\\Delta f` (at or below
``sample_rate``) and record length :math:`L` for all its channels, so every
tone makes whole cycles per record and all channels restart together (their
relative phases are fixed). A requested frequency is quantised to the grid:
``tone.frequency()`` reads back the quantised value,
``pump.requested_frequencies`` keeps the requests, and the change is logged
(``logging``, INFO). Grid, sample rate and record length are read-only
parameters of the pump.

**IQ tones.** A tone on a mixer has an RF frequency
:math:`f = f_{LO} + s\\,f_{IF}` (``sideband`` ``"+"`` or ``"-"``); the IF is
quantised. Its amplitude is the RF amplitude before the mixer's conversion
gain (for an ideal, uncorrected mixer: the amplitude of each of the I and Q
sinusoids), its phase the RF phase relative to the LO's phase. Each mixer
(``pump.<mixer>``) has calibration parameters for the model
:math:`\\mathrm{RF} = \\mathrm{Re}[(I + i(1+\\epsilon)e^{i\\psi}Q)e^{i\\omega_{LO}t}]`
(:mod:`labnr.drivers.pump_synthesis`): ``gain_imbalance``
:math:`\\epsilon` (gain of the mixer's Q branch relative to I) and
``phase_imbalance`` :math:`\\psi` (rad, quadrature error of its Q-branch LO);
the pump predistorts I and Q so that the image sideband vanishes when they
match the mixer. ``i_offset``/``q_offset`` (V) add DC to I and Q to null LO
leakage, and ``lo_frequency`` (Hz) sets the LO source (tones keep their IF, so
their RF moves with it).

**Safety and speed.** A channel's waveform must fit its full scale
(``amplitude_vpp / 2``): the sum of its tone amplitudes (Q predistortion
included) plus its DC offset may not exceed it, whatever the phases, so a lock
changing phases can never clip. A change that would clip raises
:class:`~labnr.drivers.pumps.PumpClipError` before anything is written. Setting
one tone re-synthesises and uploads only its channel(s) (one float32 block per
channel, then one ``SYSTem:ERRor?``): the record length never changes, so
waveforms are overwritten in place.

Config keys (``backend: "awg"``): ``awg``; ``tones: {name: {"channel": n |
"iq": mixer name | {"i", "q", "lo", "sideband", mixer keys...}, "sideband":
"+"|"-", "frequency", "amplitude"=0, "phase"=0}}``; ``limits`` (required for
every tone, V); ``mixers: {name: {"i", "q", "lo", "lo_frequency",
"lo_power", "gain_imbalance", "phase_imbalance", "i_offset", "q_offset"}}``;
``frequency_resolution`` (Hz, default 1 MHz); ``sample_rate`` (default the
AWG's maximum); ``amplitude_vpp`` (float or ``{channel: Vpp}``, default the
channel maximum); ``waveform_prefix`` (default the pump's name). The pump
assumes it owns the AWG's clock (one sample rate per AWG) and its channels.
Construction switches its channels and LOs off, then sets the clock, channel
amplitudes and waveforms.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import qcodes.validators as vals
from qcodes.instrument import Instrument

from labnr.drivers.pump_mixer import IQMixer, _Mixer, parse_mixers
from labnr.drivers.pump_synthesis import (
    RecordPlan,
    iq_components,
    peak_bound,
    plan_record,
    synthesise,
    wrap_phase,
)
from labnr.drivers.pumps import (
    MultiTonePump,
    PumpClipError,
    PumpConfigError,
    check_keys,
    initial_values,
    limits_for,
)

__all__ = ["AWGMultiTonePump", "IQMixer"]

log = logging.getLogger(__name__)

_SIDEBANDS = {"+": 1, "-": -1, "upper": 1, "lower": -1, 1: 1, -1: -1}
_TONE_KEYS = {"channel", "iq", "sideband", "frequency", "amplitude", "phase"}


@dataclass(frozen=True)
class _Tone:
    """State of one tone: where it plays and its grid index."""

    channel: int | None
    mixer: str | None
    sideband: int
    index: int
    amplitude: float
    phase: float
    requested: float


class AWGMultiTonePump(MultiTonePump):
    """Multi-tone pump on an AWG (see the module docstring for config and behaviour).

    Parameters
    ----------
    name : str
        Instrument name.
    awg : Instrument
        A :class:`~labnr.drivers.tektronix_awg5208.TektronixAWG5208Direct`.
    tones, limits, mixers : mapping
        See the module docstring.
    frequency_resolution : float
        Tone (IF) grid, Hz.
    sample_rate : float, optional
        Highest sample rate to use, Sa/s (default: the AWG's maximum).
    amplitude_vpp : float or mapping, optional
        Channel amplitude (Vpp, full scale = Vpp/2), one value or per channel.
    waveform_prefix : str, optional
        Waveform names are ``<prefix>_ch<n>`` (default: ``name``).
    origin : str
        Where the config came from (quoted in errors).
    """

    backend = "awg"

    def __init__(
        self,
        name: str,
        awg: Instrument,
        tones: Mapping[str, Mapping[str, Any]],
        limits: Mapping[str, float],
        mixers: Mapping[str, Mapping[str, Any]] | None = None,
        frequency_resolution: float = 1e6,
        sample_rate: float | None = None,
        amplitude_vpp: float | Mapping[int, float] | None = None,
        waveform_prefix: str | None = None,
        origin: str = "pump config",
        **kwargs: Any,
    ) -> None:
        self.awg = awg
        self._origin = origin
        lim = limits_for(tones, limits, origin)
        self.plan = self._plan(frequency_resolution, sample_rate)
        self._mixers = self._parse_mixers(dict(mixers or {}), tones)
        self._tones, initial = self._parse_tones(tones)
        self._roles = self._channel_roles()
        self._full_scale = self._parse_vpp(amplitude_vpp)
        self._prefix = waveform_prefix or name
        super().__init__(name, **kwargs)
        try:
            self._add_parameters(lim)
            self._validate_initial(initial)
            waves = self._synthesise_all(self._tones, self._mixers)
            self._initialise(waves)
        except Exception:
            self.close()
            raise

    @classmethod
    def from_config(
        cls, name: str, config: Mapping[str, Any], origin: str = "pump config"
    ) -> AWGMultiTonePump:
        """Build from a config dict (see the module docstring)."""
        allowed = {"backend", "awg", "tones", "limits", "mixers", "frequency_resolution"}
        check_keys(config, allowed | {"sample_rate", "amplitude_vpp", "waveform_prefix"}, origin)
        if not config.get("tones"):
            raise PumpConfigError(f"{origin}: tones: at least one tone is needed")
        if config.get("awg") is None:
            raise PumpConfigError(f"{origin}: awg: required (an AWG driver instance)")
        return cls(
            name,
            config["awg"],
            config["tones"],
            config.get("limits", {}),
            mixers=config.get("mixers"),
            frequency_resolution=config.get("frequency_resolution", 1e6),
            sample_rate=config.get("sample_rate"),
            amplitude_vpp=config.get("amplitude_vpp"),
            waveform_prefix=config.get("waveform_prefix"),
            origin=origin,
        )

    # ------------------------------------------------------------------ public
    def waveform_name(self, channel: int) -> str:
        """Name of the waveform this pump plays on ``channel``."""
        return f"{self._prefix}_ch{channel}"

    @property
    def channels(self) -> list[int]:
        """AWG channels this pump drives."""
        return sorted(self._roles)

    @property
    def requested_frequencies(self) -> dict[str, float]:
        """Last requested frequency of each tone, Hz (before quantisation)."""
        return {name: t.requested for name, t in self._tones.items()}

    def waveforms(self) -> dict[int, np.ndarray]:
        """The float32 records this pump plays, per channel (computed, not read back)."""
        return self._synthesise_all(self._tones, self._mixers)

    # ------------------------------------------------------------------ config parsing
    def _plan(self, resolution: float, sample_rate: float | None) -> RecordPlan:
        low, high = self.awg.sample_rate_range
        top = high if sample_rate is None else float(sample_rate)
        if not low <= top <= high:
            raise PumpConfigError(
                f"{self._origin}: sample_rate = {top!r} Sa/s; allowed {low:g}..{high:g} "
                f"({self.awg.name})"
            )
        try:
            return plan_record(
                float(resolution),
                top,
                sample_rate_min=low,
                min_length=self.awg.min_waveform_length,
                max_length=self.awg.max_waveform_length,
            )
        except ValueError as exc:
            raise PumpConfigError(f"{self._origin}: {exc} ({self.awg.name})") from exc

    def _parse_mixers(
        self, mixers: dict[str, Mapping[str, Any]], tones: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, _Mixer]:
        return parse_mixers(mixers, tones, self._origin, self._channel)

    def _parse_tones(
        self, tones: Mapping[str, Mapping[str, Any]]
    ) -> tuple[dict[str, _Tone], dict[str, dict[str, float]]]:
        out, initial = {}, {}
        for name, spec in tones.items():
            where = f"{self._origin}: tones.{name}"
            check_keys(spec, _TONE_KEYS, where)
            values = initial_values(spec, where)
            channel = mixer = None
            sideband = 0
            if ("channel" in spec) == ("iq" in spec):
                raise PumpConfigError(f"{where}: give exactly one of 'channel' or 'iq'")
            if "channel" in spec:
                channel = self._channel(spec["channel"], f"{where}.channel")
            else:
                iq = spec["iq"]
                mixer = f"iq{iq.get('i')}_{iq.get('q')}" if isinstance(iq, Mapping) else iq
                if mixer not in self._mixers:
                    raise PumpConfigError(
                        f"{where}.iq = {iq!r}: no such mixer; mixers are {list(self._mixers)}"
                    )
                side = spec.get("sideband", iq.get("sideband") if isinstance(iq, Mapping) else None)
                if side not in _SIDEBANDS:
                    raise PumpConfigError(f"{where}.sideband = {side!r}; use '+' or '-'")
                sideband = _SIDEBANDS[side]
            f = values["frequency"]
            phase = wrap_phase(values["phase"])
            draft = _Tone(channel, mixer, sideband, 0, values["amplitude"], phase, f)
            out[name] = replace(draft, index=self._grid_index(name, draft, f, where))
            if mixer is not None and self._mixers[mixer].track_lo:
                self._track(mixer, out[name], f)
            initial[name] = {"amplitude": values["amplitude"], "phase": values["phase"]}
        for mixer, state in self._mixers.items():
            users = [n for n, t in out.items() if t.mixer == mixer]
            if state.track_lo and len(users) > 1:
                raise PumpConfigError(
                    f"{self._origin}: mixers.{mixer}.track_lo: the LO can follow one tone "
                    f"only, but tones {users} use this mixer; give each tone its own mixer "
                    "and LO, or set track_lo: false"
                )
        self._check_distinct(out, self._origin)
        return out, initial

    def _track(self, mixer: str, tone: _Tone, frequency: float) -> None:
        """Put the LO where the tone's grid IF lands exactly on ``frequency`` (track_lo)."""
        state = self._mixers[mixer]
        self._mixers[mixer] = replace(
            state, lo_frequency=frequency - tone.sideband * tone.index * self.plan.grid
        )

    def _channel(self, value: Any, where: str) -> int:
        n_channels = int(getattr(self.awg, "num_channels", 8))
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n_channels:
            raise PumpConfigError(f"{where} = {value!r}; an AWG channel 1..{n_channels}")
        return value

    def _channel_roles(self) -> dict[int, tuple[str, str | None]]:
        roles: dict[int, tuple[str, str | None]] = {}

        def claim(ch: int, role: tuple[str, str | None]) -> None:
            if ch in roles and roles[ch] != role:
                raise PumpConfigError(
                    f"{self._origin}: AWG channel {ch} is used as {roles[ch]} and as {role}"
                )
            roles[ch] = role

        for name, mixer in self._mixers.items():
            claim(mixer.i, ("i", name))
            claim(mixer.q, ("q", name))
        for tone in self._tones.values():
            if tone.channel is not None:
                claim(tone.channel, ("direct", None))
        return roles

    def _parse_vpp(self, amplitude_vpp: float | Mapping[int, float] | None) -> dict[int, float]:
        low, high = self.awg.amplitude_range
        out = {}
        for ch in self._roles:
            vpp = amplitude_vpp.get(ch, high) if isinstance(amplitude_vpp, Mapping) else (
                high if amplitude_vpp is None else amplitude_vpp)
            if not low <= float(vpp) <= high:
                raise PumpConfigError(
                    f"{self._origin}: amplitude_vpp for channel {ch} = {vpp!r} Vpp; allowed "
                    f"{low:g}..{high:g} Vpp ({self.awg.name})"
                )
            out[ch] = float(vpp) / 2.0
        return out

    # ------------------------------------------------------------------ parameters
    def _add_parameters(self, limits: Mapping[str, float]) -> None:
        for key, value, unit, label in (
            ("frequency_resolution", self.plan.grid, "Hz", "tone frequency grid"),
            ("sample_rate", self.plan.sample_rate, "Sa/s", "AWG sample rate"),
            ("record_length", self.plan.length, "", "waveform record length"),
        ):
            setattr(self, key, self.add_parameter(
                key, label=label, unit=unit, get_cmd=partial(lambda v: v, value), set_cmd=False))
        for name in self._mixers:
            self.add_submodule(name, IQMixer(self, name))
        for name, tone in self._tones.items():
            chans = [tone.channel] if tone.mixer is None else [
                self._mixers[tone.mixer].i, self._mixers[tone.mixer].q]
            scale = min(self._full_scale[c] for c in chans)
            where = f"{self.awg.name} ch{'/ch'.join(map(str, chans))}"
            if tone.mixer is not None:
                where += f" via LO {self._mixers[tone.mixer].lo.name!r}"
            origin = f"config limits[{name!r}]" if limits[name] <= scale else "channel full scale"
            self._add_tone(name, min(limits[name], scale), origin,  # finite frequencies only:
                           vals.Numbers(0, 1e12), where)  # inf would reach the grid maths

    # ------------------------------------------------------------------ grid and synthesis
    def _grid_index(self, name: str, tone: _Tone, frequency: float, where: str = "") -> int:
        if tone.mixer is None:
            f_if, what = frequency, "frequency"
        else:
            m = self._mixers[tone.mixer]
            lo = m.lo_nominal if m.track_lo else m.lo_frequency
            f_if = tone.sideband * (frequency - lo)
            what = f"IF (sideband {'+' if tone.sideband > 0 else '-'}, LO {lo:.9g} Hz)"
        grid = self.plan.grid
        index = int(round(f_if / grid))
        if not 1 <= index <= self.plan.max_index:
            raise ValueError(
                f"{where or self.name + '.' + name}: frequency {frequency!r} Hz gives "
                f"{what} {f_if:.9g} Hz; allowed {grid:g}..{self.plan.max_index * grid:.9g} Hz "
                f"(grid {grid:g} Hz below Nyquist of {self.plan.sample_rate:g} Sa/s)"
            )
        if abs(index * grid - f_if) > 1e-9 * max(abs(frequency), 1.0):
            log.info("%s: %s quantised from %.9g Hz to %.9g Hz (grid %g Hz)",
                     name, what, f_if, index * grid, grid)
        return index

    def _check_distinct(self, tones: Mapping[str, _Tone], where: str) -> None:
        seen: dict[tuple, str] = {}
        for name, t in tones.items():
            key = (t.channel, t.mixer, t.sideband, t.index)
            if key in seen:
                raise PumpConfigError(
                    f"{where}: tones {seen[key]!r} and {name!r} fall on the same grid "
                    f"frequency ({t.index} x {self.plan.grid:g} Hz) of the same output; "
                    "separate them by at least the grid or use one tone"
                )
            seen[key] = name

    def _components(
        self, channel: int, tones: Mapping[str, _Tone], mixers: Mapping[str, _Mixer]
    ) -> tuple[list[tuple[int, float, float]], float, list[str]]:
        role, mixer_name = self._roles[channel]
        comps, names = [], []
        if role == "direct":
            for name, t in tones.items():
                if t.channel == channel and t.amplitude > 0:
                    comps.append((t.index, t.amplitude, t.phase))
                    names.append(name)
            return comps, 0.0, names
        mixer = mixers[mixer_name]  # type: ignore[index]
        for name, t in tones.items():
            if t.mixer == mixer_name and t.amplitude > 0:
                i_part, q_part = iq_components(t.amplitude, t.phase, t.sideband,
                                               mixer.gain_imbalance, mixer.phase_imbalance)
                comps.append((t.index, *(i_part if role == "i" else q_part)))
                names.append(name)
        return comps, mixer.i_offset if role == "i" else mixer.q_offset, names

    def _synthesise_all(
        self, tones: Mapping[str, _Tone], mixers: Mapping[str, _Mixer], channels: Any = None
    ) -> dict[int, np.ndarray]:
        out = {}
        for ch in sorted(self._roles if channels is None else channels):
            comps, offset, names = self._components(ch, tones, mixers)
            scale = self._full_scale[ch]
            peak = peak_bound(comps, offset)
            if peak > scale * (1 + 1e-12):
                terms = zip(names, comps, strict=True)
                parts = " + ".join(f"{a:.6g} V ({n})" for n, (_, a, _) in terms)
                raise PumpClipError(
                    f"{self.name}: {self.awg.name} channel {ch} would clip: {parts or '0 V'}"
                    f" + |offset| {abs(offset):.6g} V = {peak:.6g} V > full scale {scale:.6g} V "
                    f"(amplitude_vpp {2 * scale:g} Vpp / 2); nothing was written"
                )
            out[ch] = synthesise(self.plan, comps, scale, offset)
        return out

    # ------------------------------------------------------------------ hardware
    def _initialise(self, waves: Mapping[int, np.ndarray]) -> None:
        awg = self.awg
        awg.set_outputs(self.channels, False)
        for mixer in self._mixers.values():
            self._set_lo_status(mixer, False)
        if awg.sample_rate() != self.plan.sample_rate:
            awg.sample_rate(self.plan.sample_rate)
        existing = awg.waveform_names()
        for ch, samples in waves.items():
            awg.channel(ch).awg_amplitude(2.0 * self._full_scale[ch])
            awg.upload_waveform(self.waveform_name(ch), samples, existing=existing)
            awg.assign_waveform(ch, self.waveform_name(ch))
        for mixer in self._mixers.values():
            mixer.lo.frequency(mixer.lo_frequency)
            if mixer.lo_power is not None:
                mixer.lo.power(float(mixer.lo_power))
        awg.check_errors(f"configuring pump {self.name!r}")

    def _upload(self, waves: Mapping[int, np.ndarray]) -> None:
        for ch, samples in waves.items():
            self.awg.write_waveform(self.waveform_name(ch), samples, check=False)
        self.awg.check_errors(f"uploading channel(s) {sorted(waves)} of pump {self.name!r}")

    def _apply(self, changes: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        new = dict(self._tones)
        touched: set[int] = set()
        for name, values in changes.items():
            t = new[name]
            for key, value in values.items():
                if key == "frequency":
                    t = replace(t, index=self._grid_index(name, t, value), requested=value)
                elif key == "amplitude":
                    t = replace(t, amplitude=value)
                else:
                    t = replace(t, phase=wrap_phase(value))
            new[name] = t
            touched |= self._tone_channels(t)
        self._check_distinct(new, self.name)
        self._upload(self._synthesise_all(new, self._mixers, touched))
        self._tones = new
        for name, values in changes.items():
            t = new[name]
            if "frequency" in values and t.mixer is not None and self._mixers[t.mixer].track_lo:
                # the grid IF is set; the LO takes the remainder (< half a grid step)
                self._track(t.mixer, t, float(values["frequency"]))
                state = self._mixers[t.mixer]
                state.lo.frequency(state.lo_frequency)
                self._mixers[t.mixer] = replace(state, lo_frequency=float(state.lo.frequency()))
        return {n: {k: self._read(n, k) for k in v} for n, v in changes.items()}

    def realisable_frequency(self, tone: str, frequency: float) -> float:
        """The frequency ``tone`` would play if set to ``frequency``: on the grid (or exact
        with ``track_lo``). Nothing is written."""
        self.tone(tone)
        t = self._tones[tone]
        index = self._grid_index(tone, t, float(frequency))
        if t.mixer is None:
            return index * self.plan.grid
        m = self._mixers[t.mixer]
        if m.track_lo:
            return float(frequency)
        return m.lo_frequency + t.sideband * index * self.plan.grid

    def amplitude_budgets(self) -> list[tuple[tuple[str, ...], float]]:
        """Per channel shared by several tones: their amplitudes' sum must fit its full scale.

        Conservative: the peak of a sum of tones is at most the sum of their
        amplitudes; an IQ tone's channel amplitude includes the mixer's
        imbalance correction (the larger of its I and Q factors), and the
        channel's DC offset is subtracted from the full scale.
        """
        out = []
        for ch in self.channels:
            role, mixer_name = self._roles[ch]
            names = [n for n, t in self._tones.items() if ch in self._tone_channels(t)]
            if len(names) < 2:
                continue
            offset, factor = 0.0, 1.0
            if role != "direct":
                m = self._mixers[mixer_name]  # type: ignore[index]
                offset = m.i_offset if role == "i" else m.q_offset
                for n in names:
                    for phase in np.linspace(0, np.pi, 7):
                        i_p, q_p = iq_components(1.0, phase, self._tones[n].sideband,
                                                 m.gain_imbalance, m.phase_imbalance)  # fmt: skip
                        factor = max(factor, i_p[0] if role == "i" else q_p[0])
            out.append((tuple(names), (self._full_scale[ch] - abs(offset)) / factor))
        return out

    def _tone_channels(self, tone: _Tone) -> set[int]:
        if tone.mixer is None:
            return {tone.channel}  # type: ignore[arg-type]
        return {self._mixers[tone.mixer].i, self._mixers[tone.mixer].q}

    def _read(self, tone: str, key: str) -> float:
        t = self._tones[tone]
        if key == "amplitude":
            return t.amplitude
        if key == "phase":
            return t.phase
        f_if = t.index * self.plan.grid
        if t.mixer is None:
            return f_if
        return self._mixers[t.mixer].lo_frequency + t.sideband * f_if

    def _switch(self, on: bool) -> None:
        awg = self.awg
        if not on:
            awg.set_outputs(self.channels, False)
            for mixer in self._mixers.values():
                self._set_lo_status(mixer, False)
            awg.check_errors(f"switching pump {self.name!r} off")
            return
        if awg.all_output_off() in (True, "ON", 1, "1"):
            raise RuntimeError(
                f"{self.name}: {awg.name} has its all-outputs-off override on; clear it "
                "deliberately (awg.all_output_off('OFF')) before switching the pump on"
            )
        for mixer in self._mixers.values():
            self._set_lo_status(mixer, True)
        awg.set_outputs(self.channels, True)
        if awg.run_state() != "Running":
            awg.run()
        awg.check_errors(f"switching pump {self.name!r} on")

    def _set_lo_status(self, mixer: IQMixer, on: bool) -> None:
        """Switch an LO and read it back (which also waits until the source took it)."""
        mixer.lo.status(on)
        if mixer.lo.status.get() is not on:
            raise RuntimeError(
                f"{self.name}: LO {mixer.lo.name!r} did not switch {'on' if on else 'off'}"
            )

    # ------------------------------------------------------------------ mixers
    def _mixer_value(self, mixer: str, key: str) -> float:
        return float(getattr(self._mixers[mixer], key))

    def _set_mixer(self, mixer: str, key: str, value: float) -> None:
        state = self._mixers[mixer]
        if key == "lo_frequency":
            state.lo.frequency.validate(value)
            state.lo.frequency(value)
            self._mixers[mixer] = replace(state, lo_frequency=float(state.lo.frequency()))
            return
        mixers = {**self._mixers, mixer: replace(state, **{key: float(value)})}
        self._upload(self._synthesise_all(self._tones, mixers, {state.i, state.q}))
        self._mixers = mixers
