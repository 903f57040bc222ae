"""The lock's time series: every read, every correction, every event — and its summary.

:class:`LockLog` keeps rows in memory (``to_dict``/``to_arrays``) and
:func:`write_qcodes` stores them as one QCoDeS run. :meth:`LockLog.summary`
gives exactly the figures of the ``labnr lock --json`` contract.

Durability: :meth:`LockLog.stream_to` opens that run at the start and appends
every row as it is logged (:class:`~labnr.lock.logstream.LockLogStream`,
committed at least every ``flush_period`` seconds), so a killed lock keeps
all but its last seconds; :func:`write_qcodes` then only completes that run.

Time weighting
--------------
Isolation is only known at reads. Each read stands for the interval since the
previous read (the first read for the interval since the start), and the last
read also for the time after it until the end. A read comes at the end of a
drift interval, right before its correction, so this is the pessimistic
choice: the figures are those of the device at its worst in each interval.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from labnr.lock.logstream import LockLogStream

__all__ = ["EVENTS", "LockLog", "LogRow", "write_qcodes"]

_log = logging.getLogger(__name__)

#: Event names the supervisor writes.
EVENTS = (
    "start",
    "locked",
    "disturbance",
    "jacobian_reset",
    "lost",
    "relock",
    "reacquire_failed",
    "parked",
    "instability",
    "limit",
    "interrupted",
    "stop",
    "resumed",
    "checkpoint_failed",
)


@dataclass(frozen=True)
class LogRow:
    """One row of the time series.

    Attributes
    ----------
    time : float
        Plant clock, s.
    kind : str
        ``"read"``, ``"correction"`` or ``"event"``.
    isolation_db, forward_db : tuple of float
        Per path (reads only; empty otherwise).
    knobs : dict
        Knob values (after the correction for a correction row).
    event : str
        Event name (event rows), else ``""``.
    message : str
        Detail of an event, or of a correction (e.g. which knob hit a limit).
    duration : float
        Time the read took, s (reads only).
    acquisitions : int
        VNA acquisitions of the read.
    """

    time: float
    kind: str
    isolation_db: tuple[float, ...] = ()
    forward_db: tuple[float, ...] = ()
    knobs: Mapping[str, float] | None = None
    event: str = ""
    message: str = ""
    duration: float = 0.0
    acquisitions: int = 0

    @property
    def worst_isolation_db(self) -> float:
        """Lowest isolation over the paths (NaN when not a read)."""
        return min(self.isolation_db) if self.isolation_db else float("nan")


class LockLog:
    """In-memory time series of a lock run.

    Parameters
    ----------
    paths : sequence of str
        Reverse element names, one per path (``S_a_b`` …), naming the isolation columns.
    knob_names : sequence of str
        Knobs recorded in every row.
    knob_units : Mapping[str, str], optional
        SI unit of each knob (for the dataset).
    """

    def __init__(
        self,
        paths: Sequence[str],
        knob_names: Sequence[str],
        knob_units: Mapping[str, str] | None = None,
    ) -> None:
        self.paths = tuple(paths)
        self.knob_names = tuple(knob_names)
        self.knob_units = dict(knob_units or {})
        self.rows: list[LogRow] = []
        self.start_time: float | None = None
        self.end_time: float | None = None
        #: The database run the rows are appended to as they come (see :meth:`stream_to`).
        self.stream: LockLogStream | None = None

    # ------------------------------------------------------------------ writing
    def _add(self, row: LogRow) -> None:
        if self.start_time is None:
            self.start_time = row.time
        self.end_time = row.time if self.end_time is None else max(self.end_time, row.time)
        self.rows.append(row)
        if self.stream is not None:
            self.stream.put(row)

    def stream_to(
        self,
        database: str | Path,
        experiment: str = "labnr_lock",
        sample: str = "device",
        name: str = "lock",
        metadata: Mapping[str, Any] | None = None,
        *,
        flush_period: float | None = None,
        flush_rows: int | None = None,
    ) -> LockLogStream:
        """Append every row (those so far, then each new one) to a QCoDeS run as it is logged.

        The run has :func:`write_qcodes`'s columns and is created now in
        ``database``; rows are committed at least every ``flush_period``
        seconds of wall time (default
        :data:`~labnr.lock.logstream.FLUSH_PERIOD_S`) or every ``flush_rows``
        rows. :func:`write_qcodes` with the same database completes it with
        the summary. Returns the stream (also :attr:`stream`).
        """
        from labnr.lock.logstream import FLUSH_PERIOD_S, FLUSH_ROWS, LockLogStream

        if self.stream is not None and not self.stream.closed:
            raise RuntimeError(
                f"lock log: already streaming to run {self.stream.run_id} in {self.stream.database}"
            )
        meta = {
            "labnr_kind": "lock",
            "labnr_paths": json.dumps(list(self.paths)),
            "labnr_knobs": json.dumps(list(self.knob_names)),
            **dict(metadata or {}),
        }
        stream = LockLogStream(
            database, lambda meas: _register(meas, self), lambda row: _result(row, self),
            experiment=experiment, sample=sample, name=name, metadata=meta,
            flush_period=FLUSH_PERIOD_S if flush_period is None else flush_period,
            flush_rows=FLUSH_ROWS if flush_rows is None else flush_rows,
        )  # fmt: skip
        for row in self.rows:
            stream.put(row)
        self.stream = stream
        return stream

    def start(self, time: float, knobs: Mapping[str, float] | None = None) -> None:
        """Mark the start of the run (the time origin of the summary)."""
        self.start_time = float(time)
        self._add(LogRow(float(time), "event", knobs=dict(knobs or {}), event="start"))

    def read(
        self,
        time: float,
        isolation_db: Sequence[float],
        forward_db: Sequence[float],
        knobs: Mapping[str, float],
        duration: float,
        acquisitions: int = 1,
    ) -> None:
        """Record a read."""
        iso = tuple(float(x) for x in isolation_db)
        if len(iso) != len(self.paths):
            raise ValueError(f"{len(iso)} isolation values for {len(self.paths)} paths")
        self._add(
            LogRow(
                float(time), "read", iso, tuple(float(x) for x in forward_db), dict(knobs),
                duration=float(duration), acquisitions=int(acquisitions),
            )
        )  # fmt: skip

    def correction(self, time: float, knobs: Mapping[str, float], message: str = "") -> None:
        """Record a correction (the knob values written)."""
        self._add(LogRow(float(time), "correction", knobs=dict(knobs), message=message))

    def event(self, time: float, name: str, message: str = "") -> None:
        """Record an event (one of :data:`EVENTS`)."""
        if name not in EVENTS:
            raise ValueError(f"unknown lock event {name!r}; known: {EVENTS}")
        self._add(LogRow(float(time), "event", event=name, message=message))

    def finish(self, time: float) -> None:
        """Mark the end of the run."""
        self.end_time = float(time)

    # ------------------------------------------------------------------ reading
    def reads(self) -> list[LogRow]:
        """The read rows, in time order."""
        return [r for r in self.rows if r.kind == "read"]

    def events(self, name: str | None = None) -> list[LogRow]:
        """Event rows (all, or those called ``name``)."""
        return [r for r in self.rows if r.kind == "event" and (name is None or r.event == name)]

    def to_dict(self) -> dict[str, list[Any]]:
        """Column-wise plain lists (JSON-serialisable; NaN where a column does not apply)."""
        arrays = self.to_arrays()
        out: dict[str, list[Any]] = {}
        for k, v in arrays.items():
            out[k] = v.tolist()
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Columns as arrays: ``time``, ``kind``, ``isolation_db`` (N, P), ``worst_isolation_db``,
        ``forward_db`` (N, P), ``duration``, ``acquisitions``, ``event``, ``message`` and one
        column per knob."""
        n, p = len(self.rows), len(self.paths)
        iso = np.full((n, p), np.nan)
        fwd = np.full((n, p), np.nan)
        knobs = {k: np.full(n, np.nan) for k in self.knob_names}
        for j, r in enumerate(self.rows):
            if r.isolation_db:
                iso[j] = r.isolation_db
            if r.forward_db:
                fwd[j] = r.forward_db
            for k, v in (r.knobs or {}).items():
                if k in knobs:
                    knobs[k][j] = v
        worst = np.array([r.worst_isolation_db for r in self.rows], dtype=float)
        return {
            "time": np.array([r.time for r in self.rows], dtype=float),
            "kind": np.array([r.kind for r in self.rows], dtype=object),
            "isolation_db": iso,
            "worst_isolation_db": worst,
            "forward_db": fwd,
            "duration": np.array([r.duration for r in self.rows], dtype=float),
            "acquisitions": np.array([r.acquisitions for r in self.rows], dtype=int),
            "event": np.array([r.event for r in self.rows], dtype=object),
            "message": np.array([r.message for r in self.rows], dtype=object),
            **knobs,
        }

    # ------------------------------------------------------------------ summary
    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(worst isolation per read, seconds each read stands for); see the module doc."""
        reads = self.reads()
        if not reads or self.start_time is None:
            return np.zeros(0), np.zeros(0)
        t = np.array([r.time for r in reads])
        iso = np.array([r.worst_isolation_db for r in reads])
        edges = np.concatenate([[self.start_time], t])
        w = np.clip(np.diff(edges), 0.0, None)
        end = self.end_time if self.end_time is not None else t[-1]
        w[-1] += max(end - t[-1], 0.0)
        if w.sum() <= 0:
            w = np.ones_like(w)
        return iso, w

    def summary(self) -> dict[str, Any]:
        """The ``labnr lock --json`` figures.

        Returns
        -------
        dict
            ``duration_s``; ``fraction_above`` ``{"30": f, "40": f}`` (time
            weighted, worst path); ``median_isolation_db`` (time-weighted
            median of the worst path); ``relocks`` (successful
            re-acquisitions); ``lock_acquisitions`` (VNA acquisitions made by
            the lock's reads); ``measurement_duty`` (read time / duration).
        """
        iso, w = self.weights()
        duration = 0.0
        if self.start_time is not None and self.end_time is not None:
            duration = self.end_time - self.start_time
        reads = self.reads()
        read_time = sum(r.duration for r in reads)
        frac = {}
        for level in (30, 40):
            frac[str(level)] = float(np.sum(w[iso >= level]) / np.sum(w)) if w.size else 0.0
        return {
            "duration_s": float(duration),
            "fraction_above": frac,
            "median_isolation_db": _weighted_median(iso, w),
            "relocks": len(self.events("relock")),
            "lock_acquisitions": int(sum(r.acquisitions for r in reads)),
            "measurement_duty": float(read_time / duration) if duration > 0 else 0.0,
        }

    def reads_until(self, time: float, level_db: float) -> int | None:
        """Reads after ``time`` up to and including the first at or above ``level_db``.

        ``None`` if no later read reaches it (the step-response figure).
        """
        count = 0
        for r in self.reads():
            if r.time <= time:
                continue
            count += 1
            if r.worst_isolation_db >= level_db:
                return count
        return None


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    if x.size == 0:
        return float("nan")
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cw, 0.5 * cw[-1])])


# ====================================================================== QCoDeS
def _finite(x: float) -> float:
    return x if math.isfinite(x) else (np.nan if math.isnan(x) else float(np.sign(x) * 1e300))


def write_qcodes(
    log: LockLog,
    database: str | Path,
    experiment: str = "labnr_lock",
    sample: str = "device",
    name: str = "lock",
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Store the log as one QCoDeS run; returns its run id.

    If the log streams to ``database`` (:meth:`LockLog.stream_to`), that run
    is completed (the remaining rows committed, the metadata below added)
    instead of writing a new one; should the stream have failed, the whole
    log is written as a new run as without a stream.

    Parameters: ``time`` (s, setpoint), ``isolation_db`` (worst path, dB),
    ``forward_db`` (weakest forward path, dB), ``isolation_db_<element>`` per
    path, one column per knob, ``event`` (text; ``read``/``correction`` rows
    carry their kind). Metadata ``labnr_kind = "lock"``, ``labnr_paths``,
    ``labnr_knobs``, ``labnr_lock_summary`` (JSON), ``labnr_status``
    (``"interrupted"`` after Ctrl-C, else ``"completed"``) and
    ``labnr_outcome`` (the last ending event: stop, parked, instability).
    The global QCoDeS database setting is not touched.
    """
    from qcodes.dataset import Measurement, connect, load_or_create_experiment

    meta = {
        "labnr_kind": "lock",
        "labnr_paths": json.dumps(list(log.paths)),
        "labnr_knobs": json.dumps(list(log.knob_names)),
        "labnr_lock_summary": json.dumps(log.summary()),
        **dict(zip(("labnr_status", "labnr_outcome"), _ending(log), strict=True)),
        **{k: v if isinstance(v, str | int | float) else json.dumps(v)
           for k, v in (metadata or {}).items()},
    }  # fmt: skip
    stream = log.stream
    if stream is not None and stream.database.resolve() == Path(database).resolve():
        try:
            return stream.close(meta)
        except RuntimeError as exc:  # the streamed run failed: store the whole log anew
            _log.error("%s; storing the whole log as a new run", exc)
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(str(path))
    try:
        exp = load_or_create_experiment(experiment, sample_name=sample, conn=conn)
        meas = Measurement(exp=exp, name=name)
        _register(meas, log)
        with meas.run() as saver:
            for row in log.rows:
                saver.add_result(*_result(row, log))
            ds = saver.dataset
            for k, v in meta.items():
                ds.add_metadata(k, v)
            run_id = int(saver.run_id)
    finally:
        conn.close()
    return run_id


def _ending(log: LockLog) -> tuple[str, str]:
    """(``labnr_status``, ``labnr_outcome``) of a finished lock, from its last ending event."""
    ends = [r for r in log.events() if r.event in ("stop", "parked", "interrupted", "instability")]
    if not ends:
        return "completed", "completed"
    last = ends[-1]
    status = "interrupted" if last.event == "interrupted" else "completed"
    return status, f"{last.event}: {last.message}" if last.message else last.event


def _register(meas: Any, log: LockLog) -> None:
    """The parameters of a lock run (see :func:`write_qcodes`)."""
    meas.register_custom_parameter("time", label="time", unit="s")
    cols = ["isolation_db", "forward_db"] + [f"isolation_db_{p}" for p in log.paths]
    for c in cols:
        meas.register_custom_parameter(c, label=c.replace("_", " "), unit="dB", setpoints=["time"])
    for k in log.knob_names:
        unit = log.knob_units.get(k, "")
        meas.register_custom_parameter(k, label=k, unit=unit, setpoints=["time"])
    meas.register_custom_parameter("event", label="event", setpoints=["time"], paramtype="text")


def _result(row: LogRow, log: LockLog) -> list[tuple[str, Any]]:
    nan = float("nan")
    iso = row.isolation_db or (nan,) * len(log.paths)
    fwd = min(row.forward_db) if row.forward_db else nan
    knobs = row.knobs or {}
    res: list[tuple[str, Any]] = [
        ("time", row.time),
        ("isolation_db", _finite(row.worst_isolation_db)),
        ("forward_db", _finite(fwd)),
    ]
    res += [(f"isolation_db_{p}", _finite(v)) for p, v in zip(log.paths, iso, strict=True)]
    res += [(k, float(knobs.get(k, nan))) for k in log.knob_names]
    res.append(("event", row.event or row.kind))
    return res
