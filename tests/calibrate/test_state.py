"""The calibration state file: round trip, atomic writes, corrupt and foreign files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

import labnr
from labnr.calibrate import (
    CalibrationState,
    StateFileError,
    StateMismatchError,
    config_hash,
    state_path,
)
from labnr.calibrate import state as state_mod
from labnr.calibrate.state import to_plain
from labnr.config import load_config
from labnr.fileio import UnsafePathError

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "calibration_dev.yaml"


def filled(path: Path) -> CalibrationState:
    st = CalibrationState.open(path, "dev", "h1")
    st.set(
        "flux",
        {"i0": 1.37e-4, "curve": np.array([1.0, 2.0])},
        run_ids=[3, 4],
        summary="sweet spot",
        duration_s=2.5,
        acquisitions=6,
        now=T0,
    )
    st.set(
        "modes",
        {"f": {"a": 5.31e9}, "ok": True, "nan": float("nan")},
        inputs={"flux": 1},
        now=T0 + timedelta(minutes=1),
    )
    return st


def test_round_trip(path: Path) -> None:
    filled(path)
    st = CalibrationState.open(path, "dev", "h1")
    assert st.nodes() == ["flux", "modes"] and st.revision == 2
    rec = st.get("flux")
    assert rec is not None
    assert rec.result == {"i0": 1.37e-4, "curve": [1.0, 2.0]}
    assert (rec.run_ids, rec.summary, rec.duration_s, rec.acquisitions) == (
        [3, 4],
        "sweet spot",
        2.5,
        6,
    )
    assert rec.timestamp == T0 and rec.labnr_version == labnr.__version__
    assert st.get("modes").inputs == {"flux": 1} and np.isnan(st.result("modes")["nan"])
    assert st.get("nothing") is None and "flux" in st and "nothing" not in st
    with pytest.raises(KeyError, match="no calibration result for node 'x'.*flux, modes"):
        st.result("x")
    assert st.age("flux", T0 + timedelta(hours=1)) == 3600.0 and st.age("x") is None
    # a human-readable, safe-loadable file with the documented keys
    text = path.read_text()
    assert text.startswith("# labnr calibration state")
    data = yaml.safe_load(text)
    assert list(data) == ["format_version", "device", "config_hash", "revision", "nodes"]
    assert data["nodes"]["flux"]["timestamp"] == "2025-05-01T09:00:00.000+00:00"
    # results are copies: changing one changes nothing
    st.result("flux")["i0"] = 0
    assert st.result("flux")["i0"] == 1.37e-4


def test_history_invalidate_and_failures(path: Path) -> None:
    st = CalibrationState.open(path, "dev", "h1", history_length=2)
    for i in range(4):
        st.set("flux", {"i0": i}, now=T0 + timedelta(seconds=i))
    assert [h["result"]["i0"] for h in st.history("flux")] == [2, 1]  # newest first, last 2
    st.record_failure("flux", "fit did not converge", now=T0)
    st.record_check("flux", False, "drifted", {"df": np.float32(2.0)}, now=T0)
    st.invalidate("flux", "flux jump", now=T0)
    st = CalibrationState.open(path, "dev", "h1", history_length=2)
    assert st.get("flux") is None
    hist = st.history("flux")
    assert hist[0]["result"] == {"i0": 3}
    assert hist[0]["invalidated"] == {
        "timestamp": "2025-05-01T09:00:00.000+00:00",
        "reason": "flux jump",
    }
    assert st.last_failure("flux")["message"] == "fit did not converge"
    assert st.last_check("flux")["data"] == {"df": 2.0}
    st.set("flux", {"i0": 5})  # a new result keeps the failure and check records
    assert st.last_failure("flux") is not None and len(st.history("flux")) == 2


def test_set_rejects_unstorable_values_and_leaves_the_state(path: Path) -> None:
    st = filled(path)
    before = path.read_text()
    with pytest.raises(TypeError, match=r"flux\.result\.s\[1\]: complex value"):
        st.set("flux", {"s": [1.0, 1j]})
    with pytest.raises(TypeError, match="key 3 is not a string"):
        st.set("flux", {3: 1.0})
    assert path.read_text() == before and st.revision == 2


def test_atomic_write_keeps_the_old_file_on_a_crash(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = filled(path)
    before = path.read_text()

    def crash(*args: object) -> None:
        raise KeyboardInterrupt  # killed mid-write: the temp file is written, not renamed

    monkeypatch.setattr(state_mod.os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        st.set("loop", {"phase": 1.0})
    monkeypatch.undo()

    def disk_full(*args: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(state_mod.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        st.set("loop", {"phase": 2.0})
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    # a stale temp file from a real crash is ignored
    (path.parent / f".{path.name}.abc.tmp").write_text("format_version: [")
    assert CalibrationState.open(path, "dev", "h1").nodes() == ["flux", "modes"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("format_version: 1\ndevice: dev\nnodes: {a: [", "not a valid calibration state file"),
        ("- just\n- a list\n", "expected a mapping, got list"),
        (
            "format_version: 1\ndevice: dev\nconfig_hash: h1\nrevision: 1\n"
            "nodes: {a: {result: {}, timestamp: yesterday}}\n",
            "nodes.a.timestamp: 'yesterday' is not an ISO-8601 time",
        ),
        (b"\xff\xfe\x00garbage", "not a valid calibration state file"),
    ],
)
def test_corrupt_file_is_named_backed_up_and_kept(
    path: Path, content: str | bytes, message: str
) -> None:
    path.parent.mkdir(parents=True)
    raw = content if isinstance(content, bytes) else content.encode()
    path.write_bytes(raw)
    with pytest.raises(StateFileError) as info:
        CalibrationState.open(path, "dev", "h1")
    text = str(info.value)
    assert str(path) in text and message in text and "--reset-state" in text
    backups = list(path.parent.glob("calibration_dev.yaml.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == raw
    assert str(backups[0]) in text
    assert path.read_bytes() == raw  # never discarded
    with pytest.raises(StateFileError):  # a second attempt reuses the identical backup
        CalibrationState.open(path, "dev", "h1")
    assert len(list(path.parent.glob("calibration_dev.yaml.corrupt-*"))) == 1
    st = CalibrationState.open(path, "dev", "h1", reset=True)  # reset: start empty
    assert st.nodes() == [] and not path.exists()
    assert backups[0].read_bytes() == raw


def test_newer_format_is_refused(path: Path) -> None:
    filled(path)
    data = yaml.safe_load(path.read_text())
    data["format_version"] = 99
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(StateFileError, match="format_version 99 was written by a newer labnr"):
        CalibrationState.open(path, "dev", "h1")


def test_config_mismatch_is_refused_or_reset(path: Path) -> None:
    filled(path)
    before = path.read_text()
    with pytest.raises(StateMismatchError, match=r"config hash h1.*hash h2.*--reset-state"):
        CalibrationState.open(path, "dev", "h2")
    with pytest.raises(StateMismatchError, match="device 'dev'.*device 'other'"):
        CalibrationState.open(path, "other", "h1")
    assert path.read_text() == before
    st = CalibrationState.open(path, "dev", "h2", reset=True)
    assert st.nodes() == [] and st.config_hash == "h2"
    (backup,) = path.parent.glob("calibration_dev.yaml.old-*")
    assert backup.read_text() == before
    st.set("flux", {"i0": 1.0})
    assert CalibrationState.open(path, "dev", "h2").nodes() == ["flux"]


def test_config_hash_and_state_path(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs" / "sim_jpc_circulator.yaml")
    h = config_hash(cfg)
    assert len(h) == 16 and h == config_hash(cfg)
    moved = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"data_dir": "x"})})
    assert config_hash(moved) == h  # moving the data folder keeps the calibration
    other = cfg.model_copy(update={"name": "another"})
    assert config_hash(other) != h
    assert config_hash({"b": 1, "a": [1, 2]}) == config_hash({"a": [1, 2], "b": 1})
    assert state_path(tmp_path, "jpc circ/1") == tmp_path / "calibration_jpc_circ_1.yaml"
    st = CalibrationState.for_config(cfg)
    assert st.path == cfg.path(cfg.storage.data_dir) / "calibration_jpc_circulator_sim.yaml"
    assert (st.device, st.config_hash) == ("jpc_circulator_sim", h)
    assert st.path is not None and not st.path.exists()  # nothing written until a result


def test_to_plain() -> None:
    assert to_plain({"a": (np.int64(1), np.bool_(True)), "b": np.eye(2), "p": Path("x")}) == {
        "a": [1, True],
        "b": [[1.0, 0.0], [0.0, 1.0]],
        "p": "x",
    }
    with pytest.raises(TypeError, match=r"result\.o: object value"):
        to_plain({"o": object()})


def test_in_memory_state_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    st = CalibrationState("dev", "h")
    st.set("a", {"v": 1})
    assert st.result("a") == {"v": 1} and list(tmp_path.iterdir()) == []


def test_state_file_writes_refuse_symlinks(path: Path, tmp_path: Path) -> None:
    victim = tmp_path / "outside.yaml"
    victim.write_text("someone else's file\n")
    path.parent.mkdir(parents=True)
    # a link planted at the state file's name is neither read nor written through
    path.symlink_to(victim)
    with pytest.raises(StateFileError, match="symbolic link"):
        CalibrationState.open(path, "dev", "h1")
    path.unlink()
    st = filled(path)
    # planted after the state was opened: the next save refuses and keeps everything
    saved = path.read_text()
    path.unlink()
    path.symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        st.set("loop", {"phase": 1.0})
    assert victim.read_text() == "someone else's file\n" and path.is_symlink()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    # the resume point of the lock (next to the state) is refused the same way
    from labnr.lock.resume import ResumePoint, load_resume, save_resume

    resume = path.parent / "lock_resume_dev.yaml"
    resume.symlink_to(victim)
    with pytest.raises(UnsafePathError):
        save_resume(resume, ResumePoint("dev", "h1", 1, {"k": 0.1}, 50.0, 1.0))
    point, why = load_resume(resume, "dev", "h1", 1)
    assert point is None and "symbolic link" in why
    assert victim.read_text() == "someone else's file\n"
    path.unlink()
    path.write_text(saved)
    assert CalibrationState.open(path, "dev", "h1").nodes() == ["flux", "modes"]
