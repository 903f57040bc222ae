"""Fault matrix: injected instrument faults x phase x severity -> outcome (issue #8).

Run: ``python benchmarks/bench_faults.py [--phases sweep,calibrate,lock] [--kinds ...]
[--lock-duration 600]``.

Every cell opens a fresh session on the embedded virtual lab
(``configs/sim_jpc_circulator.yaml``, temporary storage), arms one fault on
the VNA emulator after its N-th message, runs the phase and classifies how it
ended. Fault kinds (server-side, as the VNA would misbehave on the LAN):

- ``timeout``: the emulator freezes (messages discarded unexecuted) for 0.3 s
  (transient) or for good (persistent); the VNA's VISA timeout is 0.5 s;
- ``drop``: every connection is reset (transient: the driver reconnects) or
  the VNA's server stops (persistent: reconnecting is refused);
- ``malformed``: the next reply (transient) or every reply (persistent) is
  corrupted (text cut and ``~?``, binary blocks announce half their length);
- ``nan``: the next data reply (transient) or every one (persistent) is NaN;
- ``error``: one error is pushed into the queue (transient) or one per
  message (persistent).

Phases: ``sweep`` — :func:`labnr.measure.sweep_pump_phase` over 6 phases of
tone ``bc`` with the device at its operating point; ``flux`` —
:func:`labnr.measure.sweep_flux` over 6 values around the sweet spot (pumps
on) with the fault on the **GS200 flux source** instead of the VNA, injected
inside a ramp (no ``nan`` there); ``calibrate`` —
:func:`labnr.calibrate.run.calibrate` from cold start, then the session is
closed as ``labnr calibrate`` does; ``lock`` — :func:`labnr.lock.cli.run_lock`
(calibration, then the lock for ``--lock-duration`` s of virtual time); the
fault is armed 40 VNA messages after run_lock prints ``lock start``, so it hits
the lock loop (the supervisor), not the calibration.

Outcomes:

- ``recovered``: the phase ended normally (calibration ok, lock done, sweep
  complete with every point) and the fault was injected;
- ``stopped safely``: the phase ended with an error naming the instrument
  and the fault, and the lab is safe;
- ``lost data``: a measured point not stored, a stored point with NaN, a
  stored setpoint off the plan, a dataset not completed, or (lock) the lock
  log of a stopped lock not stored;
- ``unsafe stop``: after the phase a pump source or AWG output is on, or the
  flux moved faster than its ramp rate or jumped (any time in the phase), or
  (pump-phase sweep) the flux level changed.

A cell can be both ``lost data`` and ``stopped safely``; the table counts
each outcome. ``measured/stored`` are the sweeps' points.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sim_jpc_circulator.yaml"
KINDS = ("timeout", "drop", "malformed", "nan", "error")
PHASES = ("sweep", "flux", "calibrate", "lock")
SEVERITIES = ("transient", "persistent")
OUTCOMES = ("recovered", "stopped safely", "lost data", "unsafe stop")
VNA_TIMEOUT = 0.5  # s, base VISA timeout of the VNA in the matrix (a freeze costs this)
SWEEP_PHASES = np.linspace(0.0, 1.0, 6)
SWEEP_POINTS = 101
FLUX_VALUES = np.linspace(-0.05, 0.05, 6)  # Phi0 around the sweet spot: 20 uA ramps


@dataclass
class Cell:
    """Result of one injected fault."""

    phase: str
    kind: str
    severity: str
    outcomes: set[str] = field(default_factory=set)
    error: str = ""
    measured: int | None = None
    stored: int | None = None
    fired: bool = False
    lost: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class FaultArm:
    """Arms a fault on an emulated instrument after its ``after``-th message from now.

    Wraps the emulator's ``process`` (test side: the virtual lab is ours to
    poke). ``arm_now()`` arms it at once instead (used by the lock phase).
    """

    def __init__(self, vlab: Any, name: str, kind: str, severity: str, after: int | None) -> None:
        self.vlab, self.name, self.kind, self.severity = vlab, name, kind, severity
        self.inst = vlab.instruments[name]
        self.after = after
        self.count = 0
        self.fired = False
        self._original = self.inst.process
        self.inst.process = self._process

    def _process(self, message: bytes | str) -> bytes | None:
        text = message.decode("latin-1") if isinstance(message, bytes) else message
        if not text.lstrip(" :").upper().startswith("SIM"):
            self.count += 1
            if self.after is not None and self.count == self.after:
                self.arm_now()
            if self.fired and self.kind == "error" and self.severity == "persistent":
                self.inst.faults.push_error(-310, "System error (persistent fault)")
        return self._original(message)

    def arm_now(self) -> None:
        """Inject the fault."""
        if self.fired:
            return
        self.fired = True
        f = self.inst.faults
        persistent = self.severity == "persistent"
        if self.kind == "timeout":
            f.freeze(None if persistent else 0.3)
        elif self.kind == "drop":
            if persistent:  # the instrument is gone: stop serving it (from another thread)
                server = self.vlab.servers[self.name]
                threading.Thread(target=server.stop, daemon=True).start()
            else:
                f.drop_connection(0)
        elif self.kind == "malformed":
            f.malformed_reply(10**6 if persistent else 1)
        elif self.kind == "nan":
            f.nan_data(10**6 if persistent else 1)
        elif self.kind == "error" and not persistent:
            f.push_error(-310, "System error (injected)")

    def remove(self) -> None:
        """Stop counting (the fault itself stays as it is)."""
        self.inst.process = self._original


# ---------------------------------------------------------------------- checks


def flux_problems(vlab: Any, ramp_rate: float) -> list[str]:
    """Jumps or too-fast segments in the GS200's output history."""
    hist = list(vlab.flux_source.state.history)
    out = []
    for (t0, v0), (t1, v1) in zip(hist, hist[1:], strict=False):
        dv, dt = abs(v1 - v0), t1 - t0
        if dv > 1e-12 and (dt <= 0 or dv / dt > ramp_rate * (1 + 1e-6)):
            out.append(f"flux moved {dv:.3g} A in {dt:.3g} s")
    return out


def safety_problems(vlab: Any, ramp_rate: float) -> list[str]:
    """What is not safe in the emulators now: sources or AWG outputs on, flux jumps."""
    out = [f"source {n} RF on" for n, s in vlab.sources.items() if s.state.output]
    if vlab.awg is not None:
        out += [f"AWG output {ch} on" for ch in _awg_outputs_on(vlab.awg)]
    return out + flux_problems(vlab, ramp_rate)


def _awg_outputs_on(awg: Any) -> list[int]:
    state = awg.state
    return [n for n, ch in state.channels.items() if ch.output_on and not state.all_outputs_off]


def _runs(database: Path) -> list[tuple[int, str, Any]]:
    """(run_id, name, completed_timestamp) of every run in a QCoDeS database."""
    if not database.exists():
        return []
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return list(conn.execute("SELECT run_id, name, completed_timestamp FROM runs"))


def datasets_not_completed(database: Path) -> list[int]:
    """Run ids of datasets in ``database`` without a completed timestamp."""
    return [run_id for run_id, _, done in _runs(database) if done is None]


@contextlib.contextmanager
def count_points() -> Iterator[list[int]]:
    """Count S-matrices the sweep loop received from the VNA (points measured)."""
    import labnr.measure.runner as runner

    original = runner.execute_plan
    counter = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        counter[0] += 1
        return out

    runner.execute_plan = counted
    try:
        yield counter
    finally:
        runner.execute_plan = original


# ---------------------------------------------------------------------- phases


def open_session(tmp: Path) -> Any:
    """A fresh session on the embedded virtual lab with the matrix's VNA timeout."""
    from labnr.session import open_lab

    lab = open_lab(CONFIG, database=tmp / "labnr.db", data_dir=tmp / "data")
    lab.vna.timeout(VNA_TIMEOUT)
    return lab


def to_operating_point(lab: Any) -> None:
    """Flux at the sweet spot and pumps on at circulator strength (from the truth)."""
    spec = lab.virtual_lab.spec
    lab.flux.current_per_flux_quantum(spec.flux.current_per_flux_quantum)
    lab.flux.offset_current(spec.flux.offset_current)
    lab.flux.output(True)
    lab.flux.flux(0.0)
    kappa = {n: m.kappa_ext + m.kappa_int for n, m in spec.modes.items()}
    amps = {}
    for tone, t in lab.config.pumps.tones.items():
        link = next(lk for lk in spec.links if {lk.a, lk.b} == set(t.modes))
        g = np.sqrt(kappa[link.a] * kappa[link.b]) / 2
        att = 10 ** (-spec.pump_lines[tone].attenuation_db / 20)
        amps[tone] = float(g / (link.coupling_per_volt * att))
    lab.pump.set_tones({t: {"amplitude": a} for t, a in amps.items()})
    lab.pump.output(True)


def run_sweep_phase(cell: Cell, tmp: Path, after: int) -> None:
    from labnr.measure import sweep_pump_phase

    lab = open_session(tmp)
    rate = lab.flux.ramp_rate()
    try:
        to_operating_point(lab)
        level = lab.virtual_lab.flux_source.state.level
        arm = FaultArm(lab.virtual_lab, "vna", cell.kind, cell.severity, after)
        with count_points() as measured:
            try:
                sweep_pump_phase(lab, "bc", SWEEP_PHASES, points=SWEEP_POINTS, progress=False)
            except Exception as exc:  # noqa: BLE001 - the outcome is what we measure
                cell.error = f"{type(exc).__name__}: {exc}"
        arm.remove()
        cell.fired, cell.measured = arm.fired, measured[0]
        _check_sweep_dataset(cell, "pump_bc_phase", SWEEP_PHASES)
        unsafe = safety_problems(lab.virtual_lab, rate) if cell.error else []
        if lab.virtual_lab.flux_source.state.level != level:
            unsafe.append("the flux level changed")
        _classify(cell, unsafe)
    finally:
        lab.close()


def run_flux_phase(cell: Cell, tmp: Path, after: int) -> None:
    """A flux sweep (pumps on) with the fault on the GS200 flux source."""
    from labnr.measure import sweep_flux

    lab = open_session(tmp)
    lab.flux.source.instrument.timeout(VNA_TIMEOUT)
    rate = lab.flux.ramp_rate()
    try:
        to_operating_point(lab)
        arm = FaultArm(lab.virtual_lab, "flux", cell.kind, cell.severity, after)
        with count_points() as measured:
            try:
                sweep_flux(lab, FLUX_VALUES, points=SWEEP_POINTS, progress=False)
            except Exception as exc:  # noqa: BLE001
                cell.error = f"{type(exc).__name__}: {exc}"
        arm.remove()
        cell.fired, cell.measured = arm.fired, measured[0]
        _check_sweep_dataset(cell, "flux", FLUX_VALUES)
        # the ramps, faults or not, never faster than the rate and never a jump
        unsafe = flux_problems(lab.virtual_lab, rate)
        if cell.error:
            unsafe = safety_problems(lab.virtual_lab, rate)
        _classify(cell, unsafe)
    finally:
        lab.close()


def _check_sweep_dataset(cell: Cell, knob: str, values: np.ndarray) -> None:
    from qcodes.dataset import load_last_experiment

    ds = load_last_experiment().last_data_set()
    md = ds.metadata
    cell.stored = int(md.get("labnr_points", -1))
    data = ds.get_parameter_data()
    name = next(iter(data))
    setpoints = np.asarray(data[name][knob]).reshape(-1)
    trace = np.asarray(data[name][name])
    rows = trace.reshape(trace.shape[0], -1)[: cell.stored] if trace.size else trace
    if cell.measured != cell.stored:
        cell.lost.append(f"measured {cell.measured} != stored {cell.stored}")
    if ds.completed_timestamp() is None:
        cell.lost.append("dataset not completed")
    if rows.size and not np.isfinite(rows).all():
        cell.lost.append("NaN in stored points")
    planned = np.repeat(values[: cell.stored], SWEEP_POINTS)
    if setpoints.size != planned.size or not np.allclose(setpoints, planned):
        cell.lost.append("setpoints differ from the plan (gap or duplicate)")
    if cell.error and not str(md.get("labnr_outcome", "")).startswith("stopped:"):
        cell.lost.append(f"labnr_outcome = {md.get('labnr_outcome')!r}")


def run_calibrate_phase(cell: Cell, tmp: Path, after: int) -> None:
    from labnr.calibrate.run import calibrate

    lab = open_session(tmp)
    rate = lab.flux.ramp_rate()
    vlab = lab.virtual_lab
    arm = FaultArm(vlab, "vna", cell.kind, cell.severity, after)
    try:
        report, _ = calibrate(lab, out=io.StringIO())
        if report.exit_code != 0:
            cell.error = str(report.reason)
            on = [n for n, s in vlab.sources.items() if s.state.output]
            if on:  # labnr.calibrate leaves that to the session's close
                cell.notes.append(f"pumps {on} on until the session closed")
    except Exception as exc:  # noqa: BLE001
        cell.error = f"{type(exc).__name__}: {exc}"
    finally:
        arm.remove()
        lab.close()  # as `labnr calibrate` does: the session's safe state
    cell.fired = arm.fired
    lost = datasets_not_completed(tmp / "labnr.db")
    if lost:
        cell.lost.append(f"datasets not completed: {lost}")
    _classify(cell, safety_problems(vlab, rate) if cell.error else [])


class _ArmOnReport(io.StringIO):
    """The ``out`` stream of run_lock: arms the fault when the lock starts (its ``lock start``)."""

    def __init__(self, arm: FaultArm) -> None:
        super().__init__()
        self.arm = arm

    def write(self, s: str) -> int:
        if "lock start" in s and self.arm.after is None:
            self.arm.after = self.arm.count + 40  # a few lock reads later
        return super().write(s)


def run_lock_phase(cell: Cell, tmp: Path, duration: float) -> None:
    from labnr.lock.cli import run_lock

    lab = open_session(tmp)
    rate = lab.flux.ramp_rate()
    vlab = lab.virtual_lab
    arm = FaultArm(vlab, "vna", cell.kind, cell.severity, None)
    unsafe: list[str] = []
    try:
        summary, log, _ = run_lock(lab, duration, out=_ArmOnReport(arm))
        if summary["duration_s"] < 0.99 * duration:
            cell.error = f"lock ended early after {summary['duration_s']:.0f} s"
    except Exception as exc:  # noqa: BLE001
        cell.error = f"{type(exc).__name__}: {exc}"
        unsafe = safety_problems(vlab, rate)  # before the session's close: the lock's own
        if not any(name == "lock" for _, name, _ in _runs(tmp / "labnr.db")):
            cell.lost.append("lock log not stored (run_lock raised before writing it)")
    finally:
        arm.remove()
        lab.close()
    cell.fired = arm.fired
    lost = datasets_not_completed(tmp / "labnr.db")
    if lost:
        cell.lost.append(f"datasets not completed: {lost}")
    _classify(cell, unsafe)


def _classify(cell: Cell, unsafe: list[str]) -> None:
    if unsafe:
        cell.outcomes.add("unsafe stop")
        cell.notes += unsafe
    if cell.lost:
        cell.outcomes.add("lost data")
    if not cell.fired:
        cell.notes.append("fault never fired")
    if not cell.error:
        if cell.fired:
            cell.outcomes.add("recovered")
    elif not unsafe:
        cell.outcomes.add("stopped safely")


# ---------------------------------------------------------------------- matrix

#: Message number (of the VNA emulator, counted from the arm) that arms the fault.
SWEEP_AFTER = 600  # inside the third point (~240 VNA messages per point)
CALIBRATE_AFTER = 500  # mid-calibration (a cold-start calibration sends ~990)
FLUX_AFTER = 150  # GS200 messages: inside the third point's ramp (~60 per verified ramp)


def run_cell(phase: str, kind: str, severity: str, lock_duration: float) -> Cell:
    """Inject one fault in one phase; classify the outcome."""
    cell = Cell(phase, kind, severity)
    with tempfile.TemporaryDirectory(prefix="labnr_faults_") as d:
        tmp = Path(d)
        if phase == "sweep":
            run_sweep_phase(cell, tmp, SWEEP_AFTER)
        elif phase == "flux":
            run_flux_phase(cell, tmp, FLUX_AFTER)
        elif phase == "calibrate":
            run_calibrate_phase(cell, tmp, CALIBRATE_AFTER)
        else:
            run_lock_phase(cell, tmp, lock_duration)
    return cell


def run_matrix(
    phases: tuple[str, ...] = PHASES,
    kinds: tuple[str, ...] = KINDS,
    severities: tuple[str, ...] = SEVERITIES,
    lock_duration: float = 600.0,
    progress: Callable[[Cell], None] | None = None,
) -> list[Cell]:
    """Every cell of the matrix (restores QCoDeS's database location afterwards)."""
    import qcodes as qc

    old = qc.config.core.db_location
    cells = []
    try:
        for phase in phases:
            for kind in kinds:
                if phase == "flux" and kind == "nan":  # a current source has no trace
                    continue
                for severity in severities:
                    cell = run_cell(phase, kind, severity, lock_duration)
                    cells.append(cell)
                    if progress is not None:
                        progress(cell)
    finally:
        qc.config.core.db_location = old
    return cells


def table(cells: list[Cell]) -> str:
    """Counts per phase and severity, then one line per cell."""
    lines = [f"{'phase':10} {'severity':11} " + " ".join(f"{o:>14}" for o in OUTCOMES)
             + f" {'sweep points measured/stored':>30}"]  # fmt: skip
    for phase in dict.fromkeys(c.phase for c in cells):
        for severity in dict.fromkeys(c.severity for c in cells):
            group = [c for c in cells if c.phase == phase and c.severity == severity]
            if not group:
                continue
            counts = [sum(o in c.outcomes for c in group) for o in OUTCOMES]
            pts = ""
            if phase in ("sweep", "flux"):
                pts = f"{sum(c.measured or 0 for c in group)}/{sum(c.stored or 0 for c in group)}"
            lines.append(f"{phase:10} {severity:11} " + " ".join(f"{n:>14}" for n in counts)
                         + f" {pts:>30}")  # fmt: skip
    lines.append("")
    for c in cells:
        pts = f" points {c.measured}/{c.stored}" if c.phase in ("sweep", "flux") else ""
        what = ", ".join(sorted(c.outcomes)) or "?"
        extra = "; ".join(c.lost + c.notes)
        lines.append(f"{c.phase:10} {c.kind:10} {c.severity:11} {what:28}{pts}"
                     + (f"  [{extra}]" if extra else "")
                     + (f"\n{'':34}error: {c.error[:160]}" if c.error else ""))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--severities", default=",".join(SEVERITIES))
    parser.add_argument("--lock-duration", type=float, default=600.0, help="s of virtual time")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cells = run_matrix(
        tuple(args.phases.split(",")), tuple(args.kinds.split(",")),
        tuple(args.severities.split(",")), args.lock_duration,
        progress=lambda c: print(f"  {c.phase} {c.kind} {c.severity}: {sorted(c.outcomes)}",
                                 flush=True),
    )  # fmt: skip
    print(table(cells))


if __name__ == "__main__":
    main()
