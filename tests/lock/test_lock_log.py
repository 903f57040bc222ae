"""The lock's time series, its summary (the --json contract) and its QCoDeS run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import qcodes as qc
from synthetic_plant import SyntheticPlant
from test_lock_supervisor import supervisor

from labnr.lock import LockLog, write_qcodes

CONTRACT = {
    "duration_s",
    "fraction_above",
    "median_isolation_db",
    "relocks",
    "lock_acquisitions",
    "measurement_duty",
}


def small_log() -> LockLog:
    """Reads at 10, 20, 30, 100 s (worst 50, 35, 25, 45 dB), start 0, end 120 s."""
    log = LockLog(["S_a_b", "S_b_a"], ["pump_ab_phase"])
    log.start(0.0, {"pump_ab_phase": 0.1})
    for t, worst in [(10, 50.0), (20, 35.0), (30, 25.0), (100, 45.0)]:
        log.read(t, [worst, worst + 3], [-0.2, -0.3], {"pump_ab_phase": 0.1}, 0.5, 2)
        log.correction(t + 0.01, {"pump_ab_phase": 0.11}, "")
    log.event(30.0, "lost", "test")
    log.event(31.0, "relock", "test")
    log.finish(120.0)
    return log


def test_summary_is_exactly_the_cli_contract_and_time_weighted() -> None:
    s = small_log().summary()
    assert set(s) == CONTRACT and set(s["fraction_above"]) == {"30", "40"}
    assert s["duration_s"] == 120.0
    # each read stands for the interval before it; the last one also for the rest
    # 50 dB: 0-10 s, 35: 10-20, 25: 20-30, 45: 30-120
    assert s["fraction_above"]["40"] == pytest.approx(100 / 120)
    assert s["fraction_above"]["30"] == pytest.approx(110 / 120)
    assert s["median_isolation_db"] == 45.0
    assert s["relocks"] == 1
    assert s["lock_acquisitions"] == 8
    assert s["measurement_duty"] == pytest.approx(2.0 / 120)
    json.dumps(s)


def test_columns_and_plain_dict() -> None:
    log = small_log()
    a = log.to_arrays()
    n = len(log.rows)
    assert a["isolation_db"].shape == (n, 2) and a["time"].shape == (n,)
    reads = a["kind"] == "read"
    np.testing.assert_array_equal(a["worst_isolation_db"][reads], [50, 35, 25, 45])
    assert np.all(np.isnan(a["isolation_db"][~reads]))
    assert list(a["event"][a["kind"] == "event"]) == ["start", "lost", "relock"]
    np.testing.assert_allclose(a["pump_ab_phase"][a["kind"] == "correction"], 0.11)
    d = log.to_dict()
    assert set(d) == set(a) and json.loads(json.dumps(d, allow_nan=True))["time"][0] == 0.0
    assert log.reads_until(15.0, 40.0) == 3 and log.reads_until(100.0, 40.0) is None


def test_unknown_events_and_wrong_path_counts_are_refused() -> None:
    log = LockLog(["S_a_b"], [])
    with pytest.raises(ValueError, match="unknown lock event"):
        log.event(0.0, "hiccup")
    with pytest.raises(ValueError, match="2 isolation values for 1 paths"):
        log.read(0.0, [40.0, 41.0], [0.0], {}, 0.1)


def test_writes_a_qcodes_run_without_touching_the_global_database(tmp_path: Path) -> None:
    plant = SyntheticPlant(np.random.default_rng(0))
    sup = supervisor(plant)
    sup.run(600)
    before = qc.config.core.db_location
    db = tmp_path / "lock.db"
    run_id = write_qcodes(sup.log, db, sample="synthetic", metadata={"seed": 0})
    assert qc.config.core.db_location == before

    from qcodes.dataset import connect, load_by_run_spec

    conn = connect(str(db))
    try:
        ds = load_by_run_spec(captured_run_id=run_id, conn=conn)
        data = ds.get_parameter_data()
        iso = data["isolation_db"]
        n = len(sup.log.rows)
        assert iso["time"].shape == (n,) and iso["isolation_db"].shape == (n,)
        worst = sup.log.to_arrays()["worst_isolation_db"]
        np.testing.assert_allclose(iso["isolation_db"], worst, equal_nan=True)
        events = data["event"]["event"]
        assert set(events) >= {"start", "read", "correction", "locked", "stop"}
        assert ds.paramspecs["time"].unit == "s"
        assert ds.paramspecs["pump_ab_phase"].unit == "rad"
        assert ds.paramspecs["pump_bc_amplitude"].unit == "V"
        assert json.loads(ds.metadata["labnr_lock_summary"]) == json.loads(
            json.dumps(sup.log.summary())
        )
        assert ds.metadata["labnr_kind"] == "lock" and ds.metadata["seed"] == 0
    finally:
        conn.close()


def _rows(db: Path, run_id: int) -> dict[str, np.ndarray]:
    from qcodes.dataset import connect, load_by_id

    conn = connect(str(db))
    try:
        ds = load_by_id(run_id, conn=conn)
        data = ds.get_parameter_data()
        out = {"completed": np.array(ds.completed), **data["isolation_db"]}
        out["event"] = data["event"]["event"]
        return out
    finally:
        conn.close()


def test_a_streamed_log_is_in_the_database_while_it_runs_and_ends_as_the_same_run(
    tmp_path: Path,
) -> None:
    plant = SyntheticPlant(np.random.default_rng(0))
    sup = supervisor(plant)
    db = tmp_path / "lock.db"
    sup.start()
    stream = sup.log.stream_to(db, sample="synthetic", flush_period=0.05, flush_rows=7)
    sup.run(300)
    stream.flush()
    # before the end: every row so far is committed, the run is not completed
    mid = _rows(db, stream.run_id)
    assert not mid["completed"] and mid["time"].size == len(sup.log.rows) == stream.flushed
    sup.run(300)  # the same lock goes on
    run_id = write_qcodes(sup.log, db, sample="synthetic", metadata={"seed": 0})
    assert run_id == stream.run_id and stream.closed
    end = _rows(db, run_id)
    assert bool(end["completed"]) and end["time"].size == len(sup.log.rows)
    np.testing.assert_allclose(end["isolation_db"], sup.log.to_arrays()["worst_isolation_db"],
                               equal_nan=True)  # fmt: skip
    # identical to the log written at the end, as without a stream
    plain = write_qcodes(sup.log, tmp_path / "plain.db", sample="synthetic", metadata={"seed": 0})
    ref = _rows(tmp_path / "plain.db", plain)
    np.testing.assert_array_equal(end["time"], ref["time"])
    np.testing.assert_array_equal(end["event"], ref["event"])

    from qcodes.dataset import connect, load_by_id

    conn = connect(str(db))
    try:
        ds = load_by_id(run_id, conn=conn)
        assert json.loads(ds.metadata["labnr_lock_summary"]) == json.loads(
            json.dumps(sup.log.summary())
        )
        assert ds.metadata["labnr_kind"] == "lock" and ds.metadata["seed"] == 0
        assert json.loads(ds.metadata["labnr_holder"])["pid"] == os.getpid()
        assert ds.metadata["labnr_status"] == "completed"
        assert ds.metadata["labnr_outcome"] == "stop: duration reached"
        assert len(conn.execute("SELECT run_id FROM runs").fetchall()) == 1  # no second run
    finally:
        conn.close()


def test_a_lone_row_is_committed_within_the_flush_period(tmp_path: Path) -> None:
    """The last read before a long wait between reads is not held back until the next one."""
    log = LockLog(["S_a_b"], ["pump_ab_phase"])
    log.start(0.0, {"pump_ab_phase": 0.0})
    period = 0.1
    stream = log.stream_to(tmp_path / "lock.db", flush_period=period, flush_rows=1000)
    log.read(1.0, [42.0], [-0.5], {"pump_ab_phase": 0.0}, 0.1)
    deadline = time.monotonic() + 100 * period  # generous under load; typically ~period
    while stream.flushed < 2 and time.monotonic() < deadline:
        time.sleep(period / 10)
    assert stream.flushed == 2  # start event and the read, with no further row logged
    rows = _rows(tmp_path / "lock.db", stream.run_id)
    np.testing.assert_array_equal(rows["time"], [0.0, 1.0])
    assert not rows["completed"]
    log.finish(2.0)
    assert write_qcodes(log, tmp_path / "lock.db") == stream.run_id
    assert bool(_rows(tmp_path / "lock.db", stream.run_id)["completed"])


def test_a_stream_that_cannot_open_its_database_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "a_folder.db"
    folder.mkdir()  # a folder where the database file should be
    log = LockLog(["S_a_b"], [])
    with pytest.raises(RuntimeError, match="could not open a run in"):
        log.stream_to(folder)
    assert log.stream is None
