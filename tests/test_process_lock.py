"""One labnr process per lab (the process lock): the second is refused with the holder's PID.

The emulated instruments run in this test process (an external virtual lab,
as a real lab's instruments outlive labnr), so the test sees every command
each process sends to them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labnr.config import load_config
from labnr.lablock import EXIT_LAB_BUSY, LabBusy, lock_lab, lock_paths
from labnr.sim.lab import VirtualLab

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sim_jpc_circulator.yaml"

HOLDER = """
import sys, time
from labnr.session import open_lab
lab = open_lab(sys.argv[1])
print("ready", flush=True)
time.sleep(600)
"""


def external_config(tmp: Path, station: Path, name: str = "cfg.yaml") -> Path:
    """The shipped simulated config pointed at an already served lab (simulate: false)."""
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg.update(simulate=False, station=str(station))
    cfg.pop("virtual_lab")
    cfg["storage"] = {"database": str(tmp / "labnr.db"), "data_dir": str(tmp / "data")}
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


class Wire:
    """Counts the commands each emulated instrument receives."""

    def __init__(self, lab: VirtualLab) -> None:
        self.seen: list[tuple[str, str]] = []
        for name, inst in lab.instruments.items():
            original = inst.process
            inst.process = self._wrap(name, original)  # type: ignore[method-assign]

    def _wrap(self, name: str, original):  # noqa: ANN001, ANN202
        def process(message: str):  # noqa: ANN202
            self.seen.append((name, message))
            return original(message)

        return process


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[VirtualLab, Path]]:
    lab = VirtualLab("jpc_circulator", seed=1).start()
    try:
        yield lab, external_config(tmp_path, lab.write_station_yaml(tmp_path / "station.yaml"))
    finally:
        lab.stop()


def _start_holder(config: Path, cwd: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(config)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # QCoDeS prints its "Connected to" lines first
        if line.strip() == "ready":
            return proc
    proc.kill()
    raise AssertionError(f"the holder did not open the lab: {proc.communicate(timeout=30)}")


def test_a_second_process_is_refused_and_touches_nothing(
    served: tuple[VirtualLab, Path], tmp_path: Path
) -> None:
    lab, config = served
    holder = _start_holder(config, tmp_path)
    try:
        wire = Wire(lab)  # from now on: every command to any instrument
        for argv in (["calibrate", str(config)], ["lock", str(config), "--duration", "10s"]):
            proc = subprocess.run([sys.executable, "-m", "labnr", *argv], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            assert proc.returncode == EXIT_LAB_BUSY, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
            assert f"PID {holder.pid}" in lines[0] and "labnr.session import open_lab" in lines[0]
            assert "nothing was connected" in lines[0]
        assert wire.seen == []  # the refused processes sent nothing to any instrument
        assert holder.poll() is None  # the holder is untouched
    finally:
        holder.kill()
        holder.communicate(timeout=30)


def test_the_lock_is_released_when_the_holder_is_killed(
    served: tuple[VirtualLab, Path], tmp_path: Path
) -> None:
    _, config = served
    cfg = load_config(config)
    addresses = [e["address"] for e in
                 yaml.safe_load((tmp_path / "station.yaml").read_text())["instruments"].values()]
    holder = _start_holder(config, tmp_path)
    try:
        with pytest.raises(LabBusy, match=rf"PID {holder.pid}\b"):
            lock_lab(cfg, addresses)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # kill -9: no cleanup runs in the holder
        holder.communicate(timeout=30)
    deadline = time.monotonic() + 5
    while True:  # the OS drops the flock with the process
        try:
            taken = lock_lab(cfg, addresses)
            break
        except LabBusy:
            assert time.monotonic() < deadline, "the lock outlived its holder"
            time.sleep(0.05)
    try:
        assert taken.held
        files = [p for p, _ in lock_paths(cfg, addresses)]
        assert any("instrument" in what for _, what in lock_paths(cfg, addresses))
        assert all(p.read_text().split("\n")[0] == str(os.getpid()) for p in files)
    finally:
        taken.release()


def test_same_process_and_another_database_on_the_same_instruments(tmp_path: Path) -> None:
    """flock belongs to the open file: a second lock in one process is refused too; two
    configs with different databases but the same instrument addresses exclude each other."""
    station = tmp_path / "station.yaml"
    station.write_text(yaml.safe_dump({"instruments": {
        n: {"type": "x.Y", "address": f"TCPIP::10.0.0.9::{5025 + k}::SOCKET"}
        for k, n in enumerate(["vna", "pump_ab", "pump_bc", "pump_ca", "flux"])}}))  # fmt: skip
    a = load_config(external_config(tmp_path, station, "a.yaml"))
    other = tmp_path / "other"
    other.mkdir()
    b = load_config(external_config(other, station, "b.yaml"))
    addresses = [e["address"] for e in yaml.safe_load(station.read_text())["instruments"].values()]
    first = lock_lab(a, addresses)
    try:
        with pytest.raises(LabBusy, match=rf"database .* PID {os.getpid()} "):
            lock_lab(a, addresses)
        with pytest.raises(LabBusy, match=r"instrument TCPIP::10\.0\.0\.9"):
            lock_lab(b, addresses)
    finally:
        first.release()
    lock_lab(b, addresses).release()  # free again
