"""The lock on an open lab session: calibration → (resume) → supervised lock → re-acquisition.

:class:`LabLock` turns the calibration's results into what the lock needs (a
:class:`~labnr.lock.lab.LabPlant` at the operating point, the model Jacobian,
the measurement chain, the read noise). :class:`LabLockRun` puts a
:class:`~labnr.lock.supervisor.LockSupervisor` on top:

* **Start.** If the last locked point (:mod:`labnr.lock.resume`) belongs to
  the stored calibration and a quick read there shows the lock threshold,
  the lock resumes from it without re-running the calibration (only the
  calibrated flux bias and the pump tones are applied). Otherwise the
  calibration graph runs (valid nodes are only checked) and the lock starts
  at the calibrated operating point.
* **Checkpoints.** While locked, the knob values of the last locked read are
  written to the resume file every ``checkpoint_interval`` of plant time.
* **Re-acquisition** on loss of lock, cheapest first: (1) the calibration
  forced from its ``operating_point`` node — the graph still checks the
  upstream nodes, so after a flux jump the flux node's check fails and it and
  its descendants re-run, while a line-phase or amplitude change only re-runs
  the operating point; if the isolation then read through the supervisor's
  own plant (with the re-solved read plan) is below ``lock_db``, (2) the whole
  graph with its checks; success there needs ``lost_db`` (the lock pulls in
  the rest; the supervisor parks after repeated re-acquisitions that never
  reach lock). If both fail the supervisor parks the device (pumps off, flux
  held). Every attempt is recorded (:class:`ReacquireRecord`: nodes re-run,
  VNA acquisitions, plant time).

The calibration is imported lazily and called, never edited. This module
never imports the virtual lab (truth firewall): the virtual clock reaches it
only as callables through ``session.virtual_lab``.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from labnr.lock.controller import (
    ControllerSettings,
    LockController,
    model_jacobian,
    network_elements,
)
from labnr.lock.lab import LabPlant
from labnr.lock.plant import ErrorSignal, element_name
from labnr.lock.resume import ResumePoint, load_resume, resume_path, save_resume
from labnr.lock.supervisor import LockSupervisor, Reacquisition, SupervisorSettings

__all__ = ["DUTY_TARGET", "NOISE_READS", "LabLock", "LabLockRun", "ReacquireRecord"]

NOISE_READS = 4  # reads at lock start that estimate the read noise
#: Share of time the lab lock spends reading: 1 point under the 5 % budget of issue 7.
DUTY_TARGET = 0.04


class LabLock:
    """Everything the lock needs from the calibration, rebuilt after every re-calibration.

    Parameters
    ----------
    lab : LabSession
        Open lab.
    ctx : CalibrationContext
        Holds the calibration state (``operating_point``, ``loop_phase``,
        ``modes``, ``pump_<tone>`` results).
    start : Mapping[str, float], optional
        Knob values to start at instead of the calibrated ones (a resume point).
    """

    def __init__(self, lab: Any, ctx: Any, start: Mapping[str, float] | None = None) -> None:
        self.lab, self.cfg = lab, lab.config
        fwd, rev = self.cfg.target.paths()
        self.fwd = [tuple(p) for p in fwd]
        self.rev = [tuple(p) for p in rev]
        self.signal = ErrorSignal.from_paths(self.fwd, self.rev)
        vl = getattr(lab, "virtual_lab", None)
        self.clock = None if vl is None else (lambda: float(vl.clock.now))
        self.sleep = None if vl is None else vl.clock.advance
        self.load(ctx, start)

    def load(self, ctx: Any, start: Mapping[str, float] | None = None) -> None:
        from labnr.calibrate.circulator_helpers import apply_settings, device_model

        op = ctx.result("operating_point")
        lp = ctx.result("loop_phase")
        self.op = op
        begin = _with_knobs(op, start or {})
        apply_settings(self.lab, begin["settings"])
        self.model = device_model(ctx, lp["theta"])
        self.convention = "vna" if ctx.result("modes").get("conjugate") else "model"
        self.phase_tone = str(lp["tone"])
        self.plant = LabPlant(self.lab, begin, self.rev + self.fwd, phase_tones=[self.phase_tone],
                              clock=self.clock, sleep=self.sleep)  # fmt: skip
        # the model is balanced at the calibrated knobs; the device is at the start knobs
        # (the same point unless resuming, when drift moved the balance there)
        self.model_values = {n: _knob_value(op["settings"], n) for n in self.plant.knobs()}
        chain: dict[str, complex] = {}
        for o, i in self.rev:  # reverse: from the loop-phase fit
            kf = complex(*lp["factors"][f"{o},{i}"])
            chain[element_name(o, i)] = np.conj(kf) if self.convention == "vna" else kf
        reads = [self.plant.read() for _ in range(NOISE_READS)]
        self.first = reads[0]
        # read noise of one error component from repeated reads (the controller's
        # innovation test and drift estimate need the real one)
        errs = [self.signal.error(r.s) for r in reads]
        self.read_noise = float(np.sqrt(np.mean(np.var(errs, axis=0, ddof=1))))
        self.start_isolation_db = float(
            np.median([np.min(self.signal.isolation_db(r.s)) for r in reads])
        )
        model_s = network_elements(self.network_of(self.model_values),
                                   convention=self.convention)  # type: ignore[arg-type]  # fmt: skip
        for o, i in self.fwd:  # forward: a read against the model
            n = element_name(o, i)
            mean = complex(np.mean([r.s[n] for r in reads]))
            chain[n] = mean / model_s[n] if abs(model_s[n]) > 0 else 1.0
        self.chain = chain
        self.reference_forward = float(
            np.median([abs(self.first.s[n]) for n in self.signal.forward_names])
        )

    def values(self) -> dict[str, float]:
        """Present knob values of the plant."""
        return {n: k.value for n, k in self.plant.knobs().items()}

    def network_of(self, values: Mapping[str, float]) -> Any:
        """The calibrated model network at these knob values."""
        from labnr.calibrate.operating_point import Settings

        st = _with_knobs(self.op, values)["settings"]
        amp = {t: float(v["amplitude"]) for t, v in st.items()}
        ph = {t: float(v["phase"]) for t, v in st.items()}
        freq = {t: float(v["frequency"]) for t, v in st.items()}
        return self.model.network(Settings(amp, ph, freq))[0]

    def jacobian(self) -> np.ndarray:
        """Model Jacobian at the model's balance (the calibrated knobs)."""
        knobs = {n: replace(k, value=self.model_values[n]) for n, k in self.plant.knobs().items()}
        return model_jacobian(self.network_of, knobs, self.signal, chain=self.chain,
                              convention=self.convention)  # type: ignore[arg-type]  # fmt: skip


def _knob_value(settings: Mapping[str, Mapping[str, float]], name: str) -> float:
    _, tone, kind = name.split("_", 2)
    return float(settings[tone][kind])


def _with_knobs(op: Mapping[str, Any], values: Mapping[str, float]) -> dict[str, Any]:
    """A copy of an operating-point result with knob values (``pump_<tone>_<kind>``) put in."""
    out = copy.deepcopy(dict(op))
    for name, v in values.items():
        _, tone, kind = name.split("_", 2)
        out["settings"][tone][kind] = float(v)
    return out


@dataclass
class ReacquireRecord:
    """One re-acquisition: what ran, what it cost, how it ended."""

    start: float
    end: float = float("nan")
    stages: list[str] = field(default_factory=list)
    acquisitions: int = 0
    isolation_db: float = float("nan")
    success: bool = False
    message: str = ""


class LabLockRun:
    """A supervised lock on an open lab session (see the module docstring).

    Parameters
    ----------
    lab : LabSession
        Open lab.
    settings : SupervisorSettings, optional
        Thresholds; ``reference_forward`` is always taken from the calibration
        and ``max_duty`` defaults to :data:`DUTY_TARGET`.
    resume : bool
        Try the last locked point first.
    out : file, optional
        Where the calibration writes its progress (stderr by default).
    sleep : callable, optional
        How plant time passes between reads (default: the lab's; a benchmark
        may pass one that samples the device meanwhile).
    """

    def __init__(self, lab: Any, settings: SupervisorSettings | None = None, *,
                 resume: bool = True, out: Any = None,
                 sleep: Callable[[float], Any] | None = None) -> None:  # fmt: skip
        self.lab = lab
        self.out = out or sys.stderr
        self.base_settings = settings or SupervisorSettings(max_duty=DUTY_TARGET)
        self.use_resume = resume
        self._sleep = sleep
        self.reacquisitions: list[ReacquireRecord] = []
        self.calibration_acquisitions = 0
        self.resumed: ResumePoint | None = None
        self.resume_note = ""
        self.lock: LabLock | None = None
        self.supervisor: LockSupervisor | None = None

    # ------------------------------------------------------------------ building
    def _context(self) -> Any:
        from labnr.calibrate.node import CalibrationContext
        from labnr.calibrate.state import CalibrationState

        state = CalibrationState.for_config(self.lab.config)
        return CalibrationContext(state, lab=self.lab, config=self.lab.config)

    def _identity(self, ctx: Any) -> tuple[str, str, int | None, Path | None]:
        from labnr.calibrate.state import config_hash

        cfg = self.lab.config
        rec = ctx.state.get("operating_point")
        path = None if ctx.state.path is None else resume_path(ctx.state.path, cfg.name)
        return cfg.name, config_hash(cfg), None if rec is None else rec.revision, path

    def _new_lock(self, ctx: Any, start: Mapping[str, float] | None = None) -> LabLock:
        lock = LabLock(self.lab, ctx, start)
        if self._sleep is not None:
            lock.plant._sleep = self._sleep
        return lock

    def _try_resume(self) -> LabLock | None:
        ctx = self._context()
        if "operating_point" not in ctx.state:
            self.resume_note = "no calibrated operating point"
            return None
        device, chash, rev, path = self._identity(ctx)
        if path is None:
            return None
        point, self.resume_note = load_resume(path, device, chash, rev)
        if point is None:
            return None
        if "flux_sweet_spot" in ctx.state and self.lab.flux is not None:
            from labnr.calibrate.circulator_helpers import apply_flux

            apply_flux(self.lab, ctx.state.result("flux_sweet_spot")["offset_current"])
        try:
            lock = self._new_lock(ctx, point.knobs)
        except Exception as exc:  # noqa: BLE001 - a bad resume point falls back to calibration
            self.resume_note = f"resume point refused: {exc}"
            return None
        iso = lock.start_isolation_db
        if iso < self.base_settings.lock_db:
            self.resume_note = (f"last locked point reads {iso:.1f} dB < "
                                f"{self.base_settings.lock_db:g} dB: recalibrating")  # fmt: skip
            return None
        self.resumed = point
        self.resume_note = f"resumed from the last locked point ({point.timestamp}): {iso:.1f} dB"
        return lock

    def prepare(self) -> LockSupervisor:
        """Resume or calibrate, then build the supervisor (nothing is locked yet)."""
        from labnr.calibrate.run import calibrate

        lock = self._try_resume() if self.use_resume else None
        if lock is None:
            report, ctx = calibrate(self.lab, out=self.out)
            self.calibration_acquisitions += int(ctx.acquisitions)
            if report.exit_code != 0 or "operating_point" not in ctx.state:
                raise RuntimeError("calibration failed; nothing to lock")
            lock = self._new_lock(ctx)
        self.lock = lock
        self._ident = self._identity(self._context())
        tuning = ControllerSettings(read_noise=lock.read_noise)
        controller = LockController(list(lock.plant.knobs()), lock.jacobian(), tuning)
        st = SupervisorSettings(**{**self.base_settings.__dict__,
                                   "reference_forward": lock.reference_forward})  # fmt: skip
        sup = LockSupervisor(lock.plant, controller, lock.signal, self.reacquire, st,
                             checkpoint=self.checkpoint)  # fmt: skip
        sup.start()
        if self.resumed is not None:
            sup.log.event(sup.plant.now(), "resumed", self.resume_note)
        self.supervisor = sup
        return sup

    # ------------------------------------------------------------------ callbacks
    def checkpoint(self, time: float, values: dict[str, float], isolation_db: float) -> None:
        """Persist the last locked point (the supervisor calls this while locked)."""
        device, chash, rev, path = self._ident
        if path is None:
            return
        save_resume(path, ResumePoint(device, chash, rev, values, isolation_db, time))

    def _isolation(self, reads: int = 2) -> float:
        """Worst-path isolation through the supervisor's plant (median of ``reads``)."""
        assert self.supervisor is not None and self.lock is not None
        plant, sig = self.supervisor.plant, self.lock.signal
        return float(np.median([np.min(sig.isolation_db(plant.read().s)) for _ in range(reads)]))

    def _stage(self, rec: ReacquireRecord, from_node: str | None) -> float | None:
        """Run the calibration (from ``from_node``), adopt its point; isolation or None."""
        from labnr.calibrate.run import calibrate

        assert self.supervisor is not None
        report, ctx = calibrate(self.lab, from_node=from_node, out=self.out)
        ran = [n.name for n in report.nodes if n.status == "ran"]
        rec.stages.append(f"{from_node or 'all'} (ran: {', '.join(ran) or 'none'})")
        rec.acquisitions += int(ctx.acquisitions)
        if report.exit_code != 0 or "operating_point" not in ctx.state:
            rec.message += f"calibration from {from_node or 'the start'} failed; "
            return None
        new = self._new_lock(ctx)
        rec.acquisitions += new.plant.acquisitions
        plant: LabPlant = self.supervisor.plant  # type: ignore[assignment]
        plant.adopt_operating_point(new.plant)
        self.lock = new
        self._ident = self._identity(ctx)
        before = plant.acquisitions
        iso = self._isolation()
        rec.acquisitions += plant.acquisitions - before
        rec.message += f"{iso:.1f} dB after {from_node or 'all nodes'}; "
        return iso

    def reacquire(self) -> Reacquisition:
        """Cheapest calibration that explains the loss first, then the whole graph."""
        assert self.supervisor is not None
        st = self.supervisor.settings
        now = self.supervisor.plant.now
        rec = ReacquireRecord(start=now())
        self.reacquisitions.append(rec)
        try:
            iso = self._stage(rec, "operating_point")
            if iso is None or iso < st.lock_db:
                iso = self._stage(rec, None)
                rec.success = iso is not None and iso >= st.lost_db
            else:
                rec.success = True
            rec.isolation_db = float("nan") if iso is None else iso
        except Exception as exc:  # noqa: BLE001 - a failed re-acquisition parks the device
            rec.message += f"re-calibration raised {type(exc).__name__}: {exc}"
            rec.success = False
        rec.end = now()
        assert self.lock is not None
        msg = f"re-ran {' then '.join(rec.stages)}: {rec.message.strip('; ')}"
        if not rec.success:
            return Reacquisition(False, message=msg)
        return Reacquisition(True, jacobian=self.lock.jacobian(), message=msg)

    # ------------------------------------------------------------------ running
    def run(self, duration: float) -> dict[str, Any]:
        """Lock for ``duration`` s of plant time (continues a previous ``run``)."""
        sup = self.supervisor or self.prepare()
        try:
            return sup.run(duration)
        except KeyboardInterrupt:
            sup.plant.safe_state()
            raise
