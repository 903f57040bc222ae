"""Config to drivers for :mod:`labnr.session`: station entries, pump dict, flux and VNA settings.

Pure plumbing, no connection: which station entries the config uses (pointed
at the embedded virtual lab's served instruments when simulated), the
:func:`~labnr.drivers.pumps.build_pump` dict of ``config.pumps``, the flux
bias's init arguments (the narrower limits of station file and config) and
the config's VNA defaults. The virtual lab arrives as an object: this module
imports nothing from ``labnr.sim``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from qcodes.instrument import VisaInstrument

from labnr.config import Config, load_yaml_bounded
from labnr.measure.plan import nominal_pump_frequency

__all__ = ["pump_config"]


# ---------------------------------------------------------------------- config -> drivers


def pump_config(config: Config, components: dict[str, Any]) -> dict[str, Any]:
    """The :func:`~labnr.drivers.pumps.build_pump` dict for ``config.pumps``.

    Tone frequencies start at the resonance of each tone's process computed
    from the config's mode frequencies (``|f1 - f2|`` for conversion,
    ``f1 + f2`` for gain); limits are the tones' ``max_amplitude``.

    Parameters
    ----------
    config : Config
        Experiment config.
    components : dict
        Connected instruments by station name (sources, AWG, LOs).
    """
    p = config.pumps
    modes = config.modes
    tones: dict[str, dict[str, Any]] = {}
    for name, t in p.tones.items():
        f = nominal_pump_frequency(t.kind, modes[t.modes[0]].frequency, modes[t.modes[1]].frequency)
        spec: dict[str, Any] = {"frequency": f, "amplitude": t.amplitude, "phase": t.phase}
        if p.backend == "cw":
            spec["source"] = components[t.source]  # type: ignore[index]
        elif t.iq is not None:
            spec.update(iq=t.iq, sideband=t.sideband)
        else:
            spec["channel"] = t.channel
        tones[name] = spec
    out: dict[str, Any] = {
        "backend": p.backend,
        "tones": tones,
        "limits": {name: t.max_amplitude for name, t in p.tones.items()},
    }
    if p.backend == "awg":
        out["awg"] = components[p.awg]  # type: ignore[index]
        out["frequency_resolution"] = p.frequency_resolution
        if p.sample_rate is not None:
            out["sample_rate"] = p.sample_rate
        out["mixers"] = {
            name: {**m.model_dump(exclude={"lo"}), "lo": components[m.lo]}
            for name, m in p.mixers.items()
        }
    return out


def _pump_instruments(config: Config) -> list[str]:
    p = config.pumps
    if p.backend == "cw":
        return [t.source for t in p.tones.values() if t.source is not None]
    return [p.awg] + [m.lo for m in p.mixers.values()]  # type: ignore[list-item]


def _flux_overrides(config: Config, init: dict[str, Any]) -> dict[str, Any]:
    """Flux-bias init arguments: the narrower limits of station file and config."""
    f = config.flux
    if f is None:
        return {}
    low, high = init.get("current_limits", (f.min_current, f.max_current))
    out: dict[str, Any] = {
        "current_limits": [max(low, f.min_current), min(high, f.max_current)],
        "ramp_rate": min(init.get("ramp_rate", f.ramp_rate), f.ramp_rate),
        "max_step": min(init.get("max_step", f.max_step), f.max_step),
    }
    if f.current_per_flux_quantum is not None:
        out["current_per_flux_quantum"] = f.current_per_flux_quantum
    if "offset_current" in f.model_fields_set:
        out["offset_current"] = f.offset_current
    return out


def _apply_vna_defaults(config: Config, vna: Any) -> None:
    """Stimulus limits first (``vna.max_power``, per port, narrowed in the driver so that
    no later write can exceed them), then the config's VNA settings."""
    v = config.vna
    for port, limit in v.port_limits(len(vna.ports)).items():
        vna.limit_power(port, min(limit, vna.limits.max_power))
    vna.if_bandwidth(v.if_bandwidth)
    vna.points(v.points)
    for m in config.modes.values():
        if m.vna_port is not None:
            vna.ports[m.vna_port - 1].power(v.power)
    if v.averages > 1:
        vna.averages(v.averages)
    vna.averaging(v.averages > 1)


# ---------------------------------------------------------------------- station


def _station_entries(config: Config, lab: Any) -> dict[str, Any]:
    """The config's station entries; with a virtual lab, pointed at its served instruments."""
    path = config.path(config.station)
    entries: dict[str, Any] = {}
    if path.is_file():
        data = load_yaml_bounded(path, "station file")  # bounded: size, nodes, aliases
        entries = dict((data if isinstance(data, dict) else {}).get("instruments") or {})
    elif lab is None:
        raise FileNotFoundError(f"{config.name}: station file {str(path)!r} not found")
    if lab is None:
        return entries
    served = lab.station_config()["instruments"]
    for name, entry in served.items():
        merged = {**entries[name], "address": entry["address"]} if name in entries else entry
        merged["init"] = {**(merged.get("init") or {}), **_loopback_init(merged["type"])}
        entries[name] = merged
    return entries


def _loopback_init(dotted: str) -> dict[str, Any]:
    """Init arguments for the virtual lab's raw loopback sockets.

    pyvisa-py serves them (no search for a vendor VISA library), and a VISA
    device clear on a raw socket only waits for its timeout.
    """
    module, _, name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if isinstance(cls, type) and issubclass(cls, VisaInstrument):
        return {"visalib": "@py", "device_clear": False}
    if "visalib" in inspect.signature(cls).parameters:
        return {"visalib": "@py"}
    return {}
