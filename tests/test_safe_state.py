"""The one safe state (pump outputs off, flux held) on every abnormal exit.

Exceptions and Ctrl-C inside a sweep are in tests/measure/test_interrupt.py;
persistent instrument faults in sweeps, calibration and the lock in
tests/test_fault_matrix.py. Here: the definition itself, SIGTERM sent to a
real ``labnr calibrate`` process (the virtual lab runs in this process, so its
emulators can be inspected after the other one is gone), and the lock's
instability cut on the lab.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import pyvisa
import qcodes as qc
import yaml

from labnr.safety import Terminated, safe_state, sigterm_as_interrupt
from labnr.session import LabSession, open_lab
from labnr.sim.lab import VirtualLab

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sim_jpc_circulator.yaml"


def flux_moves(lab: VirtualLab, rate: float) -> list[str]:
    """Jumps, or segments faster than ``rate``, in the GS200's output history."""
    hist = list(lab.flux_source.state.history)
    bad = []
    for (t0, v0), (t1, v1) in zip(hist, hist[1:], strict=False):
        dv, dt = abs(v1 - v0), t1 - t0
        if dv > 1e-12 and (dt <= 0 or dv / dt > rate * (1 + 1e-6)):
            bad.append(f"{dv:.3g} A in {dt:.3g} s at t={t0:.3f}")
    return bad


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabSession]:
    old = qc.config.core.db_location
    session = open_lab(CONFIG, database=tmp_path / "labnr.db", data_dir=tmp_path / "data")
    try:
        yield session
    finally:
        session.close()
        qc.config.core.db_location = old


def test_safe_state_switches_pumps_off_and_sends_nothing_to_the_flux(lab: LabSession) -> None:
    vl = lab.virtual_lab
    lab.flux.output(True)
    lab.flux.source.ramp(50e-6, lab.flux.ramp_rate(), lab.flux.max_step())
    lab.pump.set_tones({t: {"amplitude": 0.05} for t in lab.pump.tone_names})
    lab.pump.output(True)
    assert all(s.state.output for s in vl.sources.values())
    history = list(vl.flux_source.state.history)
    seen: list[str] = []
    original = vl.flux_source.process
    vl.flux_source.process = lambda m: (seen.append(m), original(m))[1]
    try:
        assert safe_state(lab) == []
    finally:
        vl.flux_source.process = original
    assert not any(s.state.output for s in vl.sources.values())
    assert seen == [] and list(vl.flux_source.state.history) == history  # flux untouched
    assert vl.flux_source.state.level == pytest.approx(50e-6) and vl.flux_source.state.output


def test_safe_state_switches_an_awg_pump_off_through_a_dropped_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = qc.config.core.db_location
    em = open_lab(ROOT / "configs" / "sim_em_circulator.yaml", database=tmp_path / "em.db",
                  data_dir=tmp_path / "data")  # fmt: skip
    try:
        vl = em.virtual_lab
        em.pump.set_tones({t: {"amplitude": 0.02} for t in em.pump.tone_names})
        em.pump.output(True)
        playing = [n for n in vl.awg.state.channels if vl.awg.state.is_playing(n)]
        los = [s for s in vl.sources.values() if s.state.output]
        assert playing and los  # IQ pumps: AWG channels and LO sources on
        vl.awg.faults.drop_connection(0)  # the AWG's LAN link resets
        assert safe_state(em) == []
        assert any("awg: reconnected" in r.getMessage() for r in caplog.records)
        state = vl.awg.state
        assert not any(state.channels[n].output_on for n in playing)
        assert not any(s.state.output for s in vl.sources.values())
    finally:
        em.close()
        qc.config.core.db_location = old


def test_sigterm_raises_terminated_once_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)  # the handler raises in the main thread at once
    assert signal.getsignal(signal.SIGTERM) is before
    assert issubclass(Terminated, KeyboardInterrupt)  # every Ctrl-C cleanup applies


def _external_config(tmp: Path, station: Path) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg.update(simulate=False, station=str(station))
    cfg.pop("virtual_lab")
    cfg["storage"] = {"database": str(tmp / "labnr.db"), "data_dir": str(tmp / "data")}
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _query(address: str, command: str) -> str:
    rm = pyvisa.ResourceManager("@py")
    try:
        res = rm.open_resource(address, read_termination="\n", write_termination="\n")
        res.timeout = 2000
        return str(res.query(command)).strip()
    finally:
        rm.close()


def test_sigterm_during_calibrate_leaves_the_lab_safe(tmp_path: Path) -> None:
    vl = VirtualLab("jpc_circulator", seed=1).start()
    try:
        config = _external_config(tmp_path, vl.write_station_yaml(tmp_path / "station.yaml"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "labnr", "calibrate", str(config)],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not any(s.state.output for s in vl.sources.values()):  # pump calibration runs
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the pumps never came on"
            time.sleep(0.02)
        time.sleep(0.2)
        level = vl.flux_source.state.level
        assert level != 0.0 and vl.flux_source.state.output  # flux at the sweet spot found
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert "terminated (SIGTERM)" in err and "Traceback" not in err
        # the emulators, read over the wire after the process is gone
        for name, address in vl.addresses.items():
            if name.startswith("pump_"):
                assert _query(address, "OUTP?") in ("0", "OFF"), name
        flux_address = vl.addresses["flux"]
        assert float(_query(flux_address, ":SOUR:LEV?")) == pytest.approx(level, abs=1e-9)
        assert _query(flux_address, ":OUTP?") in ("1", "ON")  # held, not switched off
        assert flux_moves(vl, 100e-6) == []  # the config's 100 uA/s: never faster, no jump
        # every dataset the calibration wrote is completed
        import sqlite3

        with sqlite3.connect(tmp_path / "labnr.db") as conn:
            runs = list(conn.execute("SELECT run_id, completed_timestamp FROM runs"))
        assert runs and all(done is not None for _, done in runs)
    finally:
        vl.stop()


def test_lock_cuts_the_pumps_on_instability(lab: LabSession, monkeypatch) -> None:
    """A read showing gain (a growing instability) switches the pumps off at once."""
    from labnr.lock.cli import run_lock

    vl = lab.virtual_lab
    point = lab.vna.point
    calls = {"n": 0}

    def unstable_after_calibration(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        values = point(*args, **kwargs)
        calls["n"] += 1
        return values * (1e3 if calls["armed"] else 1.0)

    calls["armed"] = False

    class Out:
        def write(self, s: str) -> int:
            if "lock start" in s:
                calls["armed"] = True
            return len(s)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(lab.vna, "point", unstable_after_calibration)
    summary, log, _ = run_lock(lab, 300.0, out=Out())
    assert calls["armed"] and [e.event for e in log.events()].count("instability") == 1
    assert not any(s.state.output for s in vl.sources.values())  # cut by the lock itself
    assert np.isfinite(summary["duration_s"])


def test_start_switches_crashed_run_pumps_off_and_refuses_a_wrong_instrument(
    tmp_path: Path,
) -> None:
    """pump_ab's address points at the GS200: refused by *IDN? before any write (the flux
    keeps its level and output); the other pumps, left on by a crashed run, are confirmed off."""
    vl = VirtualLab("jpc_circulator", seed=1).start()
    try:
        station = vl.write_station_yaml(tmp_path / "station.yaml")
        entries = yaml.safe_load(station.read_text())
        entries["instruments"]["pump_ab"]["address"] = vl.addresses["flux"]
        station.write_text(yaml.safe_dump(entries))
        config = _external_config(tmp_path, station)
        flux = vl.flux_source.state
        flux.output, flux.level = True, 136e-6  # as the last run left it (CURR mode)
        for source in vl.sources.values():
            source.state.output = True
        proc = subprocess.run(
            [sys.executable, "-m", "labnr", "calibrate", str(config)],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "pump_ab: NOT confirmed" in err[0] and "*IDN?" in err[0]
        assert "confirmed off (read back): pump_bc, pump_ca" in err[0]
        assert not vl.sources["pump_bc"].state.output and not vl.sources["pump_ca"].state.output
        assert flux.output and flux.level == pytest.approx(136e-6)  # nothing written to it
        assert flux_moves(vl, 100e-6) == []
    finally:
        vl.stop()
