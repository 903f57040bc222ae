"""Clean exits: storage problems are one line naming the path, found before anything connects.

A read-only output folder and a locked database are refused by ``labnr
calibrate`` before the first instrument command (the emulators, served here,
see none); a full disk or a locked database during a run is one line too.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import qcodes as qc
import yaml
from test_process_lock import Wire, external_config

from labnr.cli import main
from labnr.sim.lab import VirtualLab

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sim_jpc_circulator.yaml"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[VirtualLab, Path, Wire]]:
    lab = VirtualLab("jpc_circulator", seed=1).start()
    try:
        config = external_config(tmp_path, lab.write_station_yaml(tmp_path / "station.yaml"))
        yield lab, config, Wire(lab)
    finally:
        lab.stop()


def _unprivileged() -> list[str]:
    """A prefix that makes root obey file permissions (no CAP_DAC_OVERRIDE), or []."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def _calibrate(config: Path, cwd: Path, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "labnr", "calibrate", str(config)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_read_only_output_folder(served: tuple[VirtualLab, Path, Wire], tmp_path: Path) -> None:
    _, config, wire = served
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)
    try:
        proc = _calibrate(config, tmp_path, _unprivileged())
    finally:
        data.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"storage.data_dir {data}: not writable" in lines[0]
    assert wire.seen == []  # nothing connected, nothing sent
    assert list(data.iterdir()) == []


def test_locked_database(served: tuple[VirtualLab, Path, Wire], tmp_path: Path) -> None:
    _, config, wire = served
    db = tmp_path / "labnr.db"
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")  # another program holds the database
        proc = _calibrate(config, tmp_path)
    finally:
        holder.close()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"storage.database {db}: locked by another program" in lines[0]
    assert "Rolling back" not in proc.stderr
    assert wire.seen == []


def _sim_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["station"] = str(CONFIG.parent / cfg["station"])
    cfg["storage"] = {"database": str(tmp_path / "labnr.db"), "data_dir": str(tmp_path / "data")}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("failure", ["disk full", "database locked"])
def test_storage_failure_during_a_run_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    failure: str,
) -> None:  # fmt: skip
    import labnr.calibrate.run as run

    target = tmp_path / "data" / "run_1.h5"

    def fail(lab, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if failure == "disk full":
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError as exc:  # as QCoDeS re-raises it
            raise RuntimeError("Rolling back due to unhandled exception") from exc

    monkeypatch.setattr(run, "calibrate", fail)
    old = qc.config.core.db_location
    try:
        code = main(["calibrate", str(_sim_config(tmp_path))])
    finally:
        qc.config.core.db_location = old
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    if failure == "disk full":
        assert f"{target}: no space left on the device" in lines[0]
    else:
        assert f"database {tmp_path / 'labnr.db'}: locked by another program" in lines[0]


def test_a_dead_vna_still_leaves_the_pumps_confirmed_off(
    served: tuple[VirtualLab, Path, Wire], tmp_path: Path
) -> None:
    """Pumps left on by a crashed run are switched off first, though the VNA never answers."""
    lab, config, wire = served
    for source in lab.sources.values():
        source.state.output = True  # as a killed run left them
    lab.servers.pop("vna").stop()  # the analyser is dead
    proc = _calibrate(config, tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "'vna'" in lines[0] and "cannot connect" in lines[0]
    assert "pump outputs confirmed off (read back): pump_ab, pump_bc, pump_ca" in lines[0]
    assert not any(s.state.output for s in lab.sources.values())
    to_flux = [bytes(m).decode() for name, m in wire.seen if name == "flux"]
    assert to_flux and all(part.strip().endswith("?") for m in to_flux for part in m.split(";")), \
        to_flux  # the flux source was only read


def test_dry_run_connects_nothing_and_writes_nothing(
    served: tuple[VirtualLab, Path, Wire], tmp_path: Path
) -> None:
    lab, config, wire = served
    for source in lab.sources.values():
        source.state.output = True  # even so: a dry run sends nothing, not even "off"
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run([sys.executable, "-m", "labnr", "calibrate", str(config), "--dry-run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "would run" in proc.stdout and "nothing was connected" in proc.stderr
    assert wire.seen == []  # no instrument was even connected
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no database, no state file
