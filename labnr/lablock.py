"""One labnr process per lab: an exclusive OS file lock, taken before any instrument is touched.

:func:`lock_lab` takes an exclusive, non-blocking ``fcntl.flock`` on every
lock file of a lab (:func:`lock_paths`):

* ``<database>.lock`` next to the config's QCoDeS database — two processes
  writing one database (and exporting into one ``data_dir``) exclude each other;
* ``<data_dir>/.labnr.lock`` — the calibration state file and the exports;
* for a real lab (``simulate: false``), one file per instrument address of the
  station in :func:`lock_dir` — two configs that drive the same instruments
  exclude each other even with different databases. (An embedded virtual lab
  is served on fresh ports by each process: its database and data folder key it.)

The holder writes its PID and command line into each file. A second process
gets :class:`LabBusy`, one line naming the holder's PID and command and the
lock file, and touches nothing: :func:`labnr.session.open_lab` takes the lock
before it serves a virtual lab or connects an instrument. ``labnr`` exits
with :data:`EXIT_LAB_BUSY` (75, ``EX_TEMPFAIL``: try again when the other run
ends).

The lock lives as long as the open file: :meth:`LabLock.release` (the
session's close) drops it, and the OS drops it when the process dies in any
way, ``kill -9`` included — a stale lock file never blocks anyone (its
contents are only read to name the holder while it is held). ``flock`` locks
belong to the open file, so a second :func:`lock_lab` in the same process on
the same lab is refused too.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shlex
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "EXIT_LAB_BUSY",
    "LabBusy",
    "LabLock",
    "StorageError",
    "check_storage",
    "describe_storage_error",
    "lock_dir",
    "lock_lab",
    "lock_paths",
]

#: Exit status of ``labnr`` (and the experiments/ scripts) when another process holds the lab.
EXIT_LAB_BUSY = 75

#: Environment variable naming the folder of the per-instrument lock files.
LOCK_DIR_ENV = "LABNR_LOCK_DIR"


class LabBusy(RuntimeError):
    """Another process holds the lab's lock (one line: holder PID, command, lock file).

    Attributes
    ----------
    path : Path
        The lock file that is held.
    pid : int or None
        The holder's PID, as it wrote it (None if unreadable).
    command : str
        The holder's command line, as it wrote it.
    """

    def __init__(self, path: Path, pid: int | None, command: str, what: str) -> None:
        self.path, self.pid, self.command = path, pid, command
        holder = f"PID {pid}" if pid is not None else "another process (PID unknown)"
        cmd = f" ({command})" if command else ""
        super().__init__(
            f"lab busy: {what} is in use by {holder}{cmd} (lock file {path}); "
            "wait for it to end or stop it; nothing was connected"
        )


def lock_dir() -> Path:
    """Folder of the per-instrument lock files: ``$LABNR_LOCK_DIR`` or ``<tmp>/labnr-locks``."""
    env = os.environ.get(LOCK_DIR_ENV)
    return Path(env) if env else Path(tempfile.gettempdir()) / "labnr-locks"


def _address_file(address: str) -> Path:
    readable = re.sub(r"[^A-Za-z0-9.]+", "_", address).strip("_")[:80]
    digest = hashlib.sha256(address.strip().upper().encode()).hexdigest()[:12]
    return lock_dir() / f"{readable}-{digest}.lock"


def lock_paths(config: Any, addresses: Iterable[str] = ()) -> list[tuple[Path, str]]:
    """The lock files of the lab of ``config`` and what each one guards.

    Parameters
    ----------
    config : labnr.config.Config
        The experiment config (its storage paths, ``simulate``).
    addresses : iterable of str
        VISA addresses of the station's instruments (used when not simulated).

    Returns
    -------
    list of (Path, str)
        Lock file and a description for the refusal message.
    """
    db = config.path(config.storage.database)
    data = config.path(config.storage.data_dir)
    out = [
        (db.with_name(db.name + ".lock"), f"database {db}"),
        (data / ".labnr.lock", f"data folder {data}"),
    ]
    if not config.simulate:
        for address in sorted(set(addresses)):
            out.append((_address_file(address), f"instrument {address}"))
    return out


class LabLock:
    """Exclusive locks on a lab's lock files (see the module doc); a context manager."""

    def __init__(self, paths: Sequence[tuple[Path, str]]) -> None:
        self.paths = list(paths)
        self._fds: list[int] = []

    @property
    def held(self) -> bool:
        """Whether this process holds the locks."""
        return bool(self._fds)

    def acquire(self) -> LabLock:
        """Take every lock now or none (raises :class:`LabBusy`, ``OSError``)."""
        if self._fds:
            return self
        try:
            for path, what in self.paths:
                self._fds.append(_take(path, what))
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Drop every lock (idempotent); the files stay, empty."""
        fds, self._fds = self._fds, []
        for fd in reversed(fds):
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> LabLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<LabLock {'held' if self.held else 'free'}: {[str(p) for p, _ in self.paths]}>"


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent == lock_dir():
        try:
            os.chmod(path.parent, 0o1777)  # shared by every user of the machine
        except OSError:
            pass
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_RDWR, 0o666)
    except PermissionError:  # another user's lock file: a read-only handle locks as well
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, 0o666)
    except OSError:
        pass
    return fd


def _take(path: Path, what: str) -> int:
    try:
        fd = _open(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, f"lock file {path} is a symbolic link; refusing it") from None
        raise OSError(exc.errno, f"cannot open the lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        pid, command = _holder(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise LabBusy(path, pid, command, what) from None
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{_command()}\n".encode())
    except OSError:  # a read-only handle: the lock holds, only the holder's name is missing
        pass
    return fd


def _command() -> str:
    argv = list(getattr(sys, "orig_argv", None) or sys.argv)
    return " ".join(shlex.join(argv).split())[:300]  # one line (a -c script has newlines)


def _holder(fd: int) -> tuple[int | None, str]:
    """PID and command written by the holder (it may still be writing them: a short wait)."""
    for _ in range(20):
        try:
            text = os.pread(fd, 4096, 0).decode(errors="replace")
        except OSError:
            break
        lines = text.splitlines()
        if len(lines) >= 2 and lines[0].strip().isdigit():
            return int(lines[0]), lines[1].strip()
        time.sleep(0.01)
    return None, ""


def lock_lab(config: Any, addresses: Iterable[str] = ()) -> LabLock:
    """Take the lab lock of ``config`` (see the module doc); raises :class:`LabBusy`.

    Parameters
    ----------
    config : labnr.config.Config
        The experiment config.
    addresses : iterable of str
        The station's instrument addresses (keys a real lab).

    Returns
    -------
    LabLock
        Held; :meth:`LabLock.release` it when done (the session's close does).
    """
    return LabLock(lock_paths(config, addresses)).acquire()


# ---------------------------------------------------------------------- storage, before connecting


class StorageError(RuntimeError):
    """A storage folder or the database cannot be written (one line naming the path)."""


def _probe_dir(path: Path, where: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{where} {path}: cannot create the folder ({exc.strerror})") from None
    probe = path / f".labnr-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise StorageError(f"{where} {path}: {_os_reason(exc)}") from None


def _os_reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device (free some space or choose another folder)"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"not writable ({exc.strerror}); make it writable or choose another folder"
    return f"cannot write ({exc.strerror})"


def _sqlite_reason(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (f"locked by another program (sqlite: {text}); close the program holding it "
                "(a database browser, another labnr) and retry")  # fmt: skip
    if "readonly" in text or "read-only" in text:
        return f"not writable (sqlite: {text}); make it writable or choose another database"
    if "full" in text:
        return f"disk full (sqlite: {text}); free some space or choose another database"
    return f"cannot be written (sqlite: {text})"


def check_storage(config: Any) -> None:
    """Check that the data folder and the database can be written, before connecting.

    Creates the folders if needed and writes (then removes) a probe file in
    each; opens an existing database for a write transaction and rolls it back.

    Raises
    ------
    StorageError
        One line naming the path: not writable, read-only, disk full, locked database.
    """
    db = config.path(config.storage.database)
    _probe_dir(config.path(config.storage.data_dir), "storage.data_dir")
    _probe_dir(db.parent, "storage.database: folder")
    if not db.exists():
        return
    try:
        conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=0.5)
    except sqlite3.Error as exc:
        raise StorageError(f"storage.database {db}: {_sqlite_reason(exc)}") from None
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
    except sqlite3.Error as exc:
        raise StorageError(f"storage.database {db}: {_sqlite_reason(exc)}") from None
    finally:
        conn.close()


def describe_storage_error(exc: BaseException, database: Any = None) -> str | None:
    """One line for a storage failure anywhere in ``exc``'s chain, or None if there is none.

    A locked or full database (``sqlite3.OperationalError``, also behind
    QCoDeS's "Rolling back due to unhandled exception"), a full disk or a
    read-only folder (``OSError`` ENOSPC, EDQUOT, EROFS, EACCES).
    """
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, StorageError):
            return str(seen)
        if isinstance(seen, sqlite3.Error):
            where = f"database {database}" if database is not None else "the database"
            return f"{where}: {_sqlite_reason(seen)}"
        if isinstance(seen, OSError) and seen.errno in (
            errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
        ):  # fmt: skip
            name = seen.filename if seen.filename is not None else "a storage path"
            return f"{name}: {_os_reason(seen)}"
        seen = seen.__cause__ or seen.__context__
    return None
