"""The last locked point: the resume file and the supervisor's checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from synthetic_plant import KNOBS, SyntheticPlant

from labnr.lock import (
    ErrorSignal,
    LockController,
    LockSupervisor,
    SupervisorSettings,
    model_jacobian,
)
from labnr.lock.resume import ResumePoint, load_resume, resume_path, save_resume

SIGNAL = ErrorSignal.circulator("abc")
KNOB_VALUES = {"pump_ab_phase": 0.7, "pump_ab_amplitude": 0.1, "pump_bc_amplitude": 0.12}


def _point(**changes: object) -> ResumePoint:
    base = dict(device="dev", config_hash="abc123", operating_point_revision=7,
                knobs=dict(KNOB_VALUES), isolation_db=51.0, plant_time_s=3600.0)  # fmt: skip
    return ResumePoint(**{**base, **changes})  # type: ignore[arg-type]


def test_resume_path_sits_next_to_the_state_file(tmp_path: Path) -> None:
    p = resume_path(tmp_path / "data" / "calibration_my_dev.yaml", "my dev/1")
    assert p == tmp_path / "data" / "lock_resume_my_dev_1.yaml"


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "lock_resume_dev.yaml"
    save_resume(path, _point())
    point, why = load_resume(path, "dev", "abc123", 7, KNOB_VALUES)
    assert point is not None, why
    assert point.knobs == pytest.approx(KNOB_VALUES)
    assert point.isolation_db == 51.0 and point.plant_time_s == 3600.0
    assert point.timestamp  # stamped on write
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary file


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("other", "abc123", 7), "device"),
        (("dev", "fff", 7), "config_hash"),
        (("dev", "abc123", 8), "operating_point_revision"),  # recalibrated since
    ],
)
def test_a_point_of_another_calibration_is_refused(
    tmp_path: Path, args: tuple[str, str, int], word: str
) -> None:
    path = tmp_path / "r.yaml"
    save_resume(path, _point())
    point, why = load_resume(path, *args)
    assert point is None and word in why


def test_missing_corrupt_or_incomplete_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    assert load_resume(path, "dev", "abc123", 7)[0] is None
    path.write_text("{unclosed: [")
    assert "cannot be read" in load_resume(path, "dev", "abc123", 7)[1]
    save_resume(path, _point(knobs={**KNOB_VALUES, "pump_ab_phase": float("nan")}))
    assert "non-finite" in load_resume(path, "dev", "abc123", 7)[1]
    save_resume(path, _point())
    point, why = load_resume(path, "dev", "abc123", 7, {"pump_ab_phase": 0})
    assert point is None and "knobs" in why
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "format_version": 99}))
    assert "format_version" in load_resume(path, "dev", "abc123", 7)[1]


def _supervisor(plant: SyntheticPlant, calls: list, **settings: object) -> LockSupervisor:
    J = model_jacobian(plant.model(), plant.knobs(), SIGNAL, chain=plant.chain)

    def checkpoint(t: float, values: dict[str, float], iso: float) -> None:
        calls.append((t, values, iso))

    return LockSupervisor(plant, LockController(KNOBS, J), SIGNAL,
                          settings=SupervisorSettings(**settings),  # type: ignore[arg-type]
                          checkpoint=checkpoint)  # fmt: skip


def test_checkpoints_only_locked_reads_at_the_interval() -> None:
    plant = SyntheticPlant(np.random.default_rng(3))
    calls: list = []
    sup = _supervisor(plant, calls, checkpoint_interval=300.0)
    sup.run(3600.0)
    assert 11 <= len(calls) <= 13  # first locked read, then every >= 300 s
    times = [c[0] for c in calls]
    assert np.all(np.diff(times) >= 300.0)
    assert all(iso >= 40.0 for _, _, iso in calls)
    locked = {r.time: r for r in sup.log.reads()}
    for t, values, iso in calls:  # the knob values of that very read
        assert locked[t].knobs == pytest.approx(values)
        assert locked[t].worst_isolation_db == pytest.approx(iso)


def test_no_checkpoint_while_unlocked_and_a_failing_one_does_not_stop_the_lock() -> None:
    plant = SyntheticPlant(np.random.default_rng(4))
    calls: list = []
    sup = _supervisor(plant, calls, lock_db=80.0)  # never "locked" at this level
    sup.run(600.0)
    assert calls == []

    plant = SyntheticPlant(np.random.default_rng(5))
    J = model_jacobian(plant.model(), plant.knobs(), SIGNAL, chain=plant.chain)

    def broken(t: float, values: dict[str, float], iso: float) -> None:
        raise OSError("disk full")

    sup = LockSupervisor(plant, LockController(KNOBS, J), SIGNAL, checkpoint=broken)
    summary = sup.run(1800.0)
    assert sup.status == "done" and summary["fraction_above"]["40"] > 0.9
    failed = sup.log.events("checkpoint_failed")
    assert failed and "disk full" in failed[0].message
