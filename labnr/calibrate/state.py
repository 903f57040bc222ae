"""The persistent calibration state: one versioned YAML file per device.

The file (``<data_dir>/calibration_<device>.yaml``, see :func:`state_path`) is
written by the calibration graph after every node, atomically (a temporary
file in the same folder, flushed and fsync'd, then renamed over the old one),
so an interrupted calibration resumes from the last finished node and a crash
mid-write leaves the previous file intact. It is YAML rather than JSON
because people read and diff it (and YAML keeps ``.nan``/``.inf``, which
strict JSON cannot); it is read with ``yaml.safe_load`` only.

Layout (``format_version: 1``)::

    format_version: 1
    device: jpc_circulator_sim
    config_hash: 3f2a9c0d41b7e6a5      # config_hash() of the config it belongs to
    revision: 7                        # bumped by every stored result
    nodes:
      flux_operating_point:
        revision: 2                    # this result's revision
        inputs: {flux_spectroscopy: 1} # revisions of the dependencies it was computed from
        timestamp: '2025-05-01T09:12:03.512+00:00'   # ISO-8601, UTC
        duration_s: 4.21
        acquisitions: 6
        labnr_version: 0.1.0
        summary: sweet spot at 137 uA
        run_ids: [12, 13]
        result: {offset_current: 0.000137, ...}
        last_check: {timestamp: ..., valid: true, reason: ..., data: {...}}
        last_failure: {timestamp: ..., message: ...}
        history: [{revision: 1, timestamp: ..., result: ..., ...}]   # newest first

A file that belongs to another device or config (different ``config_hash``)
is refused with :class:`StateMismatchError`, or, with ``reset=True``, moved
aside to a timestamped backup and replaced by an empty state. A file that
cannot be read is never discarded: :class:`StateFileError` names it and the
backup copy made of it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from labnr import __version__, fileio

__all__ = [
    "FORMAT_VERSION",
    "CalibrationState",
    "NodeRecord",
    "StateError",
    "StateFileError",
    "StateMismatchError",
    "config_hash",
    "state_path",
    "to_plain",
]

FORMAT_VERSION = 1
log = logging.getLogger("labnr.calibrate")

_HEADER = (
    "# labnr calibration state, written after every calibration node "
    "(see labnr/calibrate/state.py).\n"
)


class StateError(ValueError):
    """A calibration state file cannot be used as it is."""


class StateFileError(StateError):
    """A calibration state file is unreadable, malformed, or from a newer labnr."""


class StateMismatchError(StateError):
    """A calibration state file belongs to another device or configuration."""


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError(f"timestamp {t!r} has no timezone; labnr stores UTC times")
    return t.astimezone(UTC).isoformat(timespec="milliseconds")


def to_plain(value: Any, where: str = "result") -> Any:
    """Convert ``value`` to plain JSON/YAML types, or raise naming the offending key.

    numpy scalars and arrays become Python numbers and (nested) lists, tuples
    become lists, paths become strings; mapping keys must be strings.

    Parameters
    ----------
    value
        A node result (or any part of one).
    where
        The key path of ``value``, for error messages.

    Returns
    -------
    Any
        ``value`` made of dicts, lists, str, int, float, bool and None only.

    Raises
    ------
    TypeError
        For anything else (complex numbers, objects, ...), naming the key path.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return value if type(value) in (int, float) else _numpy_scalar(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            out[k] = to_plain(v, f"{where}.{k}")
        return out
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy array or scalar
        return to_plain(value.tolist(), where)
    if isinstance(value, list | tuple):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{where}: {type(value).__name__} value {value!r} cannot be stored in the calibration "
        "state (use numbers, strings, lists and dicts; store a complex number as "
        "magnitude and phase)"
    )


def _numpy_scalar(value: Any) -> int | float:
    return int(value) if isinstance(value, int) else float(value)


def config_hash(config: Any, exclude: Sequence[str] = ("storage",)) -> str:
    """A short, stable hash of a configuration, to tie a state file to it.

    Parameters
    ----------
    config
        A :class:`labnr.config.Config` (anything with ``model_dump``) or a mapping.
    exclude
        Top-level keys that cannot change the device or how it is measured
        (by default ``storage``: moving the data folder keeps the calibration).

    Returns
    -------
    str
        16 hex digits of the SHA-256 of the canonical JSON of the config.
    """
    data = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
    data = {k: v for k, v in data.items() if k not in set(exclude)}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_path(data_dir: str | Path, device: str) -> Path:
    """``<data_dir>/calibration_<device>.yaml``, with the device name made file-safe."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", device).strip("._") or "device"
    return Path(data_dir) / f"calibration_{safe}.yaml"


@dataclass(frozen=True)
class NodeRecord:
    """One node's current result, as stored (a copy: changing it changes nothing).

    Attributes
    ----------
    node, result, run_ids, summary
        The node name, the result dict it returned, the dataset run ids behind
        it, and its one-line summary.
    timestamp, duration_s, acquisitions, labnr_version
        When the node finished (UTC), the wall time of its run (s), the VNA
        acquisitions of its check and run, and the labnr version.
    revision, inputs
        The state revision at which the result was stored, and the revisions
        of the node's dependencies it was computed from.
    """

    node: str
    result: dict[str, Any]
    run_ids: list[int | str]
    summary: str
    timestamp: datetime
    duration_s: float
    acquisitions: int
    labnr_version: str
    revision: int
    inputs: dict[str, int]


#: the keys of a stored result (what moves to the history)
_RECORD_KEYS = tuple(
    "revision inputs timestamp duration_s acquisitions labnr_version summary run_ids result".split()
)


class CalibrationState:
    """The calibration results of one device, persisted after every change.

    Use :meth:`open` (or :meth:`for_config`) to load or create the file; an
    instance with ``path=None`` lives in memory only.

    Parameters
    ----------
    device
        Device (or setup) name the state belongs to.
    config_hash
        :func:`config_hash` of the configuration the state belongs to.
    path
        File to write to after every change, or ``None``.
    history_length
        How many previous results of each node to keep.
    """

    def __init__(
        self,
        device: str,
        config_hash: str,
        path: str | Path | None = None,
        *,
        history_length: int = 10,
    ) -> None:
        self.device = device
        self.config_hash = config_hash
        self.path = Path(path) if path is not None else None
        self.history_length = history_length
        self.revision = 0
        self._nodes: dict[str, dict[str, Any]] = {}

    # -- loading -----------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path,
        device: str,
        config_hash: str,
        *,
        reset: bool = False,
        history_length: int = 10,
    ) -> CalibrationState:
        """Load the state file at ``path``, or start an empty state if there is none.

        Parameters
        ----------
        path
            The state file.
        device, config_hash
            What the state must belong to.
        reset
            If the file belongs to another device/config, or cannot be read,
            move it aside to a timestamped backup and start empty (instead of
            raising).
        history_length
            Previous results kept per node.

        Raises
        ------
        StateMismatchError
            The file belongs to another device or config (and ``reset`` is false).
        StateFileError
            The file cannot be read (and ``reset`` is false); a backup copy
            of it is kept and named in the message.
        """
        state = cls(device, config_hash, path, history_length=history_length)
        p = state.path
        assert p is not None
        _refuse_link(p)
        if not p.exists():
            return state
        try:
            data = _parse(p)
            if data["device"] != device or data["config_hash"] != config_hash:
                raise StateMismatchError(
                    f"{p} holds the calibration of device {data['device']!r} with config hash "
                    f"{data['config_hash']}, but the current config is device {device!r} with "
                    f"hash {config_hash}: the stored results do not belong to this config. "
                    "Reset the state (labnr calibrate --reset-state; the old file is kept as a "
                    "backup) or use another storage.data_dir."
                )
        except StateError as exc:
            if not reset:
                if isinstance(exc, StateFileError) and p.exists():
                    backup = _backup(p, "corrupt", move=False)
                    raise StateFileError(
                        f"{exc} (a copy of the file is kept at {backup}; fix or remove {p}, "
                        "or reset the state with labnr calibrate --reset-state)"
                    ) from None
                raise
            tag = "corrupt" if isinstance(exc, StateFileError) else "old"
            backup = _backup(p, tag, move=True)
            log.warning("calibration state reset: %s; the old file is now %s", exc, backup)
            return state
        state.revision = data["revision"]
        state._nodes = data["nodes"]
        return state

    @classmethod
    def for_config(cls, config: Any, *, reset: bool = False) -> CalibrationState:
        """Open the state file of a :class:`labnr.config.Config`.

        The file is ``<storage.data_dir>/calibration_<name>.yaml`` and the hash
        is :func:`config_hash` of the config.
        """
        path = state_path(config.path(config.storage.data_dir), config.name)
        return cls.open(path, config.name, config_hash(config), reset=reset)

    # -- queries -------------------------------------------------------------------------
    def nodes(self) -> list[str]:
        """Names of the nodes that have a stored result."""
        return [n for n, e in self._nodes.items() if "result" in e]

    def __contains__(self, node: str) -> bool:
        return "result" in self._nodes.get(node, {})

    def get(self, node: str) -> NodeRecord | None:
        """The current result of ``node``, or ``None`` if it has none."""
        e = self._nodes.get(node, {})
        if "result" not in e:
            return None
        fields = {k: copy.deepcopy(e[k]) for k in _RECORD_KEYS}
        fields["timestamp"] = datetime.fromisoformat(e["timestamp"])
        return NodeRecord(node=node, **fields)

    def result(self, node: str) -> dict[str, Any]:
        """The result dict of ``node``; ``KeyError`` with a clear message if there is none."""
        rec = self.get(node)
        if rec is None:
            have = ", ".join(self.nodes()) or "none"
            raise KeyError(f"no calibration result for node {node!r} (results stored: {have})")
        return rec.result

    def age(self, node: str, now: datetime | None = None) -> float | None:
        """Seconds since ``node``'s result was stored, or ``None`` if it has none."""
        rec = self.get(node)
        return None if rec is None else ((now or utc_now()) - rec.timestamp).total_seconds()

    def last_failure(self, node: str) -> dict[str, Any] | None:
        """``{"timestamp", "message"}`` of the node's last failure, or ``None``."""
        return copy.deepcopy(self._nodes.get(node, {}).get("last_failure"))

    def last_check(self, node: str) -> dict[str, Any] | None:
        """``{"timestamp", "valid", "reason", "data"}`` of the node's last check, or ``None``."""
        return copy.deepcopy(self._nodes.get(node, {}).get("last_check"))

    def history(self, node: str) -> list[dict[str, Any]]:
        """Previous results of ``node`` as stored, newest first."""
        return copy.deepcopy(self._nodes.get(node, {}).get("history", []))

    # -- changes (each one is saved) -----------------------------------------------------
    def set(
        self,
        node: str,
        result: Mapping[str, Any],
        *,
        run_ids: Sequence[int | str] = (),
        summary: str = "",
        duration_s: float = 0.0,
        acquisitions: int = 0,
        inputs: Mapping[str, int] | None = None,
        now: datetime | None = None,
    ) -> NodeRecord:
        """Store a new result of ``node`` (the previous one moves to its history) and save.

        Raises
        ------
        TypeError
            If ``result`` holds values that cannot be stored (the state is unchanged).
        """
        plain = to_plain(result, f"{node}.result")
        if not isinstance(plain, dict):
            raise TypeError(f"{node}: a node result must be a dict, got {type(result).__name__}")
        ids = to_plain(list(run_ids), f"{node}.run_ids")
        self.revision += 1
        entry = self._nodes.setdefault(node, {})
        self._push_history(entry)
        new = {
            "revision": self.revision,
            "inputs": {str(k): int(v) for k, v in (inputs or {}).items()},
            "timestamp": _iso(now or utc_now()),
            "duration_s": round(float(duration_s), 6),
            "acquisitions": int(acquisitions),
            "labnr_version": __version__,
            "summary": str(summary),
            "run_ids": ids,
            "result": plain,
        }
        rest = {k: v for k, v in entry.items() if k not in _RECORD_KEYS}
        entry.clear()
        entry.update(new | rest)
        self.save()
        rec = self.get(node)
        assert rec is not None
        return rec

    def _push_history(self, entry: dict[str, Any], **notes: Any) -> None:
        """Move the entry's current result (if any) to the front of its history."""
        if "result" not in entry:
            return
        old = {k: entry[k] for k in _RECORD_KEYS if k in entry} | notes
        entry["history"] = [old, *entry.get("history", [])][: self.history_length]

    def invalidate(self, node: str, reason: str = "", now: datetime | None = None) -> None:
        """Drop ``node``'s current result (it moves to the history, marked invalidated) and save.

        The graph then runs the node again. A node without a result is left alone.
        """
        e = self._nodes.get(node)
        if e is None or "result" not in e:
            return
        self._push_history(e, invalidated={"timestamp": _iso(now or utc_now()), "reason": reason})
        for k in _RECORD_KEYS:
            e.pop(k, None)
        self.save()

    def record_failure(self, node: str, message: str, now: datetime | None = None) -> None:
        """Record that ``node`` failed (its current result, if any, is kept) and save."""
        entry = self._nodes.setdefault(node, {})
        entry["last_failure"] = {"timestamp": _iso(now or utc_now()), "message": str(message)}
        self.save()

    def record_check(
        self,
        node: str,
        valid: bool,
        reason: str = "",
        data: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        """Record the outcome of ``node``'s last check and save."""
        entry = self._nodes.setdefault(node, {})
        entry["last_check"] = {
            "timestamp": _iso(now or utc_now()),
            "valid": bool(valid),
            "reason": str(reason),
            "data": to_plain(dict(data or {}), f"{node}.check"),
        }
        self.save()

    # -- writing -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The whole state as plain data (what the file holds)."""
        return {
            "format_version": FORMAT_VERSION,
            "device": self.device,
            "config_hash": self.config_hash,
            "revision": self.revision,
            "nodes": copy.deepcopy(self._nodes),
        }

    def save(self) -> None:
        """Write the state file atomically (nothing happens for an in-memory state)."""
        if self.path is None:
            return
        text = _HEADER + yaml.safe_dump(
            self.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=False
        )
        write_atomic(self.path, text)

    def __repr__(self) -> str:
        where = self.path or "in memory"
        return f"CalibrationState({self.device!r}, {len(self.nodes())} results, {where})"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Readers (and a crash at any moment) see either the old file or the new
    one, never a partial one; the temporary file (``.labnr-<pid>-…tmp``, new
    and exclusive, in the same folder) is removed on error and the folder
    fsync'd after the rename. ``path`` must not be a symbolic link
    (:class:`labnr.fileio.UnsafePathError`): see :func:`labnr.fileio.write_atomic`.
    """
    fileio.write_atomic(path, text, folder=Path(path).parent)


def _refuse_link(path: Path) -> None:
    """:class:`StateFileError` if the state file is a symbolic link (it is never followed)."""
    if path.is_symlink():
        raise StateFileError(
            f"{path} is a symbolic link; labnr reads and writes the calibration state only "
            "as a regular file (replace the link by the file it points to, or use another "
            "storage.data_dir)"
        )


def _backup(path: Path, tag: str, *, move: bool) -> Path:
    """Copy (or move) ``path`` to ``<path>.<tag>-<UTC time>-<hash>``, reusing an identical copy."""
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:8]
    for existing in path.parent.glob(f"{path.name}.{tag}-*-{digest}"):
        if existing.read_bytes() == raw:
            if move:
                path.unlink()
            return existing
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}.{tag}-{stamp}-{digest}")
    if move:
        fileio.safe_target(backup, path.parent)  # never renames onto a planted link
        os.replace(path, backup)
    else:
        fileio.write_atomic(backup, raw, folder=path.parent, overwrite=False)
    return backup


def _parse(path: Path) -> dict[str, Any]:
    """Read and validate a state file; :class:`StateFileError` for every problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise StateFileError(f"{path}: not a valid calibration state file: {exc}") from None
    if not isinstance(data, dict):
        raise StateFileError(
            f"{path}: not a valid calibration state file: expected a mapping, "
            f"got {type(data).__name__}"
        )
    ver = data.get("format_version")
    if not isinstance(ver, int) or isinstance(ver, bool):
        raise StateFileError(f"{path}: format_version: missing or not an integer ({ver!r})")
    if ver > FORMAT_VERSION:
        raise StateFileError(
            f"{path}: format_version {ver} was written by a newer labnr; this labnr "
            f"({__version__}) reads format {FORMAT_VERSION}"
        )
    problems = _check_types(data, {"device": (str,), "config_hash": (str,), "revision": (int,)})
    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        problems.append(f"nodes: expected a mapping, got {type(nodes).__name__}")
        nodes = {}
    for name, entry in nodes.items():
        problems += _check_entry(str(name), entry)
    if problems:
        raise StateFileError(f"{path}: not a valid calibration state file: " + "; ".join(problems))
    return data


_ENTRY_TYPES: dict[str, tuple[type, ...]] = dict(
    zip(_RECORD_KEYS, [(int,), (dict,), (str,), (int, float), (int,), (str,), (str,), (list,),
                       (dict,)], strict=True)
)  # fmt: skip


def _check_types(data: Mapping[str, Any], types: Mapping[str, tuple[type, ...]],
                 where: str = "") -> list[str]:  # fmt: skip
    """A problem per key of ``data`` whose value is not of its type (bools never qualify)."""
    return [
        f"{where}{key}: expected {' or '.join(t.__name__ for t in typ)}, got {data.get(key)!r}"
        for key, typ in types.items()
        if not isinstance(data.get(key), typ) or isinstance(data.get(key), bool)
    ]


def _check_entry(name: str, entry: Any) -> list[str]:
    where = f"nodes.{name}."
    if not isinstance(entry, dict):
        return [f"nodes.{name}: expected a mapping, got {type(entry).__name__}"]
    problems = []
    if "result" in entry:
        problems += _check_types(entry, _ENTRY_TYPES, where)
        ts = entry.get("timestamp")
        if isinstance(ts, str):
            try:
                t = datetime.fromisoformat(ts)
                if t.tzinfo is None:
                    problems.append(f"{where}timestamp: {ts!r} has no timezone")
            except ValueError:
                problems.append(f"{where}timestamp: {ts!r} is not an ISO-8601 time")
        if isinstance(entry.get("inputs"), dict):
            problems += _check_types(entry["inputs"], dict.fromkeys(entry["inputs"], (int,)),
                                     f"{where}inputs.")  # fmt: skip
    for key in ("last_failure", "last_check"):
        if key in entry and not isinstance(entry[key], dict):
            problems.append(f"{where}{key}: expected a mapping")
    if "history" in entry and not isinstance(entry["history"], list):
        problems.append(f"{where}history: expected a list")
    return problems
