"""Multi-tone pumps: phase-coherent pump tones behind one set of QCoDeS parameters.

A :class:`MultiTonePump` is a QCoDeS :class:`~qcodes.instrument.Instrument`
holding one :class:`PumpTone` channel per tone (``pump.ab``, ``pump.tones``).
Every tone has the same three parameters whatever drives it, so sweeps and the
lock never know the backend:

========== ====== =============================================================
parameter  unit   meaning
========== ====== =============================================================
frequency  Hz     tone frequency (RF for IQ tones); reads back what is played
                  (AWG: the value quantised to the record's grid)
amplitude  V      peak voltage **at the instrument output**: the CW source's
                  output into 50 ohm; the AWG channel's output; for an IQ
                  tone the amplitude of each of its I and Q sinusoids (the RF
                  tone is this times the mixer's conversion gain, ~0.5 for a
                  6 dB mixer -- compensating it is the user's job)
phase      rad    tone phase (radians in labnr's API; a CW source's own
                  parameter stays in degrees); AWG: relative to the record
                  start; IQ: RF phase relative to the LO's phase
========== ====== =============================================================

plus ``pump.output`` (all of the pump's outputs on/off) and :meth:`MultiTonePump.off`.
Amplitude limits are validators: a value above a tone's limit raises before
anything is written, naming pump, tone, value, limit and instrument.
:meth:`MultiTonePump.set_tones` changes several tones with one hardware update.

Construction from a plain dict (what labnr's config holds; instruments are
already-connected QCoDeS drivers)::

    build_pump("pump", {
        "backend": "cw",                      # one CW source per tone
        "tones": {
            "ab": {"source": pump_ab, "frequency": 1.16e9, "amplitude": 0.1, "phase": 0.0},
            "bc": {"source": pump_bc, "frequency": 1.435e9},   # amplitude, phase default 0
        },
        "limits": {"ab": 0.3, "bc": 0.3},     # V at the output; required for every tone
        "reference": {"master": None, "frequency": "10MHz"},   # optional, see pump_cw
    })

    build_pump("pump", {
        "backend": "awg",
        "awg": awg,                            # TektronixAWG5208Direct
        "frequency_resolution": 10e3,          # Hz: tone grid (IF grid for IQ tones)
        "sample_rate": 2.5e9,                  # optional: highest sample rate to use
        "amplitude_vpp": 0.75,                 # optional: channel amplitude (float or {ch: Vpp})
        "mixers": {                            # optional IQ up-converters
            "iq1": {"i": 1, "q": 2, "lo": lo1, "lo_frequency": 5.0e9, "lo_power": 13.0,
                    "gain_imbalance": 0.0, "phase_imbalance": 0.0,
                    "i_offset": 0.0, "q_offset": 0.0},
        },
        "tones": {
            "p11": {"iq": "iq1", "sideband": "+", "frequency": 5.20417e9, "amplitude": 0.1},
            "p21": {"iq": {"i": 3, "q": 4, "lo": lo2, "sideband": "-"}, "frequency": 6.0e9},
            "aux": {"channel": 5, "frequency": 120e6, "phase": 0.5},
        },
        "limits": {"p11": 0.3, "p21": 0.3, "aux": 0.2},
    })

See :mod:`labnr.drivers.pump_awg` and :mod:`labnr.drivers.pump_cw` for each
backend's keys. Errors name the config key path (``tones.ab.channel``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any, ClassVar

import numpy as np
import qcodes.validators as vals
from qcodes.instrument import ChannelList, Instrument, InstrumentChannel

from labnr.drivers.pump_synthesis import wrap_phase

__all__ = [
    "TONE_KEYS",
    "AmplitudeLimit",
    "MultiTonePump",
    "PumpClipError",
    "PumpConfigError",
    "PumpTone",
    "build_pump",
    "dbm_to_volts",
    "volts_to_dbm",
    "wrap_phase",
]

#: The parameters every tone has, in the order a batch update applies them.
TONE_KEYS: tuple[str, ...] = ("frequency", "amplitude", "phase")

#: Backend name -> "module:class" (imported on use).
BACKENDS: dict[str, str] = {
    "awg": "labnr.drivers.pump_awg:AWGMultiTonePump",
    "cw": "labnr.drivers.pump_cw:CWMultiTonePump",
}


class PumpConfigError(ValueError):
    """A pump configuration is invalid (the message names the key path)."""


class PumpClipError(ValueError):
    """A waveform would exceed the AWG channel's full scale (nothing was written)."""


def dbm_to_volts(power_dbm: float, impedance: float = 50.0) -> float:
    """Peak voltage of a sine of ``power_dbm`` into ``impedance`` ohm."""
    return float(np.sqrt(2.0 * impedance * 10 ** ((power_dbm - 30.0) / 10.0)))


def volts_to_dbm(amplitude: float, impedance: float = 50.0) -> float:
    """Power (dBm) of a sine of peak voltage ``amplitude`` into ``impedance`` ohm."""
    return float(10.0 * np.log10(amplitude**2 / (2.0 * impedance)) + 30.0)


class AmplitudeLimit(vals.Validator[float]):
    """0 <= amplitude <= limit, with a message naming pump, tone, limit and instrument.

    Parameters
    ----------
    pump, tone : str
        Names for the message.
    limit : float
        Largest allowed amplitude, V.
    origin : str
        Where the limit comes from (e.g. ``"config limits['ab']"``).
    instrument : str
        The hardware the tone is played on.
    floor : float
        Smallest non-zero amplitude the hardware plays, V (a CW source's lowest
        level); amplitudes in ``(0, floor)`` are refused up front rather than
        by the instrument in the middle of a sweep.
    """

    is_numeric = True

    def __init__(
        self, pump: str, tone: str, limit: float, origin: str, instrument: str, floor: float = 0.0
    ) -> None:
        self.pump, self.tone, self.limit = pump, tone, float(limit)
        self.origin, self.instrument, self.floor = origin, instrument, float(floor)
        self._valid_values = (0.0,)

    def validate(self, value: float, context: str = "") -> None:
        """Raise TypeError/ValueError unless ``0 <= value <= limit``."""
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{self.pump}.{self.tone}: amplitude {value!r} is not a number")
        if not np.isfinite(value) or value < 0:
            raise ValueError(
                f"{self.pump}.{self.tone}: amplitude {value!r} V on {self.instrument}; "
                f"allowed 0..{self.limit:g} V"
            )
        if value > self.limit:
            raise ValueError(
                f"{self.pump}.{self.tone}: amplitude {value!r} V exceeds the limit "
                f"{self.limit:g} V ({self.origin}) on {self.instrument}; nothing was written"
            )
        if 0 < value < self.floor:
            raise ValueError(
                f"{self.pump}.{self.tone}: amplitude {value!r} V is below the lowest level "
                f"{self.floor:.3g} V {self.instrument} plays; use 0 to switch the tone off; "
                "nothing was written"
            )

    def __repr__(self) -> str:
        return f"<AmplitudeLimit 0<=v<={self.limit:g} V ({self.origin})>"


class PumpTone(InstrumentChannel):
    """One pump tone: ``frequency`` (Hz), ``amplitude`` (V), ``phase`` (rad).

    Created by the pump; see the module docstring for the meaning of the
    parameters. Parameter values go through the pump's backend.

    Parameters
    ----------
    parent : MultiTonePump
        The pump.
    name : str
        Tone name (a Python identifier, e.g. ``"ab"``).
    amplitude_vals : AmplitudeLimit
        Validator of the amplitude (the tone's limit).
    frequency_vals : qcodes.validators.Validator
        Validator of the frequency (backend range).
    instrument : str
        Description of the hardware playing the tone (for messages and snapshot).
    """

    def __init__(
        self,
        parent: MultiTonePump,
        name: str,
        amplitude_vals: AmplitudeLimit,
        frequency_vals: vals.Validator[Any],
        instrument: str,
    ) -> None:
        super().__init__(parent, name)
        self.instrument = instrument
        self.frequency = self.add_parameter(
            "frequency",
            label=f"{name} frequency",
            unit="Hz",
            get_cmd=partial(parent._read, name, "frequency"),
            set_cmd=partial(parent._set_one, name, "frequency"),
            vals=frequency_vals,
            docstring="Tone frequency (RF for IQ tones). Reads back the value played "
            "(AWG: quantised to the record's grid).",
        )
        self.amplitude = self.add_parameter(
            "amplitude",
            label=f"{name} amplitude",
            unit="V",
            get_cmd=partial(parent._read, name, "amplitude"),
            set_cmd=partial(parent._set_one, name, "amplitude"),
            vals=amplitude_vals,
            docstring="Peak voltage at the instrument output (source output into 50 ohm; "
            "AWG channel; each of I and Q for an IQ tone, before the mixer's gain).",
        )
        self.phase = self.add_parameter(
            "phase",
            label=f"{name} phase",
            unit="rad",
            get_cmd=partial(parent._read, name, "phase"),
            set_cmd=partial(parent._set_one, name, "phase"),
            vals=vals.Numbers(-1e6, 1e6),
            docstring="Tone phase in radians, read back wrapped to (-pi, pi] "
            "(AWG: from the record start; IQ: RF phase relative to the LO).",
        )


class MultiTonePump(Instrument):
    """Base class of the pump backends: tones, ``output``, batch updates, safe state.

    Subclasses parse their config, call :meth:`_add_tone` for each tone, and
    implement :meth:`_apply`, :meth:`_read` and :meth:`_switch`. No method of
    this class writes to hardware before every value has been validated.

    Parameters
    ----------
    name : str
        Instrument name (parameter names become ``<name>_<tone>_phase``).
    **kwargs
        Forwarded to :class:`~qcodes.instrument.Instrument`.
    """

    #: Backend name in configs.
    backend: ClassVar[str] = ""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._output_on = False
        self._tone_list = ChannelList(self, "tones", PumpTone, snapshotable=False)
        self.add_submodule("tones", self._tone_list)
        self.output = self.add_parameter(
            "output",
            label="pump output",
            get_cmd=lambda: self._output_on,
            set_cmd=self._set_output,
            vals=vals.Bool(),
            docstring="All of this pump's outputs (sources, AWG channels, LOs) on or off.",
        )

    # ------------------------------------------------------------------ public API
    def get_idn(self) -> dict[str, str | None]:
        """Identity of this virtual instrument (it has no SCPI of its own)."""
        return {
            "vendor": "labnr",
            "model": f"{type(self).__name__} ({self.backend})",
            "serial": None,
            "firmware": None,
        }

    @property
    def tone_names(self) -> list[str]:
        """Tone names in config order."""
        return [t.short_name for t in self._tone_list]

    def tone(self, name: str) -> PumpTone:
        """The tone called ``name``."""
        module = self.submodules.get(name)
        if not isinstance(module, PumpTone):
            raise KeyError(f"{self.name}: no tone {name!r}; tones are {self.tone_names}")
        return module

    def __iter__(self) -> Iterator[PumpTone]:
        return iter(self._tone_list)

    def set_tones(self, changes: Mapping[str, Mapping[str, float]]) -> None:
        """Change several tones with one hardware update.

        Every value is validated before anything is written.

        Parameters
        ----------
        changes : mapping
            ``{tone: {"frequency"|"amplitude"|"phase": value}}``.
        """
        clean: dict[str, dict[str, float]] = {}
        for tone_name, values in changes.items():
            tone = self.tone(tone_name)
            for key, value in values.items():
                if key not in TONE_KEYS:
                    raise KeyError(
                        f"{self.name}.{tone_name}: no parameter {key!r}; use {TONE_KEYS}"
                    )
                tone.parameters[key].validate(value)
                clean.setdefault(tone_name, {})[key] = float(value)
        actual = self._apply(clean)
        for tone_name, values in actual.items():
            for key, value in values.items():
                self.tone(tone_name).parameters[key].cache.set(value)

    def off(self) -> None:
        """Safe state: every output of this pump off."""
        self.output(False)

    def settings(self) -> dict[str, tuple[float, float, float]]:
        """``{tone: (frequency, amplitude, phase)}`` as read back now."""
        return {t.short_name: (t.frequency(), t.amplitude(), t.phase()) for t in self}

    def realisable_frequency(self, tone: str, frequency: float) -> float:
        """The frequency ``tone`` would really play if set to ``frequency`` (nothing is set).

        Backends with a frequency grid (AWG records) quantise; CW sources play
        what is asked.
        """
        self.tone(tone)  # a clear error for an unknown tone
        return float(frequency)

    def amplitude_budgets(self) -> list[tuple[tuple[str, ...], float]]:
        """Shared limits: ``[(tones, volts)]`` meaning sum of those tones' amplitudes <= volts.

        Tones that share an output (AWG channel) must fit its full scale
        together, beyond each tone's own limit. A backend with one output per
        tone (CW sources) has none.
        """
        return []

    # ------------------------------------------------------------------ for subclasses
    def _add_tone(
        self,
        name: str,
        limit: float,
        limit_origin: str,
        frequency_vals: vals.Validator[Any],
        instrument: str,
        floor: float = 0.0,
    ) -> PumpTone:
        if not name.isidentifier():
            raise PumpConfigError(f"tones.{name}: a tone name must be a Python identifier")
        validator = AmplitudeLimit(self.name, name, limit, limit_origin, instrument, floor)
        tone = PumpTone(self, name, validator, frequency_vals, instrument)
        self.add_submodule(name, tone)
        self._tone_list.append(tone)
        return tone

    def _set_one(self, tone: str, key: str, value: float) -> None:
        self._apply({tone: {key: float(value)}})

    def _set_output(self, on: bool) -> None:
        self._switch(bool(on))
        self._output_on = bool(on)

    def _apply(self, changes: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Write validated changes; return the values now played (same keys)."""
        raise NotImplementedError

    def _read(self, tone: str, key: str) -> float:
        """Present value of one tone parameter."""
        raise NotImplementedError

    def _switch(self, on: bool) -> None:
        """Switch every output of the pump."""
        raise NotImplementedError

    def _validate_initial(self, values: Mapping[str, Mapping[str, float]]) -> None:
        """Validate initial tone values with the parameters' validators (no hardware)."""
        for tone_name, kv in values.items():
            tone = self.tone(tone_name)
            for key, value in kv.items():
                tone.parameters[key].validate(value)


# ---------------------------------------------------------------------- config helpers
def limits_for(
    tones: Mapping[str, Any], limits: Mapping[str, float] | None, origin: str = "config"
) -> dict[str, float]:
    """Amplitude limit (V) of every tone; raise if one is missing or not positive."""
    limits = dict(limits or {})
    missing = [t for t in tones if t not in limits]
    if missing:
        raise PumpConfigError(
            f"{origin}: limits has no amplitude limit for tone(s) {missing}; every tone "
            "needs one (V at the instrument output)"
        )
    unknown = sorted(set(limits) - set(tones))
    if unknown:
        raise PumpConfigError(f"{origin}: limits names unknown tone(s) {unknown}")
    for name, value in limits.items():
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise PumpConfigError(f"{origin}: limits.{name} = {value!r}; must be a positive number")
    return {k: float(v) for k, v in limits.items()}


def check_keys(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Raise :class:`PumpConfigError` for keys of ``section`` not in ``allowed``."""
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise PumpConfigError(f"{where}: unknown key(s) {unknown}; allowed {sorted(allowed)}")


def initial_values(spec: Mapping[str, Any], where: str) -> dict[str, float]:
    """Initial frequency (required), amplitude and phase (default 0) of a tone spec."""
    if "frequency" not in spec:
        raise PumpConfigError(f"{where}.frequency: required (Hz)")
    out = {}
    for key, default in (("frequency", None), ("amplitude", 0.0), ("phase", 0.0)):
        value = spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PumpConfigError(f"{where}.{key} = {value!r}; must be a number")
        out[key] = float(value)
    return out


def build_pump(name: str, config: Mapping[str, Any], origin: str = "pump config") -> MultiTonePump:
    """Build a pump from a plain config dict (see the module docstring).

    Parameters
    ----------
    name : str
        Instrument name of the pump.
    config : mapping
        ``{"backend": "awg" | "cw", ...}``.
    origin : str
        Where the config came from (file and key path), quoted in errors.

    Returns
    -------
    MultiTonePump
    """
    backend = config.get("backend")
    if backend not in BACKENDS:
        raise PumpConfigError(f"{origin}: backend {backend!r}; allowed {sorted(BACKENDS)}")
    module, cls_name = BACKENDS[backend].split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    return cls.from_config(name, config, origin=origin)
