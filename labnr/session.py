"""A lab session: the instruments of an experiment config, connected and ready.

>>> from labnr.session import open_lab
>>> with open_lab("configs/sim_jpc_circulator.yaml") as lab:       # doctest: +SKIP
...     lab.pump.output(True)
...     ds = labnr.measure.sweep_pump_phase(lab, "bc", np.linspace(0, 2 * np.pi, 37))

:func:`open_lab` loads the config's QCoDeS station, connects the VNA, the flux
bias and the pump instruments, builds the multi-tone pump from the config's
``pumps`` section (tone frequencies start at the process's resonance from the
config's mode frequencies, amplitudes and phases at the config's values,
outputs off) and applies the config's VNA defaults.

With ``simulate: true`` it first serves the embedded virtual lab (the device
``virtual_lab.device``) on free loopback ports and points the station's
entries at it, keeping their init arguments. This module lives outside
``labnr.measure``: the measurement layer never imports ``labnr.sim``.

Safety: the flux bias's current limits are the narrower of the station
file's and the config's ``flux`` section, its ramp rate and step the smaller
of the two; connecting never changes its output. :meth:`LabSession.close`
switches the pump outputs off, leaves the flux where it is (no ramp, no
jump), closes the instruments and stops the virtual lab.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

import qcodes as qc
import yaml
from qcodes.instrument import Instrument, VisaInstrument

from labnr.config import Config, StorageConfig, load_config
from labnr.measure.plan import nominal_pump_frequency
from labnr.safety import Terminated, safe_state

__all__ = ["LabSession", "Terminated", "open_lab", "pump_config", "safe_state"]

log = logging.getLogger(__name__)


class LabSession:
    """Connected instruments of one experiment config (returned by :func:`open_lab`).

    Attributes
    ----------
    config : Config
        The experiment config (storage paths overridden if asked).
    station : qcodes.Station
        The station; every instrument below is one of its components.
    vna : KeysightPNAXBase
        Network analyser.
    pump : MultiTonePump or None
        The pump built from ``config.pumps`` (``pump.tone("ab").phase``, ...).
    flux : FluxBias or None
        Flux bias (``config.instruments.flux``).
    virtual_lab : VirtualLab or None
        The embedded virtual lab when ``config.simulate``. **For tests and
        benchmarks only** (its ``truth()``); nothing in labnr uses it.
    """

    def __init__(
        self,
        config: Config,
        station: qc.Station,
        vna: Any,
        pump: Any,
        flux: Any,
        virtual_lab: Any = None,
    ) -> None:
        self.config = config
        self.station = station
        self.vna = vna
        self.pump = pump
        self.flux = flux
        self.virtual_lab = virtual_lab
        self._closed = False

    @property
    def database(self) -> Path:
        """The QCoDeS database of this session's datasets."""
        return self.config.path(self.config.storage.database)

    @property
    def data_dir(self) -> Path:
        """Folder for exported files and plots."""
        return self.config.path(self.config.storage.data_dir)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    def safe_state(self) -> list[str]:
        """Pump outputs off, flux held (:func:`labnr.safety.safe_state`); returns problems."""
        return safe_state(self)

    def close(self) -> None:
        """Pump outputs off, flux held, instruments closed, virtual lab stopped (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            problems = self.safe_state()
            if problems:
                log.error("closing the session: not safe: %s", "; ".join(problems))
        except BaseException:  # a second Ctrl-C: still close everything else, then re-raise
            self._close_instruments()
            raise
        self._close_instruments()

    def _close_instruments(self) -> None:
        try:
            _close_components(self.station)
        finally:
            if self.virtual_lab is not None:
                self.virtual_lab.stop()

    def __enter__(self) -> LabSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        sim = ", simulated" if self.virtual_lab is not None else ""
        return f"<LabSession {self.config.name!r} ({state}{sim})>"


def _close_components(station: qc.Station) -> None:
    """Close the station's instruments, the pump (which uses the others) first."""
    comps = list(station.components.values())
    for comp in sorted(comps, key=lambda c: not hasattr(c, "tone_names")):
        if isinstance(comp, Instrument):
            try:
                comp.close()
            except Exception:
                log.exception("closing %s failed", getattr(comp, "name", comp))
        station.remove_component(comp.name)


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
    v = config.vna
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
        entries = dict((yaml.safe_load(path.read_text()) or {}).get("instruments") or {})
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


def _load(station: qc.Station, name: str | None, **overrides: Any) -> Any:
    if name is None:
        return None
    if name not in station.config["instruments"]:
        raise KeyError(
            f"instrument {name!r} is not in the station; it has "
            f"{sorted(station.config['instruments'])}"
        )
    if name in station.components:
        return station.components[name]
    return station.load_instrument(name, **overrides)


def _build(config: Config, station: qc.Station) -> tuple[Any, Any, Any]:
    from labnr.drivers.pumps import build_pump

    vna = _load(station, config.instruments.vna)
    flux = None
    if config.instruments.flux is not None:
        init = station.config["instruments"][config.instruments.flux].get("init") or {}
        flux = _load(station, config.instruments.flux, **_flux_overrides(config, init))
    components = {name: _load(station, name) for name in _pump_instruments(config)}
    pump = None
    if config.pumps.tones:
        pump = build_pump("pump", pump_config(config, components), origin=f"{config.name}: pumps")
        station.add_component(pump)
    _apply_vna_defaults(config, vna)
    return vna, pump, flux


def open_lab(
    config: Config | str | Path,
    *,
    database: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> LabSession:
    """Connect the instruments of an experiment config.

    Parameters
    ----------
    config : Config, str or Path
        A loaded config or the path of one.
    database : str or Path, optional
        QCoDeS database to use instead of ``config.storage.database``.
    data_dir : str or Path, optional
        Folder for exports instead of ``config.storage.data_dir``.

    Returns
    -------
    LabSession
        A context manager; ``close()`` leaves the lab safe.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    if database is not None or data_dir is not None:
        storage = StorageConfig(
            database=str(Path(database).resolve()) if database else cfg.storage.database,
            data_dir=str(Path(data_dir).resolve()) if data_dir else cfg.storage.data_dir,
        )
        cfg = cfg.model_copy(update={"storage": storage})
    lab = None
    if cfg.simulate:
        from labnr.sim.lab import VirtualLab  # the embedded lab; never from labnr.measure

        assert cfg.virtual_lab is not None  # the config validator guarantees it
        device: str | Path = cfg.virtual_lab.device
        if str(device).endswith((".yaml", ".yml")):
            device = cfg.path(str(device))
        lab = VirtualLab(device, seed=cfg.virtual_lab.seed).start()
        log.info("%s: virtual lab %r serving %s", cfg.name, lab.spec.name, lab.addresses)
    station = qc.Station()
    try:
        entries = _station_entries(cfg, lab)
        station.load_config(yaml.safe_dump({"instruments": entries}, sort_keys=False))
        vna, pump, flux = _build(cfg, station)
    except BaseException:
        _close_components(station)
        if lab is not None:
            lab.stop()
        raise
    return LabSession(cfg, station, vna, pump, flux, lab)
