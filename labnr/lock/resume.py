"""The last locked point on disk, so that an interrupted lock restarts where it was.

While locked, ``labnr lock`` periodically writes the knob values of its last
read at or above the lock threshold to a small YAML file next to the
calibration state (``<data_dir>/lock_resume_<device>.yaml``), atomically and
never through a symbolic link (:func:`labnr.fileio.write_atomic`: a crash
leaves the previous file; a link planted at the path is refused). On the next
start the point is used if it belongs to the same config and the same stored
``operating_point`` result, and a quick read at it still shows the lock
threshold; otherwise the lock starts at the calibrated operating point.

Layout (``format_version: 1``)::

    format_version: 1
    device: jpc_circulator_sim
    config_hash: 3f2a9c0d41b7e6a5        # of the config it belongs to
    operating_point_revision: 7          # the calibration result the knobs refine
    timestamp: '2026-11-21T12:03:11+00:00'   # UTC wall time of the write
    plant_time_s: 86123.4                # plant clock of the read (virtual in simulation)
    isolation_db: 51.2                   # worst path at that read
    knobs: {pump_ab_phase: 0.731, pump_ab_amplitude: 0.101, ...}

The calibration state module is called, never edited: it has no place for
lock results, hence the separate file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from labnr.fileio import write_atomic

__all__ = ["FORMAT_VERSION", "ResumePoint", "load_resume", "resume_path", "save_resume"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ResumePoint:
    """A locked point: knob values and where they came from.

    Attributes
    ----------
    device, config_hash : str
        The config the point belongs to.
    operating_point_revision : int or None
        Revision of the calibration's ``operating_point`` result the knobs refine.
    knobs : dict
        Knob values by name (SI: rad, V).
    isolation_db : float
        Worst-path isolation read at these knobs, dB.
    plant_time_s : float
        Plant clock of that read, s.
    timestamp : str
        UTC wall time of the write (ISO 8601).
    """

    device: str
    config_hash: str
    operating_point_revision: int | None
    knobs: dict[str, float] = field(default_factory=dict)
    isolation_db: float = float("nan")
    plant_time_s: float = float("nan")
    timestamp: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "device": self.device,
            "config_hash": self.config_hash,
            "operating_point_revision": self.operating_point_revision,
            "timestamp": self.timestamp,
            "plant_time_s": float(self.plant_time_s),
            "isolation_db": float(self.isolation_db),
            "knobs": {k: float(v) for k, v in self.knobs.items()},
        }


def resume_path(state_file: str | Path, device: str) -> Path:
    """``lock_resume_<device>.yaml`` in the folder of the calibration state file."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", device).strip("._") or "device"
    return Path(state_file).parent / f"lock_resume_{safe}.yaml"


def save_resume(path: str | Path, point: ResumePoint) -> None:
    """Write ``point`` atomically (the previous file survives a crash mid-write).

    Raises :class:`labnr.fileio.UnsafePathError` if ``path`` is a symbolic link.
    """
    if not point.timestamp:
        point = ResumePoint(**{**point.__dict__, "timestamp": datetime.now(UTC).isoformat()})
    text = "# labnr lock: last locked point (written by labnr.lock)\n" + yaml.safe_dump(
        point.to_dict(), sort_keys=False
    )
    write_atomic(Path(path), text, folder=Path(path).parent)


def load_resume(
    path: str | Path,
    device: str,
    config_hash: str,
    operating_point_revision: int | None,
    knob_names: Mapping[str, Any] | None = None,
) -> tuple[ResumePoint | None, str]:
    """The stored point if it belongs here, else ``None``; and why.

    It belongs if the file parses, has this format version, device, config
    hash and ``operating_point`` revision, finite knob values and (if given)
    exactly the knobs ``knob_names``. Whether the device is still locked
    there is for the caller to read.
    """
    p = Path(path)
    if p.is_symlink():
        return None, f"{p} is a symbolic link; labnr reads the resume point only as a regular file"
    if not p.is_file():
        return None, f"no resume file {p}"
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return None, f"{p} cannot be read: {exc}"
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        return None, f"{p}: not a format_version {FORMAT_VERSION} resume file"
    want = {"device": device, "config_hash": config_hash,
            "operating_point_revision": operating_point_revision}  # fmt: skip
    for key, value in want.items():
        if data.get(key) != value:
            return None, f"{p}: {key} is {data.get(key)!r}, the present one is {value!r}"
    knobs = data.get("knobs")
    if not isinstance(knobs, dict) or not knobs:
        return None, f"{p}: no knob values"
    try:
        values = {str(k): float(v) for k, v in knobs.items()}
    except (TypeError, ValueError):
        return None, f"{p}: knob values are not numbers: {knobs!r}"
    if not all(math.isfinite(v) for v in values.values()):
        return None, f"{p}: non-finite knob values {values}"
    if knob_names is not None and set(values) != set(knob_names):
        return None, f"{p}: knobs {sorted(values)}, the lock has {sorted(knob_names)}"
    point = ResumePoint(
        device, config_hash, operating_point_revision, values,
        float(data.get("isolation_db", math.nan)), float(data.get("plant_time_s", math.nan)),
        str(data.get("timestamp", "")),
    )  # fmt: skip
    return point, f"last locked point of {point.timestamp or 'unknown time'}"
