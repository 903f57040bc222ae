"""The five safety checks of a hostile cell, measured from outside labnr.

- flux: the GS200 emulator's own history (:func:`probe.flux_record`): the
  largest step the coil saw, and whether its output is still on;
- pumps: the pump sources' output switches polled straight from the emulators
  (:class:`probe.PumpWatch`) after an abnormal exit, and at the next start;
- data: VNA trace replies that reached labnr (the proxy's log) while a run
  was open against what that run holds in the QCoDeS database after the
  process died (read with sqlite3), and lock reads against the lock log's rows;
- stray files: the cell's folder tree before and after, outside the
  configured storage folders;
- tracebacks: the word ``Traceback`` on stdout or stderr.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hostile.probe import DATA_CHANNEL, DATA_QUERY, SWEEP_TYPE_WRITE
from labnr.sim.proxy import Event

__all__ = ["DbContents", "count_tracebacks", "db_contents", "delivered_traces", "snapshot",
           "stray_files"]  # fmt: skip

_DATA_RE = re.compile(DATA_QUERY.encode(), re.IGNORECASE)
_TYPE_RE = re.compile(SWEEP_TYPE_WRITE.encode(), re.IGNORECASE)
_CHAN_RE = re.compile(DATA_CHANNEL.encode(), re.IGNORECASE)
#: Tables that are QCoDeS bookkeeping, not a run's results.
_LOCK_NAME = "lock"


def snapshot(root: Path, exclude: Sequence[Path]) -> dict[str, tuple[int, int, int, str]]:
    """Every file, folder and link under ``root`` but ``exclude``: size, mtime, inode, kind."""
    out: dict[str, tuple[int, int, int, str]] = {}
    skip = [Path(os.path.abspath(p)) for p in exclude]
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not any(_within(here / d, s) for s in skip)]
        for name in [*filenames, *dirnames]:
            path = here / name
            if any(_within(path, s) for s in skip):
                continue
            st = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            size = st.st_size if kind != "dir" else 0
            mtime = st.st_mtime_ns if kind != "dir" else 0
            out[str(path.relative_to(root))] = (size, mtime, st.st_ino, kind)
    return out


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def stray_files(before: dict[str, tuple[int, int, int, str]],
                after: dict[str, tuple[int, int, int, str]]) -> list[str]:  # fmt: skip
    """Paths created, changed or removed between two snapshots."""
    changed = [p for p in after if before.get(p) != after[p]]
    removed = [p for p in before if p not in after]
    return sorted(changed + removed)


def count_tracebacks(*texts: str) -> int:
    """Occurrences of ``Traceback`` in the terminal output."""
    return sum(t.count("Traceback") for t in texts)


@dataclass(frozen=True)
class DbContents:
    """What a labnr QCoDeS database holds (read after the process ended).

    Attributes
    ----------
    windows : tuple of (float, float or None, int, int)
        Per run but lock logs: start and completion (``time.time()``; None while
        not completed), stored S-element traces (non-null array cells), and the
        S-element columns (traces one point holds).
    traces : int
        Stored S-element traces of every run but lock logs.
    per_point : int
        S-element columns of the last such run (traces one point holds).
    lock_times : tuple of float
        ``time`` of every lock-log row (``time.monotonic`` of the lock's process).
    runs : int
        Runs in the database.
    incomplete : int
        Runs with ``is_completed = 0``.
    error : str
        Why the database could not be read ('' if it could, or does not exist).
    """

    windows: tuple[tuple[float, float | None, int, int], ...] = ()
    traces: int = 0
    per_point: int = 0
    lock_times: tuple[float, ...] = ()
    runs: int = 0
    incomplete: int = 0
    error: str = ""


def db_contents(path: Path) -> DbContents:
    """Count stored traces and lock-log rows in ``path`` (an absent database holds nothing)."""
    if not path.is_file():
        return DbContents()
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        return DbContents(error=f"{type(exc).__name__}: {exc}")
    try:
        return _read(con)
    except sqlite3.Error as exc:
        return DbContents(error=f"{type(exc).__name__}: {exc}")
    finally:
        con.close()


def _read(con: sqlite3.Connection) -> DbContents:
    runs = con.execute("select name, result_table_name, is_completed, run_timestamp, "
                       "completed_timestamp from runs").fetchall()  # fmt: skip
    traces = per_point = incomplete = 0
    lock_times: list[float] = []
    windows = []
    for name, table, completed, started, ended in runs:
        incomplete += int(not completed)
        cols = [c[1] for c in con.execute(f'pragma table_info("{table}")')]
        if name == _LOCK_NAME and "time" in cols:
            lock_times += [float(t) for (t,) in con.execute(f'select time from "{table}"')
                           if t is not None]  # fmt: skip
            continue
        s_cols = [c for c in cols if c.startswith("S_")]
        stored = sum(con.execute(f'select count("{c}") from "{table}"').fetchone()[0]
                     for c in s_cols)  # fmt: skip
        traces += stored
        if s_cols:
            per_point = len(s_cols)
            start = float(started) if started is not None else float("-inf")
            end = float(ended) if ended is not None else None
            windows.append((start, end, stored, len(s_cols)))
    return DbContents(tuple(windows), traces, per_point, tuple(sorted(lock_times)), len(runs),
                      incomplete)  # fmt: skip


def delivered_traces(events: Iterable[Event], before: float) -> tuple[list[float], list[float]]:
    """Times of the VNA replies delivered to labnr before ``before``: (sweep traces, point reads).

    A reply is a point read when its channel was last set to a ``CW`` sweep
    (one frequency: a feedback read of the lock or of a calibration's
    refinement), a sweep trace otherwise. Dropped replies never arrived.
    """
    kinds: dict[int, bytes] = {}
    traces: list[float] = []
    points: list[float] = []
    for e in events:
        if e.kind == "write":
            for unit in e.text.split(b";"):
                m = _TYPE_RE.search(unit)
                if m is not None:
                    kinds[int(m.group("chan"))] = m.group("kind").upper()
            continue
        if (e.kind != "reply" or e.tampered == "drop" or e.time >= before or e.query is None
                or not _DATA_RE.search(e.query)):  # fmt: skip
            continue
        m = _CHAN_RE.search(e.query)
        cw = m is not None and kinds.get(int(m.group("chan"))) == b"CW"
        (points if cw else traces).append(e.time)
    return traces, points


def points_lost(db: DbContents, traces: Sequence[float], points: Sequence[float],
                stops: Sequence[float], kills: Sequence[float], end: float, lock_grace: float,
                to_wall: float) -> tuple[int, str]:  # fmt: skip
    """Measured points that reached labnr but are not in the database; and how counted.

    Sweep traces (``time.monotonic()``; ``to_wall`` added gives ``time.time()``)
    delivered while a run was open (from its start to its completion, or to the
    kill -9 of its process, ``kills``) are that run's points: all must be
    stored but those of the one point in flight when a process was stopped
    (``stops``, signals and kills) before the run closed (a kill before the
    run opened does not count: that process is dead). Traces outside every run (a check's sweep that
    is not kept) are only counted. Point reads after the lock log's first row
    belong to the lock: each must be covered by a later lock row unless it came
    within ``lock_grace`` s of ``end``. Point reads outside a lock (a
    calibration's refinement) belong to no run and are only counted.
    """
    wall = [t + to_wall for t in traces]
    stops_wall = sorted(t + to_wall for t in stops)
    kills_wall = sorted(t + to_wall for t in kills)
    ds_lost = in_runs = 0
    for start, finish, stored, per_point in db.windows:
        close = finish if finish is not None else float("inf")  # a re-run may complete it
        # a signal before the run started may be acted on inside it; a kill before it cannot
        cut = any(t <= close and not (t < start and t in kills_wall) for t in stops_wall)
        close = next((t for t in kills_wall if start <= t <= close), close)
        delivered = sum(1 for t in wall if start <= t <= close)
        in_runs += delivered
        ds_lost += max(0, delivered - stored - (per_point if cut else 0))
    lock_start = db.lock_times[0] if db.lock_times else float("inf")
    lock = [t for t in points if t >= lock_start]
    last_row = db.lock_times[-1] if db.lock_times else float("-inf")
    lock_lost = sum(1 for t in lock if last_row < t < end - lock_grace)
    how = (f"{in_runs} traces in runs/{db.traces} stored, {len(wall) - in_runs} outside runs, "
           f"{len(points) - len(lock)} point reads")  # fmt: skip
    if db.lock_times:
        how += f", lock: {len(lock)} reads/{len(db.lock_times)} rows, {lock_lost} uncovered"
    if db.error:
        how += f", db: {db.error[:40]}"
        ds_lost = max(ds_lost, len(wall))
    return ds_lost + lock_lost, how
