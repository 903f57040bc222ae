"""The virtual lab served as a separate real-time process, proxies in front, configs per cell.

:class:`ServedLab` runs ``labnr sim serve DEVICE --realtime`` as its own
process (so the emulated instruments outlive a killed labnr, as real ones
do), reads the station file it writes, and puts a
:class:`labnr.sim.proxy.TamperProxy` in front of every instrument. A cell
writes its own config and station file into its folder (:func:`write_cell_files`):
``simulate: false``, instruments at the proxies' addresses, optionally two of
them swapped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from labnr.session_build import _loopback_init  # the session's own rule for loopback sockets
from labnr.sim.faults import parse_address
from labnr.sim.proxy import TamperProxy

__all__ = ["REPO", "ServedLab", "write_cell_files"]

REPO = Path(__file__).resolve().parents[2]
BASE_CONFIG = REPO / "configs" / "sim_jpc_circulator.yaml"


class ServedLab:
    """``labnr sim serve`` in its own process, a tampering proxy per instrument.

    Parameters
    ----------
    folder : Path
        Where the served station file and the server's output go.
    device : str
        Device preset.
    seed : int
        The lab's seed.
    lifetime : float
        The server process and the proxies stop by themselves after this, s.
    """

    def __init__(self, folder: Path, device: str = "jpc_circulator", seed: int = 1,
                 lifetime: float = 900.0) -> None:  # fmt: skip
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.device, self.seed, self.lifetime = device, seed, lifetime
        self.process: subprocess.Popen[bytes] | None = None
        self.entries: dict[str, Any] = {}
        self.ports: dict[str, int] = {}
        self.proxies: dict[str, TamperProxy] = {}

    def start(self, timeout: float = 60.0) -> ServedLab:
        """Start the server process and the proxies; wait for the station file."""
        station = self.folder / "served_station.yaml"
        station.unlink(missing_ok=True)
        log = open(self.folder / "serve.log", "wb")  # noqa: SIM115 (kept open by the child)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labnr", "sim", "serve", self.device, "--realtime",
             "--seed", str(self.seed), "--station", str(station),
             "--duration", str(self.lifetime)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.folder, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not station.is_file() or "instruments" not in station.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_path = self.folder / "serve.log"
                raise RuntimeError(f"labnr sim serve did not start: see {log_path}")
            time.sleep(0.05)
        time.sleep(0.1)  # the file is written in one call; let the server flush
        self.entries = yaml.safe_load(station.read_text())["instruments"]
        self.ports = {n: parse_address(e["address"])[1] for n, e in self.entries.items()}
        for name, port in self.ports.items():
            self.proxies[name] = TamperProxy(port, lifetime=self.lifetime).start()
        return self

    def stop(self) -> None:
        """Stop the proxies and the server process (SIGTERM, then SIGKILL)."""
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies.clear()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def __enter__(self) -> ServedLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kinds(self) -> dict[str, str]:
        """Instrument name -> driver class name's last part (which are pumps, VNA, flux)."""
        return {n: e["type"].rsplit(".", 1)[-1] for n, e in self.entries.items()}

    def pump_ports(self) -> dict[str, int]:
        """Direct (unproxied) ports of the pump sources."""
        return {n: p for n, p in self.ports.items() if n.startswith("pump")}


def _merge(base: dict[str, Any], edit: dict[str, Any]) -> None:
    """Merge ``edit`` into ``base`` recursively (mappings merged, anything else replaced)."""
    for key, value in edit.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def write_cell_files(
    lab: ServedLab,
    folder: Path,
    *,
    swap: tuple[str, str] | None = None,
    config_edit: dict[str, Any] | None = None,
    direct: bool = False,
) -> tuple[Path, Path]:
    """Write ``config.yaml`` and ``station.yaml`` for one cell; return (config, storage folder).

    Parameters
    ----------
    lab : ServedLab
        The running lab.
    folder : Path
        The cell's folder (config, station and storage under it).
    swap : (str, str), optional
        Two station entries whose addresses trade places (a wrong instrument).
    config_edit : dict, optional
        Top-level config sections merged over the base config (e.g. ``{"vna": {...}}``).
    direct : bool
        Point at the emulators, not at the proxies.
    """
    folder.mkdir(parents=True, exist_ok=True)
    entries = {n: dict(e, init=dict(e.get("init") or {})) for n, e in lab.entries.items()}
    for name, entry in entries.items():
        if not direct:
            entry["address"] = lab.proxies[name].address
        entry["init"].update(_loopback_init(entry["type"]))
    if swap is not None:
        a, b = swap
        entries[a]["address"], entries[b]["address"] = entries[b]["address"], entries[a]["address"]
    station = folder / "station.yaml"
    station.write_text(yaml.safe_dump({"instruments": entries}, sort_keys=False))
    config = yaml.safe_load(BASE_CONFIG.read_text())
    config.pop("virtual_lab", None)
    config.update(simulate=False, station=station.name)  # relative: one config hash for all cells
    storage = folder / "storage"
    config["storage"] = {"database": str(storage / "labnr.db"), "data_dir": str(storage / "data")}
    _merge(config, config_edit or {})
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, storage
