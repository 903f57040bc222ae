"""Recovery at the next start: killed runs marked, missing exports written, temp files removed.

A labnr process killed with SIGKILL (or by the OOM killer, or a power cut)
leaves its QCoDeS run unfinished (``is_completed = 0``), possibly a run whose
HDF5 export never happened (``labnr_export = "pending"``), and possibly a
temporary file in the data folder. :func:`recover`, called when a session
opens the database (before any sweep, calibration or lock), puts that right:

1. **Temporary files**: :func:`labnr.fileio.clean_temp_files` in ``data_dir``
   (only labnr's own temporary names, only regular files directly in the
   folder, never following a link, only once their writer is gone).
2. **Killed runs**: an unfinished run whose writer (``labnr_holder``: host,
   pid, process start time) no longer runs on this host is completed and
   marked as the runner marks an interrupted run: ``labnr_status =
   "interrupted"``, ``labnr_outcome = "killed: ..."``, plus
   ``labnr_interrupted = 1`` and ``labnr_points`` (rows stored) when the run
   had not written it. Runs whose writer is alive or on another host, and
   unfinished runs that are not labnr's (no ``labnr_`` metadata: a user's
   own QCoDeS script), are left alone.
3. **Exports**: every completed run with ``labnr_export = "pending"`` is
   exported to ``data_dir`` (:func:`labnr.measure.export.export_to_folder`)
   and its metadata set to the file name (unless its writer still runs: it
   exports the run itself).

Every step is logged and collected in a :class:`RecoveryReport`; nothing
raises for one bad run (its problem is reported, the others proceed).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qcodes.dataset import load_by_id
from qcodes.dataset.sqlite.database import connect
from qcodes.dataset.sqlite.queries import mark_run_complete

from labnr.fileio import clean_temp_files, holder_alive
from labnr.measure.dataset import EXPORT_KEY, HOLDER_KEY

__all__ = ["RecoveryReport", "recover"]

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    """What :func:`recover` did.

    Attributes
    ----------
    interrupted : list of int
        Run ids found killed and marked interrupted.
    exported : list of (int, Path)
        Run ids exported, with their file.
    removed : list of Path
        Stale temporary files removed.
    left : list of str
        Unfinished runs left alone, and why (a live writer, another host, not labnr's).
    problems : list of str
        One line per failure (an export that failed again, a run that could not be marked).
    """

    interrupted: list[int] = field(default_factory=list)
    exported: list[tuple[int, Path]] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the terminal (empty when there was nothing to do)."""
        parts = []
        if self.interrupted:
            parts.append(f"marked killed runs {self.interrupted} interrupted")
        if self.exported:
            parts.append(f"exported runs {[r for r, _ in self.exported]}")
        if self.removed:
            parts.append(f"removed {len(self.removed)} stale temporary file(s)")
        if self.problems:
            parts.append(f"{len(self.problems)} problem(s): {self.problems[0]}")
        return ("recovery: " + "; ".join(parts)) if parts else ""


def _columns(conn: Any) -> set[str]:
    return {str(row[1]) for row in conn.execute("PRAGMA table_info(runs)").fetchall()}


def _candidates(conn: Any) -> tuple[list[int], list[int]]:
    """(unfinished run ids, run ids with a pending export)."""
    unfinished = [int(r[0]) for r in conn.execute(
        "SELECT run_id FROM runs WHERE is_completed = 0 ORDER BY run_id").fetchall()]  # fmt: skip
    pending: list[int] = []
    if EXPORT_KEY in _columns(conn):
        pending = [int(r[0]) for r in conn.execute(
            f"SELECT run_id FROM runs WHERE {EXPORT_KEY} = ? ORDER BY run_id", ("pending",)
        ).fetchall()]  # fmt: skip
    return unfinished, pending


def _holder(meta: dict[str, Any]) -> Any:
    raw = meta.get(HOLDER_KEY)
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return None


def _verdict(meta: dict[str, Any], results: int = -1) -> tuple[bool, str]:
    """(whether the unfinished run was killed, why / why not)."""
    record = _holder(meta)
    if record is None:
        if any(str(k).startswith("labnr_") for k in meta):
            return True, "written by a labnr that recorded no holder"
        if not meta and results == 0:  # created, then killed before its first metadata
            return True, "empty and unstamped in labnr's locked database (killed at creation)"
        return False, "not a labnr run (no labnr metadata); left alone"
    alive = holder_alive(record)
    if alive is None:
        return False, f"its writer {record!r} is on another host or unknown; left alone"
    if alive:
        return False, f"its writer (pid {record.get('pid')}) is still running; left alone"
    return True, f"its writer (pid {record.get('pid')}) is gone"


def _mark_killed(conn: Any, run_id: int, why: str) -> None:
    ds = load_by_id(run_id, conn=conn)
    meta = ds.metadata
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    ds.add_metadata("labnr_status", "interrupted")
    ds.add_metadata("labnr_interrupted", 1)
    ds.add_metadata("labnr_outcome", f"killed: found unfinished by recovery at {stamp} ({why})")
    if "labnr_points" not in meta and meta.get("labnr_kind") != "lock":
        ds.add_metadata("labnr_points", int(ds.number_of_results))
    mark_run_complete(conn, run_id)


def recover(
    database: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    export: bool = True,
) -> RecoveryReport:
    """Finish what a killed labnr left: mark killed runs, write pending exports, clean temp files.

    Parameters
    ----------
    database
        The QCoDeS database (a missing file: nothing to do there; it is not created).
    data_dir
        The export folder (None: no temp-file cleaning and no exports).
    export
        Write pending HDF5 exports (``storage.export_hdf5``).

    Returns
    -------
    RecoveryReport
        What was done; :meth:`RecoveryReport.summary` is one line.

    Notes
    -----
    Call it once the process holds the lab (the one-process-per-lab lock),
    before the first measurement: a run of a live labnr process is
    recognised by its holder record, but an unfinished run of a labnr version
    that recorded none is taken as killed.
    """
    report = RecoveryReport()
    if data_dir is not None:
        report.removed = clean_temp_files(data_dir)
        for p in report.removed:
            log.info("recovery: removed stale temporary file %s", p)
    db = Path(database)
    if not db.is_file():
        return report
    conn = connect(str(db))
    try:
        unfinished, pending = _candidates(conn)
        for run_id in unfinished:
            try:
                ds = load_by_id(run_id, conn=conn)
                killed, why = _verdict(ds.metadata, ds.number_of_results)
                if not killed:
                    report.left.append(f"run {run_id}: unfinished, {why}")
                    continue
                _mark_killed(conn, run_id, why)
            except Exception as exc:  # noqa: BLE001 - one bad run must not stop the others
                report.problems.append(f"run {run_id} in {db}: cannot be marked: {exc}")
                continue
            report.interrupted.append(run_id)
            log.warning("recovery: run %d in %s was killed (%s); marked interrupted", run_id,
                        db, why)  # fmt: skip
        if export and data_dir is not None:
            _, pending = _candidates(conn)
            _export_pending(conn, db, Path(data_dir), pending, report)
    finally:
        conn.close()
    return report


def _export_pending(
    conn: Any, db: Path, data_dir: Path, pending: list[int], report: RecoveryReport
) -> None:
    from labnr.measure.export import export_to_folder

    for run_id in pending:
        ds = load_by_id(run_id, conn=conn)
        record = _holder(ds.metadata)
        mine = isinstance(record, dict) and record.get("pid") == os.getpid()
        if not ds.completed or (holder_alive(record) and not mine):
            continue  # a live run, or one its live writer is exporting right now
        try:
            path = export_to_folder(ds, data_dir)
            ds.add_metadata(EXPORT_KEY, path.name)
        except Exception as exc:  # noqa: BLE001 - report, keep going
            report.problems.append(
                f"run {run_id} in {db}: export to {data_dir} failed: {type(exc).__name__}: {exc}"
            )
            continue
        report.exported.append((run_id, path))
        log.info("recovery: exported run %d to %s", run_id, path)
