"""The lock log appended to the QCoDeS database while the lock runs.

:meth:`labnr.lock.log.LockLog.stream_to` opens one QCoDeS run (experiment
``labnr_lock``, name ``lock``, the columns of :func:`labnr.lock.log.write_qcodes`)
when the lock starts and hands every row to a :class:`LockLogStream`. A
writer thread owns the QCoDeS objects (its own connection; the lock's
thread only puts rows on a queue, which costs microseconds) and commits the
pending rows ``flush_period`` seconds of wall time after the first of them
arrived, or as soon as ``flush_rows`` are pending, whichever is first — also
while the lock waits minutes between reads. A kill -9, an OOM kill or a power
cut therefore loses at most the rows of the last ``flush_period`` seconds.

The run's metadata say who writes it (``labnr_holder``, see
:func:`labnr.fileio.holder`), so that :func:`labnr.measure.recovery.recover`
can mark it interrupted after a kill. :meth:`LockLogStream.close` (called
by :func:`~labnr.lock.log.write_qcodes`) adds the end-of-run metadata and
completes the run; a process that exits without closing it completes it
from an ``atexit`` hook, marked interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from labnr.fileio import holder

__all__ = ["FLUSH_PERIOD_S", "FLUSH_ROWS", "LockLogStream"]

log = logging.getLogger(__name__)

#: Default longest time (s, wall clock) a logged row waits before it is committed.
FLUSH_PERIOD_S = 2.0
#: Default number of pending rows that triggers a commit at once.
FLUSH_ROWS = 50

_ROW, _FLUSH, _CLOSE = "row", "flush", "close"


class LockLogStream:
    """One QCoDeS run that a lock log's rows are appended to as they are logged.

    Parameters
    ----------
    database : str or Path
        QCoDeS database (created if missing; the global QCoDeS setting is not touched).
    columns : callable
        ``columns(measurement)`` registers the run's parameters.
    to_result : callable
        ``to_result(row)`` gives the ``add_result`` arguments of a row.
    experiment, sample, name : str
        QCoDeS experiment, sample and run name.
    metadata : Mapping, optional
        Metadata written at the start (text, numbers; the rest as JSON).
    flush_period : float
        Longest wait (s) of a pending row before its commit.
    flush_rows : int
        Pending rows that trigger a commit at once.
    timeout : float
        Longest wait (s) for the writer thread to open the run or to close it.
    """

    def __init__(
        self,
        database: str | Path,
        columns: Callable[[Any], None],
        to_result: Callable[[Any], list[tuple[str, Any]]],
        *,
        experiment: str = "labnr_lock",
        sample: str = "device",
        name: str = "lock",
        metadata: Mapping[str, Any] | None = None,
        flush_period: float = FLUSH_PERIOD_S,
        flush_rows: int = FLUSH_ROWS,
        timeout: float = 30.0,
    ) -> None:
        if not flush_period > 0 or int(flush_rows) < 1:
            raise ValueError(
                f"lock log stream: flush_period {flush_period!r} s must be > 0 and flush_rows "
                f"{flush_rows!r} >= 1"
            )
        self.database = Path(database)
        self.flush_period, self.flush_rows = float(flush_period), int(flush_rows)
        self.timeout = float(timeout)
        self._columns, self._to_result = columns, to_result
        self._where = (experiment, sample, name)
        self._start_meta = dict(metadata or {})
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        #: Run id of the run (set once the writer thread has opened it).
        self.run_id: int | None = None
        #: Rows committed to the database so far.
        self.flushed = 0
        #: The first error of the writer thread (the rows are still in the log's memory).
        self.error: BaseException | None = None
        self.closed = False
        self._thread = threading.Thread(target=self._main, name="labnr-lock-log", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self.run_id is None:
            self.closed = True
            raise RuntimeError(
                f"lock log: could not open a run in {self.database}: {self.error or 'timeout'}"
            ) from self.error
        atexit.register(self._at_exit)

    # ------------------------------------------------------------------ lock side
    def put(self, row: Any) -> None:
        """Queue one row (committed within ``flush_period``)."""
        if not self.closed and self.error is None:
            self._queue.put((_ROW, row))

    def flush(self, timeout: float | None = None) -> None:
        """Commit every queued row now (waits for the writer thread, at most ``timeout`` s)."""
        if self.closed:
            return
        done = threading.Event()
        self._queue.put((_FLUSH, done))
        done.wait(self.timeout if timeout is None else timeout)

    def close(
        self,
        metadata: Mapping[str, Any] | None = None,
        status: str = "completed",
        outcome: str = "completed",
        timeout: float | None = None,
    ) -> int:
        """Commit every row, add ``metadata`` and the status, complete the run; its run id.

        Raises
        ------
        RuntimeError
            The writer thread failed (its error is chained) or did not finish in time.
        """
        with self._lock:
            if not self.closed:
                self.closed = True
                meta = {"labnr_status": status, "labnr_outcome": outcome, **dict(metadata or {})}
                self._queue.put((_CLOSE, meta))
        self._thread.join(self.timeout if timeout is None else timeout)
        with contextlib.suppress(Exception):
            atexit.unregister(self._at_exit)
        if self._thread.is_alive():
            raise RuntimeError(f"lock log: run {self.run_id} in {self.database} did not close")
        if self.error is not None:
            raise RuntimeError(
                f"lock log: writing run {self.run_id} in {self.database} failed: {self.error}"
            ) from self.error
        assert self.run_id is not None
        return self.run_id

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.close(status="interrupted", outcome="process exited with the lock log open",
                       timeout=min(self.timeout, 5.0))  # fmt: skip

    # ------------------------------------------------------------------ writer thread
    def _main(self) -> None:
        from qcodes.dataset import Measurement, connect, load_or_create_experiment

        try:
            self.database.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(str(self.database))
        except BaseException as exc:  # noqa: BLE001 - reported to the opener
            self.error = exc
            self._ready.set()
            return
        try:
            experiment, sample, name = self._where
            exp = load_or_create_experiment(experiment, sample_name=sample, conn=conn)
            meas = Measurement(exp=exp, name=name)
            meas.write_period = 1e9  # this thread decides when to commit
            self._columns(meas)
            with meas.run() as saver:
                self._serve(saver)
        except BaseException as exc:  # noqa: BLE001 - kept, raised by close()
            self.error = self.error or exc
            log.error("lock log: writing to %s failed: %s: %s", self.database,
                      type(exc).__name__, exc)  # fmt: skip
        finally:
            self._ready.set()
            conn.close()

    def _open(self, saver: Any) -> None:
        ds = saver.dataset
        for key, value in {"labnr_holder": holder(), **self._start_meta}.items():
            ds.add_metadata(
                key, value if isinstance(value, str | int | float) else json.dumps(value)
            )
        self.run_id = int(saver.run_id)
        self._ready.set()

    def _serve(self, saver: Any) -> None:
        """Take rows until closed; commit by time and count. Exceptions end the run kept."""
        pending, deadline = 0, 0.0
        final: dict[str, Any] = {"labnr_status": "interrupted",
                                 "labnr_outcome": "lock log writer stopped"}  # fmt: skip
        try:
            self._open(saver)
            while True:
                wait = None if pending == 0 else max(deadline - time.monotonic(), 0.0)
                try:
                    kind, item = self._queue.get(timeout=wait)
                except queue.Empty:
                    kind, item = _FLUSH, None
                if kind == _ROW:
                    saver.add_result(*self._to_result(item))
                    pending += 1
                    if pending == 1:
                        deadline = time.monotonic() + self.flush_period
                    if pending < self.flush_rows:
                        continue
                saver.flush_data_to_database(block=True)
                self.flushed += pending
                pending = 0
                if kind == _FLUSH and item is not None:
                    item.set()
                if kind == _CLOSE:
                    final = item
                    return
        except Exception as exc:  # noqa: BLE001 - the run is completed with what it has
            self.error = exc
            final["labnr_outcome"] = f"lock log writer failed: {type(exc).__name__}: {exc}"
            log.error("lock log: run %s in %s: %s", self.run_id, self.database,
                      final["labnr_outcome"])  # fmt: skip
        finally:
            with contextlib.suppress(Exception):
                for key, value in final.items():
                    text = value if isinstance(value, str | int | float) else json.dumps(value)
                    saver.dataset.add_metadata(key, text)
