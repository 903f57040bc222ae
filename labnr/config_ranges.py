"""Range and plausibility checks of the config values that reach an instrument.

Every value labnr sends to an instrument is checked here against that
instrument's limits, before anything connects: the VNA's IF bandwidths,
averaging factor, points, frequency range and power range (with the config's
own stimulus limit ``vna.max_power``), the flux source's resolution (the
smallest ``max_step`` and ``ramp_rate`` its ramps can realise) and ranges,
and plausibility rules that catch unit slips (a mode's linewidth below
1 kHz on the VNA, a span wider than the VNA). The limits come from the
instrument types the station file names (``type:`` and ``init:``); without a
station, from the Keysight PNA family defaults (labnr's VNA driver). A value
the rules cannot fit to the instrument is refused with the likely intended
value where there is one.

Lines are ``key.path: what; fix: how`` (:mod:`labnr.config` adds the file).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from labnr.config_checks import problem

if TYPE_CHECKING:
    from labnr.config import Config
    from labnr.drivers.keysight_pna_params import PNALimits

__all__ = [
    "DEFAULT_MAX_POWER",
    "MAX_FLUX_RAMP_TIME",
    "MAX_QUALITY_FACTOR",
    "MIN_VNA_LINEWIDTH",
    "range_problems",
]

#: Default ``vna.max_power``, dBm: conservative for a device at millikelvin (most
#: setups have 40-70 dB of attenuation before the device; -10 dBm there is ample).
DEFAULT_MAX_POWER = -10.0
#: Narrowest linewidth of a mode read on the VNA, Hz; below it is almost always a
#: unit slip ("25 mHz" for 25 MHz) and no sweep of the span could resolve it.
MIN_VNA_LINEWIDTH = 1e3
#: Largest frequency / linewidth of any mode (a mechanical mode's record is ~1e9).
MAX_QUALITY_FACTOR = 1e10
#: Highest frequency of any mode, Hz (labnr's devices are microwave or mechanical).
MAX_MODE_FREQUENCY = 1e12
#: Longest ramp over the whole flux range the ramp rate may imply, s (one day).
MAX_FLUX_RAMP_TIME = 86_400.0
#: Smallest ``ramp_rate`` (A/s) and ``max_step`` (A) labnr's flux driver accepts.
MIN_FLUX_SETTING = 1e-12
#: (min, max frequency Hz, min, max power dBm) of CW sources by class name: the
#: validators of QCoDeS's RohdeSchwarzSGS100A driver (labnr's subclass keeps them).
CW_SOURCE_RANGES: dict[str, tuple[float, float, float, float]] = {
    "RohdeSchwarzSGS100A": (1e6, 20e9, -120.0, 25.0),
}


def _hz(value: float) -> str:
    for scale, unit in ((1e9, "GHz"), (1e6, "MHz"), (1e3, "kHz")):
        if abs(value) >= scale:
            return f"{value / scale:.6g} {unit}"
    return f"{value:.6g} Hz"


def _amps(value: float) -> str:
    for scale, unit in ((1.0, "A"), (1e-3, "mA"), (1e-6, "uA")):
        if abs(value) >= scale:
            return f"{value / scale:.6g} {unit}"
    return f"{value / 1e-9:.6g} nA"


# ---------------------------------------------------------------------- instruments


def _entry(station: Mapping[str, Any] | None, name: str | None) -> tuple[str, dict[str, Any]]:
    """(class name, init arguments) of a station instrument; ("", {}) if unknown."""
    entry = (station or {}).get(name) if name else None
    if not isinstance(entry, Mapping):
        return "", {}
    init = entry.get("init")
    return str(entry.get("type", "")).rpartition(".")[2], dict(init or {})


def _vna_limits(
    cfg: Config, station: Mapping[str, Any] | None
) -> tuple[str, PNALimits | None, tuple[float, ...], int, int]:
    """(model, full limits if known, IF bandwidths, max points, max averages) of the VNA."""
    from labnr.drivers.keysight_pna_params import PNA_IF_BANDWIDTHS, PNA_MODEL_LIMITS, PNALimits

    cls, init = _entry(station, cfg.instruments.vna)
    base = PNA_MODEL_LIMITS.get(cls)
    fields = {f.name for f in dataclasses.fields(PNALimits)}
    given = {k: v for k, v in init.items() if k in fields}
    limits: PNALimits | None = None
    try:
        if base is not None:
            limits = dataclasses.replace(base, **given)
        elif cls and fields - {"max_points", "if_bandwidths", "max_averages"} <= given.keys():
            limits = PNALimits(**given)
    except (TypeError, ValueError):
        limits = None  # the driver itself will refuse the station's init arguments
    model = cls or "Keysight PNA family"
    if limits is None:
        return model, None, PNA_IF_BANDWIDTHS, 100_001, 65_536
    return model, limits, limits.if_bandwidths, limits.max_points, limits.max_averages


def _nearest(values: tuple[float, ...], x: float) -> float:
    ordered = sorted(values)
    k = bisect.bisect_left(ordered, x)
    near = ordered[max(k - 1, 0) : k + 1]
    return min(near, key=lambda v: abs(math.log(v / x))) if x > 0 else ordered[0]


def _vna_problems(cfg: Config, station: Mapping[str, Any] | None) -> list[str]:
    v = cfg.vna
    model, lim, bandwidths, max_points, max_averages = _vna_limits(cfg, station)
    out = []
    if not any(math.isclose(v.if_bandwidth, b, rel_tol=1e-9) for b in bandwidths):
        steps = ", ".join(f"{b:g}" for b in sorted(bandwidths)[:9])
        out.append(problem(
            "vna.if_bandwidth",
            f"{_hz(v.if_bandwidth)} is not an IF bandwidth of the {model} "
            f"({_hz(min(bandwidths))} to {_hz(max(bandwidths))}: {steps}, ... Hz)",
            f"use the nearest one, {_hz(_nearest(bandwidths, v.if_bandwidth))}",
        ))  # fmt: skip
    if v.averages > max_averages:
        out.append(problem(
            "vna.averages", f"{v.averages} sweeps is above the {model}'s maximum of {max_averages}",
            f"give an averaging factor from 1 to {max_averages} (noise falls as its square root)",
        ))  # fmt: skip
    if v.points > max_points:
        out.append(problem(
            "vna.points", f"{v.points} is above the {model}'s {max_points} points per sweep",
            f"use at most {max_points} points",
        ))  # fmt: skip
    out += _power_problems(cfg, model, lim)
    if lim is not None:
        out += _band_problems(cfg, model, lim)
    return out


def _port_limits(cfg: Config) -> dict[int, float]:
    """``vna.max_power`` per port of every mode on the VNA, dBm."""
    ports = [m.vna_port for m in cfg.modes.values() if m.vna_port is not None]
    limits = cfg.vna.port_limits(max(ports, default=0))
    return {p: limits[p] for p in ports}


def _power_problems(cfg: Config, model: str, lim: PNALimits | None) -> list[str]:
    v = cfg.vna
    out = []
    if lim is not None and not lim.min_power <= v.power <= lim.max_power:
        out.append(problem(
            "vna.power", f"{v.power:g} dBm is outside the {model}'s source range "
            f"[{lim.min_power:g}, {lim.max_power:g}] dBm",
            f"give a power from {lim.min_power:g} dBm up to vna.max_power",
        ))  # fmt: skip
    limits = v.max_power if isinstance(v.max_power, Mapping) else {None: v.max_power}
    for port, level in limits.items():
        key = "vna.max_power" if port is None else f"vna.max_power.{port}"
        if port is not None and not 1 <= port <= (lim.n_ports if lim else 4):
            out.append(problem(
                key, f"port {port} is not a port of the {model} (1 to {lim.n_ports if lim else 4})",
                "key the limits by the VNA ports the modes use, e.g. {1: -10 dBm, 2: -10 dBm}",
            ))  # fmt: skip
        elif lim is not None and level > lim.max_power:
            out.append(problem(
                key, f"{level:g} dBm is above the {model}'s largest source power "
                f"{lim.max_power:g} dBm", f"give a limit of at most {lim.max_power:g} dBm",
            ))  # fmt: skip
    for port, level in sorted(_port_limits(cfg).items()):
        if v.power > level:
            key = f"vna.max_power.{port}" if isinstance(v.max_power, Mapping) else "vna.max_power"
            guess = f"did you mean {-v.power:g} dBm? " if 0 < v.power and -v.power <= level else ""
            out.append(problem(
                "vna.power", f"{v.power:g} dBm on port {port} is above the stimulus limit "
                f"{level:g} dBm ({key})", f"{guess}give at most {level:g} dBm; raise {key} only "
                "if the device's input line is attenuated for more",
            ))  # fmt: skip
            break
    return out


def _band_problems(cfg: Config, model: str, lim: PNALimits) -> list[str]:
    low, high = lim.min_frequency, lim.max_frequency
    span = cfg.vna.span
    out = []
    if span > high - low:
        smaller = next((span / s for s in (1e3, 1e6) if span / s <= high - low), None)
        guess = f"did you mean {_hz(smaller)}? " if smaller and smaller >= 1.0 else ""
        out.append(problem(
            "vna.span", f"{_hz(span)} is wider than the {model}'s whole range "
            f"{_hz(low)} to {_hz(high)}", f"{guess}give the width of a sweep around a mode "
            "(a few linewidths), e.g. 150 MHz",
        ))  # fmt: skip
    for name, mode in cfg.modes.items():
        if mode.vna_port is None:
            continue
        f = mode.frequency
        if mode.vna_port > lim.n_ports:
            out.append(problem(
                f"modes.{name}.vna_port", f"port {mode.vna_port} is not a port of the {model} "
                f"(1 to {lim.n_ports})", "give the VNA port the mode is wired to",
            ))  # fmt: skip
        if not low <= f <= high:
            better = next((f * s for s in (1e3, 1e-3, 1e6, 1e-6) if low <= f * s <= high), None)
            hint = f"did you mean {_hz(better)}? " if better else ""
            out.append(problem(
                f"modes.{name}.frequency", f"{_hz(f)} is outside the {model}'s range "
                f"{_hz(low)} to {_hz(high)}, yet the mode is read on VNA port {mode.vna_port}",
                f"{hint}give the mode's frequency, or remove its vna_port",
            ))  # fmt: skip
        elif span <= high - low and not (low <= f - span / 2 and f + span / 2 <= high):
            out.append(problem(
                "vna.span", f"a sweep of {_hz(span)} around mode {name!r} ({_hz(f)}) leaves the "
                f"{model}'s range {_hz(low)} to {_hz(high)}",
                f"use a span of at most {_hz(2 * min(f - low, high - f))}",
            ))  # fmt: skip
    return out


# ---------------------------------------------------------------------- modes


def _linewidth_guess(lw: float, f: float) -> str:
    """'did you mean X? ' for a linewidth that a unit slip made too small."""
    for scale in (1e9, 1e6, 1e3):  # mHz for MHz, Hz for MHz, Hz for kHz
        if MIN_VNA_LINEWIDTH <= lw * scale <= f / 10:
            return f"did you mean {_hz(lw * scale)}? "
    return ""


def _mode_problems(cfg: Config) -> list[str]:
    out = []
    for name, mode in cfg.modes.items():
        lw, f, key = mode.linewidth, mode.frequency, f"modes.{name}.linewidth"
        if f > MAX_MODE_FREQUENCY:
            out.append(problem(
                f"modes.{name}.frequency", f"{f:.6g} Hz is above {MAX_MODE_FREQUENCY:.0e} Hz "
                "(1 THz)", "give the frequency in Hz or with a unit, e.g. 5.31 GHz",
            ))  # fmt: skip
            continue
        if lw is None:
            continue
        if lw >= f:
            out.append(problem(
                key, f"{_hz(lw)} is not below the mode's frequency {_hz(f)}",
                "give the FWHM linewidth in Hz, e.g. 25 MHz for a 5 GHz mode",
            ))  # fmt: skip
        elif mode.vna_port is not None and lw < MIN_VNA_LINEWIDTH:
            out.append(problem(
                key, f"{lw:.6g} Hz is below {_hz(MIN_VNA_LINEWIDTH)} for a mode read on the VNA "
                f"(a quality factor of {f / lw:.3g})",
                f"{_linewidth_guess(lw, f)}give the FWHM linewidth, e.g. 25 MHz",
            ))  # fmt: skip
        elif f / lw > MAX_QUALITY_FACTOR:
            out.append(problem(
                key, f"{lw:.6g} Hz at {_hz(f)} is a quality factor of {f / lw:.3g}, above "
                f"{MAX_QUALITY_FACTOR:.0e}", f"{_linewidth_guess(lw, f)}give the FWHM linewidth",
            ))  # fmt: skip
    return out


# ---------------------------------------------------------------------- flux


def _flux_resolution(cfg: Config, station: Mapping[str, Any] | None) -> list[str]:
    """Problems of max_step and ramp_rate against a GS200's range and resolution."""
    f = cfg.flux
    cls, _ = _entry(station, cfg.instruments.flux)
    if f is None or cls != "GS200FluxBias":
        return []
    from labnr.drivers.flux_gs200 import GS200_CURRENT_RANGES, GS200CurrentSource

    top = max(abs(f.min_current), abs(f.max_current))
    spec = next((r for r in GS200_CURRENT_RANGES if r.max_level >= top), None)
    if spec is None:
        side = "flux.max_current" if abs(f.max_current) >= abs(f.min_current) else (
            "flux.min_current")  # fmt: skip
        return [problem(
            side, f"{_amps(top)} is beyond the GS200's largest range "
            f"({_amps(GS200_CURRENT_RANGES[-1].max_level)})",
            "give flux limits of a few mA (the coil's design currents)",
        )]  # fmt: skip
    res, scale = _amps(spec.resolution), _amps(spec.full_scale)
    where = f"the GS200's resolution of {res} in its {scale} range"
    smallest = 2 * spec.resolution  # a ramp step must be at least two resolution steps
    out = []
    if f.max_step < smallest:
        out.append(problem(
            "flux.max_step", f"{_amps(f.max_step)} is below twice {where}, so no ramp could step",
            f"use at least {_amps(smallest)}, e.g. 5 uA",
        ))  # fmt: skip
    slowest = smallest / GS200CurrentSource.max_interval
    if f.ramp_rate < slowest:
        out.append(problem(
            "flux.ramp_rate", f"{f.ramp_rate:.3g} A/s is below {slowest:.3g} A/s, the slowest "
            f"ramp of a GS200 ({_amps(smallest)}, twice {where}, per "
            f"{GS200CurrentSource.max_interval:g} s program step)",
            "use a ramp rate of order 100 uA/s",
        ))  # fmt: skip
    return out


def _flux_problems(cfg: Config, station: Mapping[str, Any] | None) -> list[str]:
    f = cfg.flux
    if f is None or f.min_current >= f.max_current:
        return []
    out = []
    for key, value, unit in (("ramp_rate", f.ramp_rate, "A/s"), ("max_step", f.max_step, "A")):
        if value < MIN_FLUX_SETTING:
            out.append(problem(
                f"flux.{key}", f"{value:.3g} {unit} is below the flux driver's smallest "
                f"{key}, {MIN_FLUX_SETTING:g} {unit}",
                "use e.g. ramp_rate: 100 uA/s and max_step: 5 uA",
            ))  # fmt: skip
    if out:
        return out
    out += _flux_resolution(cfg, station)
    width = f.max_current - f.min_current
    hours = width / f.ramp_rate / 3600
    if not out and hours * 3600 > MAX_FLUX_RAMP_TIME:
        out.append(problem(
            "flux.ramp_rate", f"{f.ramp_rate:.3g} A/s would take {hours:.3g} hours to ramp the "
            f"flux range [{_amps(f.min_current)}, {_amps(f.max_current)}]",
            f"use a ramp rate of at least {width / MAX_FLUX_RAMP_TIME:.2g} A/s, typically "
            "100 uA/s",
        ))  # fmt: skip
    return out


# ---------------------------------------------------------------------- pumps


def _source_problems(
    key: str, name: str, cls: str, frequency: float, power: float | None
) -> list[str]:
    low, high, pmin, pmax = CW_SOURCE_RANGES[cls]
    out = []
    if not low <= frequency <= high:
        out.append(problem(
            key, f"{_hz(frequency)} is outside the range of {name!r} ({cls}: {_hz(low)} to "
            f"{_hz(high)})", "check the mode frequencies (a pump runs at their difference, or "
            "sum for gain) or use a source that reaches this frequency",
        ))  # fmt: skip
    if power is not None and not pmin <= power <= pmax:
        out.append(problem(
            key.rpartition(".")[0] + ".lo_power", f"{power:g} dBm is outside the source range "
            f"of {name!r} ({cls}: {pmin:g} to {pmax:g} dBm)",
            "give the LO power the mixer needs, typically 7 to 17 dBm",
        ))  # fmt: skip
    return out


def _pump_problems(cfg: Config, station: Mapping[str, Any] | None) -> list[str]:
    """Pump frequencies and LO settings within their sources' ranges; the AWG's sample rate."""
    p = cfg.pumps
    out = []
    for tname, tone in p.tones.items():
        cls, _ = _entry(station, tone.source)
        if p.backend == "cw" and tone.source and cls in CW_SOURCE_RANGES:
            fa, fb = (cfg.modes[m].frequency for m in tone.modes)
            f = abs(fa - fb) if tone.kind == "conversion" else fa + fb
            out += _source_problems(f"pumps.tones.{tname}.modes", tone.source, cls, f, None)
    for mname, mixer in p.mixers.items():
        cls, _ = _entry(station, mixer.lo)
        if p.backend == "awg" and cls in CW_SOURCE_RANGES:
            out += _source_problems(f"pumps.mixers.{mname}.lo_frequency", mixer.lo, cls,
                                    mixer.lo_frequency, mixer.lo_power)  # fmt: skip
    cls, _ = _entry(station, p.awg)
    if p.backend == "awg" and cls == "TektronixAWG5208Direct":
        from labnr.drivers.tektronix_awg5208 import TektronixAWG5208Direct

        low, high = TektronixAWG5208Direct.sample_rate_range
        rate = high if p.sample_rate is None else p.sample_rate
        if not low <= rate <= high:
            out.append(problem(
                "pumps.sample_rate", f"{rate:g} Sa/s is outside the AWG5208's range "
                f"{low:g} to {high:g} Sa/s", f"give a sample rate within it, e.g. {high:g}",
            ))  # fmt: skip
        elif p.frequency_resolution > rate / 3:
            out.append(problem(
                "pumps.frequency_resolution", f"{_hz(p.frequency_resolution)} is coarser than a "
                f"third of the sample rate {rate:g} Sa/s", "use a grid of a few kHz or finer",
            ))  # fmt: skip
    return out


# ---------------------------------------------------------------------- entry


def range_problems(cfg: Config, station: Mapping[str, Any] | None = None) -> list[str]:
    """Every value of ``cfg`` that its instruments could not take or that is implausible.

    Parameters
    ----------
    cfg : Config
        A config whose fields and cross-references are each valid.
    station : mapping, optional
        The station file's ``instruments:`` mapping (instrument types and
        init arguments); None: Keysight PNA family defaults, no flux source.

    Returns
    -------
    list of str
        One ``key.path: what; fix: how`` line per problem.
    """
    return [
        *_mode_problems(cfg), *_vna_problems(cfg, station), *_flux_problems(cfg, station),
        *_pump_problems(cfg, station),
    ]  # fmt: skip
