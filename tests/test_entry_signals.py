"""SIGTERM and SIGINT in every entry point: experiments/ scripts, a user's own script, the CLI.

Each process runs against a virtual lab served here (its emulators outlive the
killed process, as real instruments do). After the signal: exit 143 (SIGTERM)
or 130 (SIGINT), the pumps read off on the emulators, the confirmed-state line
on stderr, no traceback.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_process_lock import external_config

from labnr.lablock import EXIT_LAB_BUSY
from labnr.sim.lab import VirtualLab

ROOT = Path(__file__).resolve().parents[1]
CONFIRMED = "pump outputs confirmed off (read back): pump_ab, pump_bc, pump_ca"

USER_SCRIPT = """
import sys, time
from labnr.session import open_lab
with open_lab(sys.argv[1]) as lab:
    lab.pump.set_tones({t: {"amplitude": 0.05} for t in lab.pump.tone_names})
    lab.pump.output(True)
    time.sleep(600)
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[VirtualLab, Path]]:
    lab = VirtualLab("jpc_circulator", seed=1).start()
    try:
        yield lab, external_config(tmp_path, lab.write_station_yaml(tmp_path / "station.yaml"))
    finally:
        lab.stop()


def pumps_on(lab: VirtualLab) -> bool:
    return any(s.state.output for s in lab.sources.values())


def run_until_pumps_on(lab: VirtualLab, argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not pumps_on(lab):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the pumps never came on"
        time.sleep(0.02)
    time.sleep(0.3)  # inside the measurement
    return proc


def assert_stopped_safely(lab: VirtualLab, proc: subprocess.Popen[str], sig: int) -> str:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    what = "terminated (SIGTERM)" if sig == signal.SIGTERM else "interrupted (Ctrl-C)"
    assert what in last and CONFIRMED in last, err
    assert not pumps_on(lab)  # the emulators agree: every pump output off
    return out + err


def wait_for_a_run(db: Path, proc: subprocess.Popen[str]) -> None:
    """Until the script's sweep has started its dataset (and stored a point or two)."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no run was started"
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as conn:
                if list(conn.execute("SELECT run_id FROM runs")):
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    time.sleep(0.5)


SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


@pytest.mark.parametrize("sig", SIGNALS)
def test_experiment_script(served: tuple[VirtualLab, Path], tmp_path: Path, sig: int) -> None:
    lab, config = served
    script = ROOT / "experiments" / "pump_map.py"
    argv = [sys.executable, str(script), "--config", str(config), "--output",
            str(tmp_path / "out"), "--n", "15", "--freq-points", "51", "--no-progress"]  # fmt: skip
    proc = run_until_pumps_on(lab, argv, tmp_path)
    wait_for_a_run(tmp_path / "out" / "labnr.db", proc)
    assert_stopped_safely(lab, proc, sig)
    with sqlite3.connect(tmp_path / "out" / "labnr.db") as conn:
        runs = list(conn.execute("SELECT completed_timestamp FROM runs"))
    assert runs and all(done is not None for (done,) in runs)  # the run is marked, kept


@pytest.mark.parametrize("sig", SIGNALS)
def test_user_script_with_open_lab(
    served: tuple[VirtualLab, Path], tmp_path: Path, sig: int
) -> None:
    lab, config = served
    proc = run_until_pumps_on(lab, [sys.executable, "-c", USER_SCRIPT, str(config)], tmp_path)
    assert_stopped_safely(lab, proc, sig)


def test_ctrl_c_during_calibrate(served: tuple[VirtualLab, Path], tmp_path: Path) -> None:
    lab, config = served
    proc = run_until_pumps_on(lab, [sys.executable, "-m", "labnr", "calibrate", str(config)],
                              tmp_path)  # fmt: skip
    text = assert_stopped_safely(lab, proc, signal.SIGINT)
    assert "calibration interrupted" in text  # the summary table came first


def test_lock_excludes_calibrate_and_stops_on_sigterm(
    served: tuple[VirtualLab, Path], tmp_path: Path
) -> None:
    lab, config = served
    proc = run_until_pumps_on(lab, [sys.executable, "-m", "labnr", "lock", str(config)],
                              tmp_path)  # fmt: skip
    other = subprocess.run([sys.executable, "-m", "labnr", "calibrate", str(config)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert other.returncode == EXIT_LAB_BUSY, other.stderr
    assert f"PID {proc.pid}" in other.stderr and "labnr lock" in other.stderr
    assert proc.poll() is None  # the holder goes on
    assert_stopped_safely(lab, proc, signal.SIGTERM)


def test_sigterm_while_connecting_a_frozen_vna(
    served: tuple[VirtualLab, Path], tmp_path: Path
) -> None:
    """Pumps a crashed run left on are off before the VNA is tried; SIGTERM while the VNA
    hangs exits 143 with them confirmed off."""
    lab, config = served
    for source in lab.sources.values():
        source.state.output = True
    lab.vna.faults.freeze()  # answers nothing until cleared
    try:
        proc = subprocess.Popen([sys.executable, "-m", "labnr", "calibrate", str(config)],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while pumps_on(lab):  # switched off first, the VNA not even asked yet
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the pumps were not switched off at start"
            time.sleep(0.02)
        time.sleep(1.0)  # now waiting on the frozen analyser
        assert proc.poll() is None
        assert_stopped_safely(lab, proc, signal.SIGTERM)
    finally:
        lab.vna.faults.clear()
