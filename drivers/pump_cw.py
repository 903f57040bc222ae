"""CW-source backend of :class:`~labnr.drivers.pumps.MultiTonePump`: one source per tone.

Each tone is one R&S SGS100A-like CW source (QCoDeS's
:class:`~qcodes.instrument_drivers.rohde_schwarz.RohdeSchwarzSGS100A` serves as
is; any driver with ``frequency`` (Hz), ``power`` (dBm), ``phase`` (deg) and
``status`` (RF on/off) parameters does). The tone parameters map to the source:

- ``frequency`` -> ``source.frequency``;
- ``amplitude`` (V peak into 50 ohm) -> ``source.power`` in dBm
  (:func:`~labnr.drivers.pumps.volts_to_dbm`); amplitude 0 switches that
  source's RF off (dBm has no zero), any other value switches it back on
  while the pump's output is on;
- ``phase`` (rad) -> ``source.phase`` in degrees, wrapped to [0, 360).

Every write is followed by a read of the same setting: the call returns once
the source has taken it (a VNA sweep started next sees it), and the tone then
reads back the source's own value (QCoDeS's driver writes power and phase with
0.01 dB / 0.01 deg resolution). The source's own validators (frequency, power
range) run before anything is written, as do the tone's amplitude limits.

Phase coherence needs the sources to share a reference; ``reference`` in the
config sets it up (requires ``ref_osc_source``, ``ref_osc_external_freq`` and,
for a master, ``ref_LO_out`` and ``ref_osc_output_freq`` parameters, as
QCoDeS's SGS100A driver has):

- ``{"master": None, "frequency": "10MHz"}``: every source locks to an
  external reference (a lab-wide 10 MHz distribution);
- ``{"master": "ab", "frequency": "10MHz"}``: tone ``ab``'s source runs on its
  internal reference and puts it out at REF OUT; the others lock to it.

Without ``reference`` the reference settings are not touched.

Config keys: ``backend: "cw"``, ``tones: {name: {source, frequency, amplitude=0,
phase=0}}``, ``limits: {name: V}`` (required for every tone), ``reference``.
Construction switches every source's RF off first, then sets frequency, power
and phase; ``pump.output(True)`` switches them on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import qcodes.validators as vals
from qcodes.instrument import Instrument

from labnr.drivers.parsing import is_no_error
from labnr.drivers.pumps import (
    MultiTonePump,
    PumpConfigError,
    check_keys,
    dbm_to_volts,
    initial_values,
    limits_for,
    volts_to_dbm,
    wrap_phase,
)
from labnr.drivers.resilience import InstrumentErrorReply, call_with_retries

__all__ = ["CWMultiTonePump"]

_SOURCE_PARAMETERS = ("frequency", "power", "phase", "status")
_REFERENCE_FREQUENCIES = ("10MHz", "100MHz", "1000MHz")


class CWMultiTonePump(MultiTonePump):
    """Multi-tone pump with one CW source per tone (see the module docstring).

    Parameters
    ----------
    name : str
        Instrument name.
    tones : mapping
        ``{tone: {"source": instrument, "frequency": Hz, "amplitude": V, "phase": rad}}``.
    limits : mapping
        ``{tone: V}``: largest amplitude of each tone (every tone needs one).
    reference : mapping, optional
        ``{"master": tone or None, "frequency": "10MHz"}``.
    origin : str
        Where the config came from (quoted in errors).
    **kwargs
        Forwarded to :class:`~qcodes.instrument.Instrument`.
    """

    backend = "cw"
    #: Frequency step the sources play, Hz: QCoDeS's SGS100A driver writes
    #: ``SOUR:FREQ {:.2f}``, so tones land on 0.01 Hz (see realisable_frequency).
    frequency_step = 0.01

    def realisable_frequency(self, tone: str, frequency: float) -> float:
        """The frequency the tone's source plays if asked for ``frequency`` (nothing is set).

        A loop of three tones each rounded to 0.01 Hz can miss closing by
        0.01 Hz, which turns the loop phase by 3.6 degrees per second: the
        calibration uses this to choose frequencies that close exactly.
        """
        self.tone(tone)
        step = self.frequency_step
        return float(round(float(frequency) / step) * step)

    def __init__(
        self,
        name: str,
        tones: Mapping[str, Mapping[str, Any]],
        limits: Mapping[str, float],
        reference: Mapping[str, Any] | None = None,
        origin: str = "pump config",
        **kwargs: Any,
    ) -> None:
        lim = limits_for(tones, limits, origin)
        self._sources: dict[str, Instrument] = {}
        initial: dict[str, dict[str, float]] = {}
        for tone, spec in tones.items():
            where = f"{origin}: tones.{tone}"
            check_keys(spec, {"source", "frequency", "amplitude", "phase"}, where)
            self._sources[tone] = _check_source(spec.get("source"), where)
            initial[tone] = initial_values(spec, where)
        shared = _shared(self._sources)
        if shared:
            raise PumpConfigError(f"{origin}: tones {shared} share one source; one source per tone")
        self._reference = _check_reference(reference, tones, origin)
        self._zero = {tone: True for tone in tones}  # amplitude 0: RF kept off
        self._level: dict[str, float] = {}  # dBm each tone was last set to
        super().__init__(name, **kwargs)
        try:
            for tone, source in self._sources.items():
                top = volts_to_dbm_max(source)
                self._add_tone(
                    tone,
                    min(lim[tone], top),
                    f"config limits[{tone!r}]" if lim[tone] <= top else f"{source.name} maximum",
                    source.frequency.vals or vals.Numbers(0, np.inf),
                    f"source {source.name!r}",
                    floor=_lowest_volts(source),
                )
            self._validate_initial(initial)
            self._initialise(initial)
        except Exception:
            self.close()
            raise

    @classmethod
    def from_config(
        cls, name: str, config: Mapping[str, Any], origin: str = "pump config"
    ) -> CWMultiTonePump:
        """Build from a config dict (see the module docstring)."""
        check_keys(config, {"backend", "tones", "limits", "reference"}, origin)
        if not config.get("tones"):
            raise PumpConfigError(f"{origin}: tones: at least one tone is needed")
        return cls(
            name,
            config["tones"],
            config.get("limits", {}),
            reference=config.get("reference"),
            origin=origin,
        )

    # ------------------------------------------------------------------ hardware
    def _initialise(self, initial: Mapping[str, Mapping[str, float]]) -> None:
        for source in self._sources.values():
            source.status(False)
        self._set_reference()
        for tone, source in self._sources.items():
            _raise_source_errors(source, f"switching tone {tone!r} off / setting its reference")
        self._apply({tone: dict(values) for tone, values in initial.items()})

    def _set_reference(self) -> None:
        if self._reference is None:
            return
        master, freq = self._reference
        for tone, source in self._sources.items():
            if tone == master:
                source.ref_osc_source("INT")
                source.ref_LO_out("REF")
                source.ref_osc_output_freq(freq)
            else:
                source.ref_osc_external_freq(freq)
                source.ref_osc_source("EXT")

    def _apply(self, changes: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        plan: list[tuple[str, str, float | None]] = []
        for tone, values in changes.items():
            source = self._sources[tone]
            for key, value in values.items():
                native = _native(key, value)
                if native is not None:
                    source.parameters[_NATIVE[key]].validate(native)
                plan.append((tone, key, native))
        actual: dict[str, dict[str, float]] = {}
        for tone, key, native in plan:
            self._write(tone, key, native)
            actual.setdefault(tone, {})[key] = self._read(tone, key)
        return actual

    def _write(self, tone: str, key: str, native: float | None) -> None:
        """Write one native value and check the source's read-back of it."""
        source = self._sources[tone]
        switch = False
        if key == "amplitude":
            was_zero, self._zero[tone] = self._zero[tone], native is None
            switch = self._output_on and was_zero != self._zero[tone]
            if native is None:  # amplitude 0: RF off, the level is left as it is
                if switch:
                    self._set_status(tone, False)
                return
            self._level[tone] = native
        param = source.parameters[_NATIVE[key]]

        def once() -> None:  # an absolute value and its read-back: safe to repeat
            param(native)
            got = float(param())
            miss = abs(got - native) if key != "phase" else abs((got - native + 180) % 360 - 180)
            if miss > _RESOLUTION[key]:
                _raise_source_errors(source, f"setting {param.full_name} to {native}")
                raise RuntimeError(
                    f"{source.name}: {param.full_name} reads back {got} after setting {native} "
                    f"(tone {tone!r} of pump {self.name!r}); the source reports no error"
                )

        call_with_retries(source, f"setting {param.full_name} to {native}", once)
        if switch:  # RF on only once the source holds the new level, never at a stale one
            self._set_status(tone, True)

    def _read(self, tone: str, key: str) -> float:
        source = self._sources[tone]
        return call_with_retries(
            source, f"reading tone {tone!r} {key}", lambda: self._read_once(source, tone, key)
        )

    def _read_once(self, source: Instrument, tone: str, key: str) -> float:
        if key == "frequency":
            return float(source.frequency())
        if key == "amplitude":
            return 0.0 if self._zero[tone] else dbm_to_volts(float(source.power()))
        return wrap_phase(np.deg2rad(float(source.phase())))

    def _set_status(self, tone: str, on: bool) -> None:
        source = self._sources[tone]

        def once() -> None:
            source.status(on)
            if source.status() is not on:  # the read-back also waits until the source took it
                _raise_source_errors(source, f"switching tone {tone!r} {'on' if on else 'off'}")
                raise RuntimeError(
                    f"{source.name}: RF output did not switch {'on' if on else 'off'}"
                )

        call_with_retries(source, f"switching tone {tone!r} {'on' if on else 'off'}", once)

    def _switch(self, on: bool) -> None:
        """Every source on (stops at the first failure) or off (tries every one)."""
        failed: list[Exception] = []
        for tone in self._sources:
            try:
                if on and not self._zero[tone]:  # the source may have been changed since:
                    self._write(tone, "amplitude", self._level[tone])  # RF on at our level only
                self._set_status(tone, on and not self._zero[tone])
            except Exception as exc:
                if on:
                    raise
                failed.append(exc)
        if failed:
            raise failed[0]


_NATIVE = {"frequency": "frequency", "amplitude": "power", "phase": "phase"}
#: Largest read-back difference that is only the driver's formatting (0.01 Hz/dB/deg).
_RESOLUTION = {"frequency": 0.0051, "amplitude": 0.0051, "phase": 0.0051}


def _native(key: str, value: float) -> float | None:
    """The source's value (Hz, dBm, deg in [0, 360)) for a tone value (None: amplitude 0)."""
    if key == "frequency":
        return value
    if key == "amplitude":
        if not value > 0:
            return None
        # the source plays 0.01 dB steps (QCoDeS writes {:.2f}): the nearest step that
        # does not exceed the request, so a request at the limit never lands above it
        dbm = round(volts_to_dbm(value), 2)
        if dbm_to_volts(dbm) > value * (1 + 1e-12):
            dbm = round(dbm - 0.01, 2)
        return dbm
    return float(np.rad2deg(wrap_phase(value)) % 360.0)


def _raise_source_errors(source: Instrument, context: str) -> None:
    """Drain the source's SCPI error queue; raise with its own text if it held errors."""
    found = []
    for _ in range(16):
        reply = source.ask("SYSTem:ERRor?").strip()
        if is_no_error(reply):
            break
        found.append(reply)
    if found:
        raise InstrumentErrorReply(f"{source.name} reported after {context}: " + "; ".join(found))


def volts_to_dbm_max(source: Instrument) -> float:
    """Largest amplitude (V) the source's power validator allows."""
    validator = source.power.vals
    top = getattr(validator, "max_value", None)
    return dbm_to_volts(float(top)) if top is not None and np.isfinite(top) else np.inf


def _lowest_volts(source: Instrument) -> float:
    """Smallest amplitude (V) the source's power validator allows (0 if unbounded)."""
    low = getattr(source.power.vals, "min_value", None)
    return dbm_to_volts(float(low)) if low is not None and np.isfinite(low) else 0.0


def _check_source(source: Any, where: str) -> Instrument:
    missing = [p for p in _SOURCE_PARAMETERS if p not in getattr(source, "parameters", {})]
    if missing:
        raise PumpConfigError(
            f"{where}.source = {source!r}: needs a CW source driver with parameters "
            f"{list(_SOURCE_PARAMETERS)} (missing {missing})"
        )
    return source


def _shared(sources: Mapping[str, Instrument]) -> list[str]:
    seen: dict[int, str] = {}
    for tone, source in sources.items():
        if id(source) in seen:
            return [seen[id(source)], tone]
        seen[id(source)] = tone
    return []


def _check_reference(
    reference: Mapping[str, Any] | None, tones: Mapping[str, Any], origin: str
) -> tuple[str | None, str] | None:
    if reference is None:
        return None
    where = f"{origin}: reference"
    check_keys(reference, {"master", "frequency"}, where)
    master = reference.get("master")
    freq = reference.get("frequency", "10MHz")
    if master is not None and master not in tones:
        raise PumpConfigError(f"{where}.master = {master!r}; must be None or one of {list(tones)}")
    if freq not in _REFERENCE_FREQUENCIES:
        raise PumpConfigError(f"{where}.frequency = {freq!r}; allowed {_REFERENCE_FREQUENCIES}")
    for tone, spec in tones.items():
        needed = ["ref_osc_source", "ref_osc_external_freq"]
        if tone == master:
            needed = ["ref_osc_source", "ref_LO_out", "ref_osc_output_freq"]
        missing = [p for p in needed if p not in spec["source"].parameters]
        if missing:
            raise PumpConfigError(f"{where}: source of tone {tone!r} lacks parameters {missing}")
    return master, freq
