"""The lab lock on the virtual lab: disturbances injected through the simulator.

Each test cold-calibrates one seed of ``configs/sim_jpc_circulator.yaml`` (storage
in ``tmp_path``), locks with :class:`labnr.lock.session_lock.LabLockRun` and
then disturbs the *device* in the simulator (tests may): a line-phase step, a
flux jump, a broken pump line, a parametric instability; or interrupts the lock
and restarts it.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labnr.lock.resume import load_resume, resume_path
from labnr.lock.session_lock import LabLockRun
from labnr.session import open_lab

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, seed: int = 1) -> Path:
    src = ROOT / "configs" / "sim_jpc_circulator.yaml"
    cfg = yaml.safe_load(src.read_text())
    cfg["station"] = str((src.parent / cfg["station"]).resolve())
    cfg["virtual_lab"] = {**cfg["virtual_lab"], "seed": seed}
    cfg["storage"] = {"database": str(tmp_path / "labnr.db"), "data_dir": str(tmp_path / "data")}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Any]:
    with open_lab(_config(tmp_path)) as session:
        yield session


def _locked(lab: Any, seconds: float = 600.0) -> LabLockRun:
    runner = LabLockRun(lab, resume=False, out=io.StringIO())
    runner.prepare()
    runner.run(seconds)
    sup = runner.supervisor
    assert sup is not None and sup.status == "done" and sup.locked
    return runner


def _reads_after(runner: LabLockRun, t: float) -> list[Any]:
    assert runner.supervisor is not None
    return [r for r in runner.supervisor.log.reads() if r.time > t]


def _outputs(vl: Any) -> dict[str, bool]:
    return {name: src.state.output for name, src in vl.sources.items()}


def test_line_phase_step_recovered_within_five_reads(lab: Any) -> None:
    runner = _locked(lab)
    sup = runner.supervisor
    assert sup is not None
    t = sup.plant.now()
    lab.virtual_lab.device.line_phase["bc"] += np.radians(20.0)
    runner.run(300.0)
    reads = _reads_after(runner, t)
    assert reads[0].worst_isolation_db < 30.0  # the step is seen (a 20 deg loop error)
    n = sup.log.reads_until(t, 40.0)
    assert n is not None and n <= 5
    assert min(r.worst_isolation_db for r in reads[n:]) >= 40.0  # and it stays locked
    assert sup.relocks == 0


def test_flux_jump_loses_lock_and_reacquires(lab: Any) -> None:
    runner = _locked(lab, 300.0)
    sup = runner.supervisor
    assert sup is not None
    flux_before = lab.virtual_lab.flux_source.current
    t = sup.plant.now()
    lab.virtual_lab.jump_flux(0.05)  # modes a, b move by ~30 MHz, about a linewidth
    runner.run(300.0)
    lost = [e for e in sup.log.events("lost") if e.time > t]
    relock = [e for e in sup.log.events("relock") if e.time > t]
    assert len(lost) == 1 and "model mismatch" in lost[0].message
    assert sum(r.time <= lost[0].time for r in _reads_after(runner, t)) <= 2  # found at once
    assert len(relock) == 1 and sup.relocks == 1
    rec = runner.reacquisitions[0]
    assert rec.success and rec.acquisitions > 0
    # the flux node's check failed (the modes moved): it and its descendants re-ran
    assert "flux_sweet_spot" in rec.stages[0]
    # the calibration moved the bias to the new sweet spot
    assert lab.virtual_lab.flux_source.current != pytest.approx(flux_before, abs=1e-7)
    after = [r.worst_isolation_db for r in _reads_after(runner, relock[0].time)]
    assert after and np.median(after) >= 45.0 and min(after[1:]) >= 40.0
    assert sup.status == "done"


def test_failed_reacquisition_parks_with_pumps_off_and_flux_held(lab: Any) -> None:
    runner = _locked(lab, 300.0)
    sup = runner.supervisor
    vl = lab.virtual_lab
    assert sup is not None and all(_outputs(vl).values())
    flux_before = vl.flux_source.current
    vl.device.line_gain["bc"] = 0.0  # the bc pump line breaks: no coupling any more
    runner.run(600.0)
    assert sup.status == "parked"
    names = [e.event for e in sup.log.events()]
    assert names[-3:] == ["lost", "reacquire_failed", "parked"]
    rec = runner.reacquisitions[-1]
    assert not rec.success and len(rec.stages) == 2  # operating point, then the whole graph
    assert _outputs(vl) == {n: False for n in vl.sources}  # pumps off in the emulators
    assert vl.flux_source.current == pytest.approx(flux_before, abs=1e-12)  # flux held


def test_instability_cut_within_one_read(lab: Any) -> None:
    runner = _locked(lab, 300.0)
    sup = runner.supervisor
    vl = lab.virtual_lab
    assert sup is not None
    # the ring also has the amplification process a+b; the ab source lands on its
    # resonance and its line's gain doubles: g above sqrt(ka kb)/2, the device oscillates
    from labnr.sim.spec import LinkSpec

    ab = next(lk for lk in vl.spec.links if {lk.a, lk.b} == {"a", "b"})
    vl.spec.links.append(dataclasses.replace(ab, kind="gain"))
    freqs = vl.truth().configuration.frequencies
    t = sup.plant.now()
    with vl._lock:
        vl.sources["pump_ab"].state.frequency = freqs["a"] + freqs["b"]
        vl.device.line_gain["ab"] *= 2.0
    assert isinstance(vl.spec.links[-1], LinkSpec)
    runner.run(600.0)
    reads = _reads_after(runner, t)
    assert sup.status == "instability"
    assert len(reads) == 1  # cut on the very read that showed it
    assert [e.event for e in sup.log.events()][-1] == "instability"
    assert _outputs(vl) == {n: False for n in vl.sources}


def test_resume_from_last_locked_point(lab: Any) -> None:
    first = _locked(lab, 1300.0)  # checkpoints at the first locked read, then every 600 s
    assert first.supervisor is not None and first.lock is not None
    state_file = Path(lab.data_dir) / f"calibration_{lab.config.name}.yaml"
    path = resume_path(state_file, lab.config.name)
    rev = first._ident[2]
    point, why = load_resume(path, lab.config.name, first._ident[1], rev)
    assert point is not None, why
    assert point.isolation_db >= 40.0 and point.plant_time_s > 1000.0
    lab.pump.off()  # the lock is interrupted
    lab.virtual_lab.clock.advance(120.0)
    again = LabLockRun(lab, out=io.StringIO())
    sup = again.prepare()
    assert again.resumed is not None and again.calibration_acquisitions == 0
    assert sup.log.events("resumed")
    start = sup.log.rows[0].knobs
    assert start == pytest.approx(point.knobs)
    again.run(300.0)
    assert min(r.worst_isolation_db for r in sup.log.reads()) >= 40.0


def test_stale_resume_point_falls_back_to_calibration(lab: Any) -> None:
    first = _locked(lab, 300.0)
    assert first.supervisor is not None
    device, chash, rev, path = first._ident
    assert path is not None
    point, _ = load_resume(path, device, chash, rev)
    assert point is not None
    bad = dataclasses.replace(point, knobs={**point.knobs, "pump_ab_phase": point.knobs[
        "pump_ab_phase"] + 0.5})  # fmt: skip
    from labnr.lock.resume import save_resume

    save_resume(path, bad)
    lab.pump.off()
    again = LabLockRun(lab, out=io.StringIO())
    sup = again.prepare()
    assert again.resumed is None and "recalibrating" in again.resume_note
    assert again.calibration_acquisitions > 0  # the graph ran (its checks at least)
    assert not sup.log.events("resumed")
    again.run(300.0)
    assert sup.locked
