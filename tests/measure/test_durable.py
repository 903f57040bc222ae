"""Durable data: no-follow atomic exports, unique names, recovery after kill -9 (issue 12)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import qcodes as qc
import xarray as xr
from qcodes.dataset import initialise_or_create_database_at, load_by_id
from qcodes.dataset.sqlite.database import connect
from synthetic_runs import PHASES, SyntheticRun, circulator_s, write_run

from labnr.fileio import UnsafePathError, clean_temp_files, safe_target
from labnr.measure.export import (
    export_file_name,
    export_netcdf,
    export_to_folder,
    to_touchstone,
)
from labnr.measure.loading import load
from labnr.measure.recovery import recover


@pytest.fixture
def keep_db_location() -> Iterator[None]:
    old = qc.config.core.db_location
    try:
        yield
    finally:
        qc.config.core.db_location = old


def _run_in(db: Path, points: int = 3) -> SyntheticRun:
    db.parent.mkdir(parents=True, exist_ok=True)
    initialise_or_create_database_at(db)
    return write_run("sweep_pump_phase", [("pump_ab_phase", "rad", PHASES[:points])], circulator_s)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def _set_meta(db: Path, run_id: int, **meta: object) -> None:
    conn = connect(str(db))
    try:
        ds = load_by_id(run_id, conn=conn)
        for key, value in meta.items():
            ds.add_metadata(key, value)
    finally:
        conn.close()


def _unfinish(db: Path, run_id: int) -> None:
    """Put a completed run back in the state a kill -9 leaves: is_completed = 0."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET is_completed = 0, completed_timestamp = NULL "
                     "WHERE run_id = ?", (run_id,))  # fmt: skip


def _outside(tmp_path: Path) -> tuple[Path, bytes]:
    victim = tmp_path / "outside" / "precious.txt"
    victim.parent.mkdir()
    victim.write_bytes(b"not labnr's file\n")
    return victim, victim.read_bytes()


# ------------------------------------------------------------------ no-follow, in the folder
def test_symlink_at_the_final_name_is_refused(tmp_path: Path, keep_db_location: None) -> None:
    run = _run_in(tmp_path / "a.db")
    data = tmp_path / "data"
    data.mkdir()
    victim, before = _outside(tmp_path)
    guid = load(run.run_id).attrs["guid"]
    (data / export_file_name(run.run_id, guid)).symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        export_to_folder(run.run_id, data)
    assert victim.read_bytes() == before
    assert sorted(p.name for p in data.iterdir()) == [export_file_name(run.run_id, guid)]


def test_symlink_at_the_temporary_name_is_never_followed(
    tmp_path: Path, keep_db_location: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run_in(tmp_path / "a.db")
    data = tmp_path / "data"
    data.mkdir()
    victim, before = _outside(tmp_path)
    guid = load(run.run_id).attrs["guid"]
    name = export_file_name(run.run_id, guid)
    # an attacker who guessed the "random" part plants a link there (and at the old .part name)
    planted = data / f".labnr-{os.getpid()}-guessed1-{name}.tmp"
    planted.symlink_to(victim)
    (data / f"run_{run.run_id}.h5.part").symlink_to(victim)
    names = iter(["guessed1", "fresh123", "fresh456"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    path = export_to_folder(run.run_id, data)
    assert victim.read_bytes() == before  # O_EXCL | O_NOFOLLOW: the next name was used
    assert path == data.resolve() / name and not path.is_symlink()
    xr.testing.assert_identical(load(path), load(run.run_id))
    assert planted.is_symlink()  # left as it was, not written through


def test_links_at_netcdf_and_touchstone_names_are_refused(
    tmp_path: Path, keep_db_location: None
) -> None:
    run = _run_in(tmp_path / "a.db")
    victim, before = _outside(tmp_path)
    out = tmp_path / "nc"
    out.mkdir()
    ds = load(run.run_id)
    (out / f"labnr_{run.run_id}_{ds.attrs['guid']}.nc").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        export_netcdf(run.run_id, out)
    (tmp_path / "one.s3p").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        to_touchstone(ds.isel(pump_ab_phase=0), tmp_path / "one.s3p")
    assert victim.read_bytes() == before


def test_a_path_outside_the_folder_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(UnsafePathError, match="outside the folder"):
        safe_target(data / ".." / "escape.h5", data)
    (data / "sub").symlink_to(tmp_path)  # a link to a folder outside
    with pytest.raises(UnsafePathError, match="outside the folder"):
        safe_target(data / "sub" / "escape.h5", data)
    with pytest.raises(ValueError, match="not a QCoDeS GUID"):
        export_file_name(1, "../../etc/passwd")


# ------------------------------------------------------------------ unique names
def test_two_databases_sharing_a_data_dir_never_overwrite_each_other(
    tmp_path: Path, keep_db_location: None
) -> None:
    data = tmp_path / "data"
    run_a = _run_in(tmp_path / "a.db", points=3)
    path_a = export_to_folder(run_a.run_id, data, db=run_a.db)
    run_b = _run_in(tmp_path / "moved" / "b.db", points=5)  # a new database, same run id
    assert run_a.run_id == run_b.run_id
    path_b = export_to_folder(run_b.run_id, data, db=run_b.db)
    assert path_a != path_b and sorted(data.iterdir()) == sorted([path_a, path_b])
    back_a, back_b = load(path_a), load(path_b)
    assert back_a.attrs["guid"] == load(run_a.run_id, db=run_a.db).attrs["guid"]
    assert back_b.sizes["pump_ab_phase"] == 5 and back_a.sizes["pump_ab_phase"] == 3
    # a re-export of the same run replaces its own file, nothing else
    assert export_to_folder(run_a.run_id, data, db=run_a.db) == path_a
    xr.testing.assert_identical(load(path_b), back_b)
    # another run's file under this run's name is never replaced
    path_a.unlink()
    path_a.write_bytes(path_b.read_bytes())
    with pytest.raises(FileExistsError, match="does not overwrite"):
        export_to_folder(run_a.run_id, data, db=run_a.db)
    assert load(path_a).attrs["guid"] == back_b.attrs["guid"]
    assert not [p for p in data.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ recovery
def test_recovery_exports_marks_killed_runs_and_cleans_temp_files(
    tmp_path: Path, keep_db_location: None
) -> None:
    db, data = tmp_path / "labnr.db", tmp_path / "data"
    data.mkdir()
    dead = _dead_pid()
    here = socket.gethostname()
    done = _run_in(db, points=4)  # completed, its export never happened (killed at the rename)
    _set_meta(db, done.run_id, labnr_export="pending")
    killed = _run_in(db, points=2)  # killed mid-run
    _set_meta(db, killed.run_id, labnr_export="pending",
              labnr_holder=json.dumps({"host": here, "pid": dead, "start": None}))  # fmt: skip
    _unfinish(db, killed.run_id)
    live = _run_in(db, points=2)  # another live labnr process is writing this one
    _set_meta(db, live.run_id, labnr_holder=json.dumps({"host": here, "pid": os.getpid()}))
    _unfinish(db, live.run_id)
    foreign = _run_in(db, points=2)
    with sqlite3.connect(db) as conn:  # a user's own QCoDeS run: no labnr metadata at all
        conn.execute("UPDATE runs SET labnr_kind = NULL, labnr_ports = NULL, labnr_config = NULL"
                     ", labnr_version = NULL, labnr_knobs = NULL, labnr_band_centres = NULL, "
                     "labnr_receiver_offsets = NULL, labnr_receiver_multipliers = NULL, "
                     "labnr_span = NULL, labnr_status = NULL, labnr_points = NULL "
                     "WHERE run_id = ?", (foreign.run_id,))  # fmt: skip
    _unfinish(db, foreign.run_id)
    victim, before = _outside(tmp_path)
    stale = data / f".labnr-{dead}-abcdefgh-run_9.h5.tmp"
    stale.write_bytes(b"half an export")
    mine = data / f".labnr-{os.getpid()}-abcdefgh-run_9.h5.tmp"  # a live writer's
    mine.write_bytes(b"being written")
    legacy = data / "run_3.h5.part"
    legacy.write_bytes(b"old version's temp")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    link = data / f".labnr-{dead}-zzzzzzzz-x.tmp"
    link.symlink_to(victim)
    other = data / "notes.txt"
    other.write_text("keep me")

    report = recover(db, data)

    assert report.interrupted == [killed.run_id]
    assert sorted(r for r, _ in report.exported) == [done.run_id, killed.run_id]
    assert sorted(report.removed) == sorted([stale, legacy])
    assert mine.exists() and link.is_symlink() and other.read_text() == "keep me"
    assert victim.read_bytes() == before
    assert len(report.left) == 2 and not report.problems
    conn = connect(str(db))
    try:
        k = load_by_id(killed.run_id, conn=conn)
        assert k.completed and k.metadata["labnr_status"] == "interrupted"
        assert k.metadata["labnr_interrupted"] == 1 and "killed" in k.metadata["labnr_outcome"]
        assert not load_by_id(live.run_id, conn=conn).completed
        assert not load_by_id(foreign.run_id, conn=conn).completed
        for run in (done, killed):
            ds = load_by_id(run.run_id, conn=conn)
            name = ds.metadata["labnr_export"]
            assert name == export_file_name(run.run_id, ds.guid)
            back = load(data / name)
            assert back.attrs["points_measured"] == len(run.points)
            # knobs come back through SQLite's 15-digit text (docs/data_format.md)
            np.testing.assert_allclose(back["pump_ab_phase"].values, run.knobs[0][2], rtol=1e-14)
        assert load(data / load_by_id(killed.run_id, conn=conn).metadata["labnr_export"]).attrs[
            "status"] == "interrupted"  # fmt: skip
    finally:
        conn.close()
    # a second recovery has nothing left to do
    again = recover(db, data)
    assert not (again.interrupted or again.exported or again.removed) and again.summary() == ""


def test_recovery_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    report = recover(tmp_path / "none.db", tmp_path / "nodata")
    assert report.summary() == "" and not (tmp_path / "none.db").exists()
    assert clean_temp_files(tmp_path / "nodata") == []


# ------------------------------------------------------------------ kill -9 mid-lock
_LOCK_WRITER = """
import sys, time
from labnr.lock.log import LockLog
log = LockLog(["S_a_b"], ["pump_ab_phase"], {"pump_ab_phase": "rad"})
log.start(0.0, {"pump_ab_phase": 0.0})
stream = log.stream_to(sys.argv[1], sample="killed", flush_period=0.05, flush_rows=10_000)
print("run", stream.run_id, flush=True)
k, last = 0, -1
while True:
    k += 1
    log.read(float(k), [30.0 + k % 7], [-0.5], {"pump_ab_phase": 1e-3 * k}, 0.01)
    if stream.flushed != last:
        last = stream.flushed
        print("flushed", last, k, flush=True)
    time.sleep(0.002)
"""


def test_sigkill_mid_lock_keeps_the_rows_up_to_the_last_flush(tmp_path: Path) -> None:
    db = tmp_path / "lock.db"
    proc = subprocess.Popen([sys.executable, "-c", _LOCK_WRITER, str(db)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    flushed, run_id = 0, None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while flushed < 40 and time.monotonic() < deadline:
            words = proc.stdout.readline().split()
            if words and words[0] == "run":
                run_id = int(words[1])
            elif words and words[0] == "flushed":
                flushed = int(words[1])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL and run_id is not None and flushed >= 40
    conn = connect(str(db))
    try:
        ds = load_by_id(run_id, conn=conn)
        assert not ds.completed  # killed: nobody closed it
        data = ds.get_parameter_data()["isolation_db"]
        t, iso = data["time"], data["isolation_db"]
        assert t.size >= flushed  # every row reported committed is there
        assert t[0] == 0.0  # the start event, then the reads 1, 2, ... without a gap
        np.testing.assert_array_equal(t[1:], np.arange(1, t.size))
        np.testing.assert_array_equal(iso[1:], 30.0 + np.arange(1, t.size) % 7)
    finally:
        conn.close()
    report = recover(db, None)
    assert report.interrupted == [run_id]
    conn = connect(str(db))
    try:
        ds = load_by_id(run_id, conn=conn)
        assert ds.completed and ds.metadata["labnr_status"] == "interrupted"
        assert ds.get_parameter_data()["isolation_db"]["time"].size == t.size
    finally:
        conn.close()


_SWEEP_WRITER = """
import json, sys, time
import numpy as np
from qcodes.dataset import initialise_or_create_database_at
sys.path.insert(0, sys.argv[2])
from synthetic_runs import circulator_s
from qcodes.dataset import Measurement, load_or_create_experiment
from labnr.fileio import holder
initialise_or_create_database_at(sys.argv[1])
meas = Measurement(exp=load_or_create_experiment("labnr_tests", sample_name="jpc"),
                   name="sweep_pump_phase")
meas.write_period = 1e-3
meas.register_custom_parameter("pump_ab_phase", unit="rad")
meas.register_custom_parameter("frequency", unit="Hz", paramtype="array")
for o in "abc":
    for i in "abc":
        meas.register_custom_parameter(f"S_{o}_{i}", paramtype="array",
                                       setpoints=("pump_ab_phase", "frequency"))
freq = np.linspace(-40e6, 40e6, 101)
with meas.run() as saver:
    ds = saver.dataset
    ds.add_metadata("labnr_holder", json.dumps(holder()))
    ds.add_metadata("labnr_kind", "sweep_pump_phase")
    ds.add_metadata("labnr_ports", json.dumps(["a", "b", "c"]))
    ds.add_metadata("labnr_knobs", json.dumps(["pump_ab_phase"]))
    ds.add_metadata("labnr_export", "pending")
    for k, phase in enumerate(np.linspace(0, 1, 1000)):
        s = circulator_s((phase,), freq)
        saver.add_result(("pump_ab_phase", phase), ("frequency", freq),
                         *[(f"S_{o}_{i}", s[:, p, q]) for p, o in enumerate("abc")
                           for q, i in enumerate("abc")])
        saver.flush_data_to_database()
        print("stored", k + 1, flush=True)
        time.sleep(0.01)
"""


def test_a_sweep_killed_with_sigkill_is_marked_and_exported_at_the_next_start(
    tmp_path: Path,
) -> None:
    db, data = tmp_path / "labnr.db", tmp_path / "data"
    here = Path(__file__).resolve().parent
    proc = subprocess.Popen([sys.executable, "-c", _SWEEP_WRITER, str(db), str(here)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    stored = 0
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while stored < 5 and time.monotonic() < deadline:
            words = proc.stdout.readline().split()
            stored = int(words[1]) if words and words[0] == "stored" else stored
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert stored >= 5
    report = recover(db, data)
    assert report.interrupted == [1] and [r for r, _ in report.exported] == [1]
    back = load(report.exported[0][1])
    assert back.attrs["status"] == "interrupted" and back.attrs["points_measured"] >= stored
    assert back.attrs["interrupted"] == 1 and "killed" in back.attrs["outcome"]
