"""``labnr lock CONFIG --duration 24h [--json]``: hold the calibrated device at its operating point.

Opens the lab, resumes from the last locked point if it still reads locked,
else runs (or, with a valid state, just checks) the calibration and applies
the operating point; builds the model Jacobian from the calibrated device
model, supervises the lock for ``--duration`` of plant time (virtual time in
simulation), stores the lock log as a QCoDeS run and a report PNG next to the
data, and with ``--json`` prints the lock summary as the last stdout line.
On loss of lock the calibration is re-run from its ``operating_point`` node,
then (if that does not reach lock) as a whole graph with its checks; if both
fail the device is parked. See :mod:`labnr.lock.session_lock`.

The calibration and the session are imported lazily: this module is part of
``labnr.lock`` and must not import the virtual lab (truth firewall); the
virtual clock reaches it only as callables via ``session.virtual_lab``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from labnr.lock.log import LockLog, write_qcodes
from labnr.lock.session_lock import LabLockRun

__all__ = ["add_lock_arguments", "cmd_lock", "parse_duration", "run_lock", "store_lock"]

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from ``"24h"``, ``"90m"``, ``"3600s"``, ``"1.5d"`` or a bare number of seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(s|m|min|h|d)?\s*", str(text))
    if not m:
        raise ValueError(f"duration {text!r}: use e.g. 24h, 90m, 3600s")
    value = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not value > 0:
        raise ValueError(f"duration {text!r} must be positive")
    return value


def add_lock_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``labnr lock``."""
    parser.add_argument("config", help="experiment config (YAML)")
    parser.add_argument("--duration", default="24h", help="how long to lock (24h, 90m, 3600s)")
    parser.add_argument(
        "--json", action="store_true", help="print the summary as one JSON object, last on stdout"
    )
    parser.add_argument(
        "--no-resume", action="store_true",
        help="start at the calibrated operating point, not at the last locked point",
    )  # fmt: skip


def run_lock(
    lab: Any, duration: float, *, out: Any = None, resume: bool = True
) -> tuple[dict[str, Any], LockLog, Path]:
    """Resume or calibrate, lock for ``duration`` s of plant time, store the log.

    See :class:`labnr.lock.session_lock.LabLockRun` for the start (resume from
    the last locked point, else calibrate), the checkpoints and the
    re-acquisition. Returns (summary, log, path of the report PNG).
    """
    from labnr.safety import safe_state

    out = out or sys.stderr
    runner = LabLockRun(lab, resume=resume, out=out)
    try:
        sup = runner.prepare()
        # every row reaches the database as it is logged (kill -9 loses seconds, not the log)
        sup.log.stream_to(lab.database, sample=lab.config.name)
    except BaseException:
        safe_state(lab)  # a failed start leaves no pump on (flux held)
        raise
    print(f"lock start: {runner.resume_note or 'calibrated operating point'}", file=out)
    try:
        summary = runner.run(duration)
    except BaseException as stop:
        # a lock stopped by a fault or Ctrl-C: its pumps are off (the supervisor
        # parks); every read it logged is still stored, and the summary printed
        try:
            store_lock(lab, runner)
        except Exception as exc:  # noqa: BLE001 - the original error matters more
            print(f"lock log could not be stored: {exc}", file=out)
        if isinstance(stop, KeyboardInterrupt) and runner.supervisor is not None:
            try:
                text = json.dumps(runner.supervisor.log.summary(), default=str)
            except Exception as exc:  # noqa: BLE001 - the interrupt matters more
                text = f"unavailable ({type(exc).__name__}: {exc})"
            print(f"lock summary (stopped): {text}", file=out, flush=True)
        raise
    return summary, sup.log, store_lock(lab, runner)


def store_lock(lab: Any, runner: LabLockRun) -> Path:
    """Write the lock log as a QCoDeS run and the report PNG; returns the PNG's path."""
    sup, lock = runner.supervisor, runner.lock
    assert sup is not None and lock is not None
    cfg = lab.config
    meta = {"labnr_config": cfg.name, "labnr_operating_point": lock.op["settings"]}
    run_id = write_qcodes(sup.log, lab.database, sample=cfg.name, metadata=meta)
    png = Path(lab.data_dir) / f"lock_run_{run_id}.png"
    plot_lock(sup.log, png)
    print(f"lock log: run {run_id} in {lab.database}; report {png}", file=runner.out)
    return png


def plot_lock(log: LockLog, path: Path) -> None:
    """Isolation vs time, knob corrections and events, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reads = log.reads()
    t0 = log.start_time or 0.0
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    if reads:
        t = (np.array([r.time for r in reads]) - t0) / 3600
        ax1.plot(t, [r.worst_isolation_db for r in reads], ".", ms=2, label="worst path")
    for lvl in (30, 40):
        ax1.axhline(lvl, color="grey", lw=0.8, ls="--")
    ax1.set_ylabel("isolation (dB)")
    ax1.grid(alpha=0.3)
    rows = [r for r in log.rows if r.knobs]
    for k in log.knob_names:
        pts = [(r.time, r.knobs[k]) for r in rows if k in r.knobs]  # type: ignore[index]
        if pts:
            tk, vk = np.array(pts).T
            ax2.plot((tk - t0) / 3600, vk - vk[0], drawstyle="steps-post", label=k)
    ax2.set_ylabel("knob change from start")
    ax2.set_xlabel("time (h)")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    for ev in log.events():
        if ev.event in ("start", "stop"):
            continue
        for ax in (ax1, ax2):
            ax.axvline((ev.time - t0) / 3600, color="red", lw=0.8)
        ax1.text((ev.time - t0) / 3600, ax1.get_ylim()[1], ev.event, fontsize=6, rotation=90,
                 va="top", color="red")  # fmt: skip
    fig.suptitle("labnr lock")
    fig.tight_layout()
    from labnr.fileio import atomic_writer

    with atomic_writer(path) as f:  # atomic, never through a symbolic link
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def cmd_lock(args: argparse.Namespace) -> int:
    """``labnr lock CONFIG --duration 24h [--json]``."""
    from labnr.session import open_lab

    duration = parse_duration(args.duration)
    with open_lab(args.config) as lab:
        summary, _, _ = run_lock(lab, duration, resume=not getattr(args, "no_resume", False))
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(json.dumps(summary, indent=2))
    return 0
