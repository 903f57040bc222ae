"""Files written atomically, never through a symbolic link, never outside their folder.

Every file labnr writes (HDF5 exports, Touchstone files, the calibration state,
the lock's resume point) goes through :func:`atomic_writer` (or
:func:`write_atomic`):

1. The target's folder is resolved (a symlinked *folder* is allowed: a data
   disk mounted elsewhere) and, when a ``folder`` is given, the file must
   resolve to a direct or nested entry of it; the target itself must not be a
   symbolic link (:class:`UnsafePathError` otherwise).
2. The data go to a new temporary file in the same folder, created with
   ``O_CREAT | O_EXCL | O_NOFOLLOW`` (:func:`tempfile.mkstemp`) under an
   unpredictable name ``.labnr-<pid>-<random>-<name>.tmp``; it is flushed and
   fsync'd.
3. It is renamed over the target (``os.replace``, which replaces a link
   rather than writing through it), or, with ``overwrite=False``, hard-linked
   to it (fails if anything is there), and the folder is fsync'd so the
   rename itself survives a power cut.

A crash at any moment leaves the previous file or the new one, never a
partial one, plus at most one temporary file, which :func:`clean_temp_files`
removes once its writer (the pid in its name) is gone.

This module imports nothing else from labnr (measure, calibrate and lock use it).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TEMP_PREFIX",
    "UnsafePathError",
    "atomic_writer",
    "clean_temp_files",
    "fsync_dir",
    "holder",
    "holder_alive",
    "is_temp_name",
    "pid_alive",
    "safe_target",
    "write_atomic",
]

#: Every temporary file labnr writes starts with this.
TEMP_PREFIX = ".labnr-"
_TEMP = re.compile(r"^\.labnr-(?P<pid>\d+)-[A-Za-z0-9_]{6,}-.*\.tmp$")
#: Temporary names of earlier labnr versions (exports, calibration state, resume point).
_LEGACY = (
    re.compile(r"^(labnr_)?run_?\d+(_[0-9a-fA-F-]*)?\.h5\.part$"),
    re.compile(r"^\.(calibration|lock_resume)_[A-Za-z0-9_.-]+\.yaml\.[A-Za-z0-9_]+\.tmp$"),
)
#: Legacy temporary files younger than this (s) are left alone (their writer may live).
LEGACY_AGE_S = 600.0
_NAME_KEEP = 80  # characters of the final name kept in a temporary name


class UnsafePathError(OSError):
    """A write that would follow a symbolic link or leave its folder (nothing was written)."""


# ------------------------------------------------------------------------ paths
def safe_target(path: str | os.PathLike[str], folder: str | os.PathLike[str] | None = None) -> Path:
    """The absolute path a write to ``path`` may use, or :class:`UnsafePathError`.

    Parameters
    ----------
    path
        File to write.
    folder
        If given, the file must resolve inside this folder (after resolving
        symbolic links in the folders on the way).

    Returns
    -------
    pathlib.Path
        ``<resolved parent>/<name>``.

    Raises
    ------
    UnsafePathError
        ``path`` is a symbolic link, names no file (``..``, empty), or resolves
        outside ``folder``.
    """
    p = Path(path)
    if p.name in ("", ".", ".."):
        raise UnsafePathError(f"{str(path)!r} names no file to write")
    target = p.parent.resolve() / p.name
    if folder is not None:
        root = Path(folder).resolve()
        if root != target.parent and root not in target.parents:
            raise UnsafePathError(
                f"{path} resolves to {target}, outside the folder {root}; labnr writes "
                "only inside its configured folders"
            )
    if target.is_symlink():
        raise UnsafePathError(
            f"{target} is a symbolic link; labnr never writes through one (remove the link "
            "or choose another path)"
        )
    return target


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """fsync a folder, so that a rename in it is durable (no-op where unsupported)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _publish(tmp: str, target: Path, overwrite: bool) -> None:
    """Move the finished temporary file to ``target`` (no-clobber unless ``overwrite``)."""
    if target.is_symlink():
        raise UnsafePathError(
            f"{target} became a symbolic link during the write; labnr never writes through one"
        )
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target, follow_symlinks=False)
    except FileExistsError:
        raise FileExistsError(
            f"{target} exists; labnr does not overwrite another file (move it away)"
        ) from None
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(target):
            raise FileExistsError(
                f"{target} exists; labnr does not overwrite another file (move it away)"
            ) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str],
    *,
    folder: str | os.PathLike[str] | None = None,
    overwrite: bool = True,
    mode: int = 0o666,
) -> Iterator[IO[bytes]]:
    """Open a binary file that becomes ``path`` only when the ``with`` block succeeds.

    Parameters
    ----------
    path
        Final file. Its folder is created if needed.
    folder
        If given, ``path`` must resolve inside it (see :func:`safe_target`).
    overwrite
        Replace an existing regular file at ``path`` (default); if False a
        :class:`FileExistsError` is raised and the existing file kept.
    mode
        Permission bits of the new file, before the process umask.

    Yields
    ------
    typing.IO[bytes]
        The temporary file, opened ``w+b`` (seekable, readable: h5py can use it).

    Raises
    ------
    UnsafePathError
        See :func:`safe_target`; nothing is written.
    """
    target = safe_target(path, folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent,
        prefix=f"{TEMP_PREFIX}{os.getpid()}-",
        suffix=f"-{target.name[:_NAME_KEEP]}.tmp",
    )
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, mode & ~_umask())
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, target, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def write_atomic(
    path: str | os.PathLike[str],
    data: str | bytes,
    *,
    folder: str | os.PathLike[str] | None = None,
    overwrite: bool = True,
    encoding: str = "utf-8",
) -> Path:
    """Write ``data`` (text is encoded) to ``path`` with :func:`atomic_writer`; returns the path."""
    raw = data.encode(encoding) if isinstance(data, str) else bytes(data)
    target = safe_target(path, folder)
    with atomic_writer(target, folder=folder, overwrite=overwrite) as f:
        f.write(raw)
    return target


# ------------------------------------------------------------------ processes
def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    except OSError:
        return False
    return True


def _start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def holder() -> dict[str, Any]:
    """This process as the holder of a run or file: host, pid and start time."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_ticks(pid)}


def holder_alive(record: Any) -> bool | None:
    """Whether the process of a :func:`holder` record still runs.

    Returns
    -------
    bool or None
        True or False for a process of this host; None when the record is
        not one, or names another host (nothing can be said from here).
    """
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    if record.get("host") != socket.gethostname():
        return None
    pid = int(record["pid"])
    if not pid_alive(pid):
        return False
    start = record.get("start")
    now = _start_ticks(pid)
    return not (isinstance(start, int) and now is not None and now != start)


# ---------------------------------------------------------------- temp files
def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file name of labnr (this version or an earlier one)."""
    return bool(_TEMP.match(name)) or any(p.match(name) for p in _LEGACY)


def _stale(name: str, mtime: float) -> bool:
    m = _TEMP.match(name)
    if m:
        pid = int(m.group("pid"))
        return pid != os.getpid() and not pid_alive(pid)
    return any(p.match(name) for p in _LEGACY) and time.time() - mtime > LEGACY_AGE_S


def clean_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove labnr's stale temporary files directly in ``folder``; returns those removed.

    Only regular files (never a symbolic link, never a sub-folder) whose name
    matches labnr's temporary pattern are considered, and only those whose
    writer is gone: for this version's names the pid in the name no longer
    runs; for an earlier version's names (``run_<id>.h5.part``,
    ``.calibration_<device>.yaml.<random>.tmp``) the file is older than
    :data:`LEGACY_AGE_S`. A missing folder gives an empty list.
    """
    root = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not entry.is_file(follow_symlinks=False) or not _stale(entry.name, st.st_mtime):
                continue
            os.unlink(root / entry.name)
        except FileNotFoundError:
            continue
        removed.append(root / entry.name)
    return removed
