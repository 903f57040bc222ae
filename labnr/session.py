"""A lab session: the instruments of an experiment config, connected and ready.

>>> from labnr.session import open_lab
>>> with open_lab("configs/sim_jpc_circulator.yaml") as lab:       # doctest: +SKIP
...     lab.pump.output(True)
...     ds = labnr.measure.sweep_pump_phase(lab, "bc", np.linspace(0, 2 * np.pi, 37))

:func:`open_lab` checks the storage, takes the lab lock (one labnr process
per lab, :mod:`labnr.lablock`), then connects the pump instruments **first**
and switches every output off, reading each back, as soon as each one is
connected — a crashed run's pumps are off before the flux bias or the VNA is
even tried. Then the flux bias (connecting only reads: its level and output
are read back, nothing is sent), the VNA, the multi-tone pump from the
config's ``pumps`` section (tone frequencies start at the process's resonance
from the config's mode frequencies, amplitudes and phases at the config's
values, outputs off) and the config's VNA defaults.

With ``simulate: true`` it first serves the embedded virtual lab (the device
``virtual_lab.device``) on free loopback ports and points the station's
entries at it, keeping their init arguments. This module lives outside
``labnr.measure``: the measurement layer never imports ``labnr.sim``.

Signals: for the session's lifetime (main thread) SIGTERM raises
:class:`~labnr.safety.Terminated`, a ``KeyboardInterrupt``, so a user's own
script gets the same cleanup as Ctrl-C (the sweep keeps its whole points and
is marked, the session closes safely). If that interrupt reaches the top of
the script uncaught, one line says what was confirmed safe and the process
exits 130 (Ctrl-C) or 143 (SIGTERM), no traceback (``LABNR_DEBUG=1`` keeps it).

Safety: the flux bias's current limits are the narrower of the station
file's and the config's ``flux`` section, its ramp rate and step the smaller
of the two; connecting never changes its output. :meth:`LabSession.close`
switches the pump outputs off and reads them back, leaves the flux where it is
(no ramp, no jump), closes the instruments, stops the virtual lab and
releases the lab lock.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import qcodes as qc
import yaml
from qcodes.instrument import Instrument

from labnr.config import Config, StorageConfig, load_config
from labnr.drivers.identity import confirm_loaded
from labnr.flux_record import FluxRecord, record_path
from labnr.lablock import (
    LabBusy,
    LabLock,
    StorageError,
    check_storage,
    describe_storage_error,
    lock_lab,
)
from labnr.measure.recovery import recover
from labnr.safety import (
    SafeStateReport,
    SignalGuard,
    Terminated,
    arm_interrupt_exit,
    confirm_outputs_off,
    deferred_interrupts,
    record_safe_state,
    safe_state,
)
from labnr.session_build import (
    _apply_vna_defaults,
    _flux_overrides,
    _pump_instruments,
    _station_entries,
    pump_config,
)

__all__ = [
    "InstrumentConnectError",
    "LabBusy",
    "LabSession",
    "StorageError",
    "Terminated",
    "arm_interrupt_exit",
    "open_lab",
    "pump_config",
    "safe_state",
]

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
    pump_sources : dict
        The pump's instruments by station name (CW sources, AWG, LOs).
    startup_report : SafeStateReport or None
        Pump outputs confirmed off when the session opened (read back).
    safe_report : SafeStateReport or None
        The latest safe state of this session (read back), e.g. at close.
    flux_at_start : tuple of (float or None, bool) or None
        The flux source's level (A; None with the output off) and output state,
        read back at connection.
    flux_record : FluxRecord or None
        What labnr last set on the flux source, kept next to the database
        (:mod:`labnr.flux_record`); its first ramp is checked against it.
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
        *,
        pump_sources: dict[str, Any] | None = None,
        lab_lock: LabLock | None = None,
        guard: SignalGuard | None = None,
    ) -> None:
        self.config = config
        self.station = station
        self.vna = vna
        self.pump = pump
        self.flux = flux
        self.virtual_lab = virtual_lab
        if pump_sources is not None:
            self.pump_sources = dict(pump_sources)
        self.startup_report: SafeStateReport | None = None
        self.safe_report: SafeStateReport | None = None
        self.flux_at_start: tuple[float | None, bool] | None = None
        self.flux_record: FluxRecord | None = None
        self._lock = lab_lock
        self._guard = guard
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
        """Pump outputs off and read back, flux held (:func:`labnr.safety.safe_state`);
        returns what could not be confirmed (details in :attr:`safe_report`)."""
        return safe_state(self)

    def close(self) -> None:
        """Pump outputs off (read back), flux held, instruments closed, virtual lab
        stopped, lab lock released, signal handling restored (idempotent).

        A first Ctrl-C or SIGTERM while closing waits until everything is closed.
        """
        if self._closed:
            return
        self._closed = True
        try:
            with deferred_interrupts("closing the session (pumps off, instruments closed)"):
                problems = self.safe_state()
                if problems:
                    log.error("closing the session: not safe: %s", "; ".join(problems))
                self._close_instruments()
        finally:
            self._release()

    def _close_instruments(self) -> None:
        if self.flux_record is not None:
            self.flux_record.detach()
        try:
            _close_components(self.station)
        finally:
            if self.virtual_lab is not None:
                self.virtual_lab.stop()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
        if self._guard is not None:
            self._guard.restore()

    def __enter__(self) -> LabSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if isinstance(exc, KeyboardInterrupt):
            arm_interrupt_exit(exc)
        elif isinstance(exc, Exception) and not isinstance(exc, StorageError):
            line = describe_storage_error(exc, self.database)
            if line is not None:
                raise StorageError(line) from exc

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


class InstrumentConnectError(RuntimeError):
    """An instrument of the station could not be connected (one line: name, type, address)."""


def _load(station: qc.Station, name: str | None, role: str, **overrides: Any) -> Any:
    """Connect station instrument ``name`` and confirm its identity for ``role``."""
    if name is None:
        return None
    entries = station.config["instruments"]
    if name not in entries:
        raise KeyError(f"instrument {name!r} is not in the station; it has {sorted(entries)}")
    if name in station.components:
        return station.components[name]
    try:
        inst = station.load_instrument(name, **overrides)
    except Exception as exc:
        entry = entries[name]
        cause = str(exc).splitlines()[0] if str(exc) else ""
        raise InstrumentConnectError(
            f"station instrument {name!r} ({entry.get('type')}) at {entry.get('address')}: "
            f"cannot connect: {type(exc).__name__}{': ' + cause if cause else ''}"
        ) from exc
    # ---- identity check: the single call site, right after connecting, before any write
    # (a mismatch closes the instrument and raises IdentityError, one line)
    init = entries[name].get("init") or {}
    serial = entries[name].get("serial", init.get("serial"))
    try:
        confirm_loaded(inst, role, serial=None if serial is None else str(serial))
    except BaseException:
        if name in station.components:
            station.remove_component(name)
        raise
    return inst


def _roles(config: Config) -> dict[str, str]:
    """The identity role of each pump instrument (labnr.drivers.identity)."""
    p = config.pumps
    if p.backend == "cw":
        return {name: "pump source" for name in _pump_instruments(config)}
    return {p.awg: "awg", **{m.lo: "lo" for m in p.mixers.values()}}  # type: ignore[dict-item]


class _Startup:
    """What a session has connected so far (for the safe state of a failed start)."""

    def __init__(self) -> None:
        self.pump_sources: dict[str, Any] = {}


def _pumps_off_first(config: Config, station: qc.Station, started: _Startup) -> SafeStateReport:
    """Connect every pump instrument and switch its outputs off (read back), each one
    independently and as soon as it is connected; a first Ctrl-C/SIGTERM waits for all."""
    report = SafeStateReport(when="start")
    errors: list[str] = []
    with deferred_interrupts("switching the pump outputs off at start"):
        for name, role in _roles(config).items():
            try:
                inst = _load(station, name, role)
            except Exception as exc:  # noqa: BLE001 - the others are switched off all the same
                report.unconfirmed[name] = f"not connected: {type(exc).__name__}"
                errors.append(str(exc))
                continue
            started.pump_sources[name] = inst
            part = confirm_outputs_off([inst], when="start")
            report.confirmed += part.confirmed
            report.unconfirmed.update(part.unconfirmed)
    report.time = time.monotonic()
    if errors or report.unconfirmed:
        raise InstrumentConnectError(
            f"{config.name}: pump outputs not all confirmed off at start: {report.line()}"
            + (f" ({errors[0]})" if errors else "")
        )
    log.info("%s: %s", config.name, report.line())
    return report


def _read_flux(flux: Any) -> tuple[float | None, bool] | None:
    """The flux source's output state and (when on) level, read (never written) at connection."""
    source = getattr(flux, "source", None)
    if source is None:
        return None
    on = bool(source.output_enabled())
    level = float(source.level()) if on else None  # off: the level is not applied
    shown = "off" if level is None else f"on at {level:.6g} A"
    log.info("%s: flux source output %s (read back; nothing sent)", flux.name, shown)
    return level, on


def _build(config: Config, station: qc.Station, started: _Startup) -> LabSession:
    """Pumps first (each off and read back as it connects), then flux (read only), then VNA."""
    from labnr.drivers.pumps import build_pump

    report = _pumps_off_first(config, station, started)
    flux = None
    if config.instruments.flux is not None:
        init = station.config["instruments"][config.instruments.flux].get("init") or {}
        flux = _load(station, config.instruments.flux, "flux source",
                     **_flux_overrides(config, init))  # fmt: skip
    flux_read = None if flux is None else _read_flux(flux)
    record = None
    if getattr(flux, "source", None) is not None:
        record = FluxRecord(record_path(config.path(config.storage.database)), flux)
        record.attach()  # what labnr last set on this source, checked before its first ramp
    vna = _load(station, config.instruments.vna, "vna")
    pump = None
    if config.pumps.tones:
        pump = build_pump("pump", pump_config(config, started.pump_sources),
                          origin=f"{config.name}: pumps")  # fmt: skip
        station.add_component(pump)
    _apply_vna_defaults(config, vna)
    session = LabSession(config, station, vna, pump, flux, pump_sources=started.pump_sources)
    session.startup_report, session.flux_at_start = report, flux_read
    session.flux_record = record
    return session


def _addresses(config: Config) -> list[str]:
    """VISA addresses of the instruments this config drives (they key a real lab's lock)."""
    if config.simulate:
        return []
    try:
        entries = _station_entries(config, None)
    except Exception:  # noqa: BLE001 - a bad station file is reported when it is loaded
        return []
    names = [config.instruments.vna, config.instruments.flux, *_pump_instruments(config)]
    return [str(entries[n]["address"]) for n in names if n in entries and entries[n].get("address")]


def open_lab(
    config: Config | str | Path,
    *,
    database: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> LabSession:
    """Connect the instruments of an experiment config, safe state first.

    In order: the config is read and checked; the data folder and the
    database are checked writable (:func:`labnr.lablock.check_storage`); SIGTERM
    becomes :class:`~labnr.safety.Terminated` for the session's lifetime (main
    thread); the lab lock is taken (:func:`labnr.lablock.lock_lab`: a second
    process on the same lab gets :class:`~labnr.lablock.LabBusy` and nothing is
    touched); the virtual lab is served (``simulate: true``); every pump
    instrument is connected and its outputs switched off and read back, each
    as soon as it is connected; the flux bias is connected (reads only); then
    the VNA, the pump and the VNA defaults. If anything fails, what was
    connected is made safe and closed, the lock released, the error re-raised.

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
        A context manager; ``close()`` leaves the lab safe and releases the lock.

    Raises
    ------
    LabBusy
        Another process holds the lab (nothing was touched).
    StorageError
        The data folder or the database cannot be written (nothing was touched).
    InstrumentConnectError
        An instrument could not be connected, or a pump output not confirmed off.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    if database is not None or data_dir is not None:
        storage = StorageConfig(
            database=str(Path(database).resolve()) if database else cfg.storage.database,
            data_dir=str(Path(data_dir).resolve()) if data_dir else cfg.storage.data_dir,
            export_hdf5=cfg.storage.export_hdf5,
        )
        cfg = cfg.model_copy(update={"storage": storage})
    check_storage(cfg)
    guard = SignalGuard("stopping the lab session").install()
    lab = None
    station = qc.Station()
    started = _Startup()
    lab_lock: LabLock | None = None
    try:
        lab_lock = lock_lab(cfg, _addresses(cfg))
        lab = _serve(cfg)
        entries = _station_entries(cfg, lab)
        station.load_config(yaml.safe_dump({"instruments": entries}, sort_keys=False))
        session = _build(cfg, station, started)
        _recover(cfg)
    except BaseException:
        _abandon(cfg, station, started, lab, lab_lock, guard)
        raise
    session.virtual_lab, session._lock, session._guard = lab, lab_lock, guard
    return session


def _recover(cfg: Config) -> None:
    """Finish what a killed run left (lock held, pumps already off): mark its runs
    interrupted, write pending exports, remove labnr's stale temp files."""
    report = recover(cfg.path(cfg.storage.database), cfg.path(cfg.storage.data_dir),
                     export=cfg.storage.export_hdf5)  # fmt: skip
    line = report.summary()
    if line:
        log.warning("%s: %s", cfg.name, line)


def _serve(cfg: Config) -> Any:
    if not cfg.simulate:
        return None
    from labnr.sim.lab import VirtualLab  # the embedded lab; never from labnr.measure

    assert cfg.virtual_lab is not None  # the config validator guarantees it
    device: str | Path = cfg.virtual_lab.device
    if str(device).endswith((".yaml", ".yml")):
        device = cfg.path(str(device))
    lab = VirtualLab(device, seed=cfg.virtual_lab.seed).start()
    log.info("%s: virtual lab %r serving %s", cfg.name, lab.spec.name, lab.addresses)
    return lab


def _abandon(cfg: Config, station: qc.Station, started: _Startup, lab: Any,
             lab_lock: LabLock | None, guard: SignalGuard) -> None:  # fmt: skip
    """A failed start: pump outputs off and read back, everything closed and released."""
    try:
        with deferred_interrupts("leaving the lab safe after a failed start"):
            if started.pump_sources:
                report = confirm_outputs_off(list(started.pump_sources.values()), when="start")
                record_safe_state(report)
                (log.info if report.ok else log.error)("%s: failed start: %s", cfg.name,
                                                       report.line())  # fmt: skip
            _close_components(station)
    finally:
        if lab is not None:
            lab.stop()
        if lab_lock is not None:
            lab_lock.release()
        guard.restore()
