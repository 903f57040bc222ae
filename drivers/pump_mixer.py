"""IQ mixers of the AWG pump backend: their state and their QCoDeS channel.

Split from :mod:`labnr.drivers.pump_awg`, whose docstring describes the mixer
model and the config keys. ``track_lo: true`` (a mixer with exactly one tone)
puts the tone's fine frequency on the LO: the IF stays on the AWG's grid and
the LO moves by less than half a grid step, so the RF lands exactly where it
was asked (needed where a grid step is wider than a linewidth, e.g. kHz grids
against 100 Hz mechanical modes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import qcodes.validators as vals
from qcodes.instrument import Instrument, InstrumentChannel

from labnr.drivers.pumps import PumpConfigError, check_keys

__all__ = ["IQMixer", "parse_mixers"]

_MIXER_KEYS = {"i", "q", "lo", "lo_frequency", "lo_power", "track_lo"} | {
    "gain_imbalance", "phase_imbalance", "i_offset", "q_offset"
}
_CALIBRATION = {
    # key: (unit, label, validator)
    "gain_imbalance": ("", "Q/I gain imbalance (Q gain 1 + value)", vals.Numbers(-0.5, 0.5)),
    "phase_imbalance": ("rad", "Q-branch LO quadrature error", vals.Numbers(-np.pi / 4, np.pi / 4)),
    "i_offset": ("V", "DC offset added to I", vals.Numbers(-1.0, 1.0)),
    "q_offset": ("V", "DC offset added to Q", vals.Numbers(-1.0, 1.0)),
}

@dataclass(frozen=True)
class _Mixer:
    """State of one IQ mixer."""

    i: int
    q: int
    lo: Instrument
    lo_frequency: float
    gain_imbalance: float = 0.0
    phase_imbalance: float = 0.0
    i_offset: float = 0.0
    q_offset: float = 0.0
    lo_power: float | None = None
    track_lo: bool = False  # fine frequency on the LO (a mixer with one tone)
    lo_nominal: float = 0.0  # the configured LO frequency the IF grid is chosen from


class IQMixer(InstrumentChannel):
    """Calibration and LO of one IQ up-converter (see the module docstring)."""

    def __init__(self, parent: Any, name: str) -> None:
        super().__init__(parent, name)
        self.lo_frequency = self.add_parameter(
            "lo_frequency",
            label=f"{name} LO frequency",
            unit="Hz",
            get_cmd=partial(parent._mixer_value, name, "lo_frequency"),
            set_cmd=partial(parent._set_mixer, name, "lo_frequency"),
            vals=vals.Numbers(0, np.inf),
            docstring="LO source frequency; the mixer's tones keep their IF.",
        )
        for key, (unit, label, validator) in _CALIBRATION.items():
            param = self.add_parameter(
                key,
                label=f"{name} {label}",
                unit=unit,
                get_cmd=partial(parent._mixer_value, name, key),
                set_cmd=partial(parent._set_mixer, name, key),
                vals=validator,
            )
            setattr(self, key, param)


def parse_mixers(
    mixers: dict[str, Mapping[str, Any]],
    tones: Mapping[str, Mapping[str, Any]],
    origin: str,
    channel: Callable[[Any, str], int],
) -> dict[str, _Mixer]:
    """The pump config's mixers (and inline ``iq`` dicts of its tones), validated."""
    specs = dict(mixers)
    for tone, spec in tones.items():  # inline {"iq": {"i":.., "q":.., "lo":..}}
        iq = spec.get("iq")
        if isinstance(iq, Mapping):
            key = f"iq{iq.get('i')}_{iq.get('q')}"
            inline = {k: v for k, v in iq.items() if k != "sideband"}
            if key in specs and dict(specs[key]) != inline:
                raise PumpConfigError(
                    f"{origin}: tones.{tone}.iq disagrees with another definition "
                    f"of mixer {key!r}"
                )
            specs[key] = inline
    out = {}
    for name, spec in specs.items():
        where = f"{origin}: mixers.{name}"
        check_keys(spec, _MIXER_KEYS, where)
        for key in ("i", "q", "lo"):
            if spec.get(key) is None:
                raise PumpConfigError(f"{where}.{key}: required")
        lo = spec["lo"]
        missing = [p for p in ("frequency", "power", "status") if p not in lo.parameters]
        if missing:
            raise PumpConfigError(f"{where}.lo = {lo!r}: LO source lacks {missing}")
        cal = {k: float(spec.get(k, 0.0)) for k in _CALIBRATION}
        for key, value in cal.items():
            _CALIBRATION[key][2].validate(value, f"{where}.{key}")
        f_lo = spec.get("lo_frequency")
        f_lo = float(lo.frequency() if f_lo is None else f_lo)  # a read, not a write
        lo.frequency.validate(f_lo)
        power = spec.get("lo_power")
        if power is not None:
            lo.power.validate(float(power))
        i = channel(spec["i"], f"{where}.i")
        q = channel(spec["q"], f"{where}.q")
        track = spec.get("track_lo", False)
        if not isinstance(track, bool):
            raise PumpConfigError(f"{where}.track_lo = {track!r}; use true or false")
        out[name] = _Mixer(i, q, lo, f_lo, **cal, lo_power=power, track_lo=track,
                           lo_nominal=f_lo)  # fmt: skip
    return out
