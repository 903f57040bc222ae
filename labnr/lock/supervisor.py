"""The lock loop: read → decide → correct → log, with loss of lock, re-acquisition and safety.

Each cycle the :class:`LockSupervisor` waits (the :class:`ReadScheduler` keeps
the measurement duty under its budget and reads faster when the error grows
or the drift is fast), reads the plant once, and then, in this order:

1. **Instability** — any :math:`|S|` above the calibrated forward
   transmission plus ``gain_limit_db``, or the largest :math:`|S|` growing by
   ``growth_db`` on each of ``growth_reads`` successive reads above it, or a
   non-finite read: the pumps are cut (``plant.safe_state()``) at once, in
   the same cycle as the read that showed it, and the loop stops.
2. **Loss of lock** — worst isolation below ``lost_db`` for ``lost_reads``
   consecutive reads, or a *model mismatch*: most of the error lies where no
   knob can reach (outside the range of the Jacobian: a flux jump detunes a
   mode, a line-phase or amplitude drift does not) and that part alone keeps
   the isolation below ``lock_db`` — at once when the innovation was far
   beyond what noise, drift and the last correction explain (a jump), or
   after ``mismatch_reads`` reads (a creeping flux drift). The
   caller's ``reacquire()`` runs (the calibration layer re-runs the cheapest
   nodes that explain the mismatch); if it fails, raises, or keeps
   re-acquiring without ever reaching lock, the device is parked
   (``safe_state``) and nothing is written afterwards.
3. **Correction** — the controller's bounded step, checked against fresh
   knob limits right before ``plant.set_knobs``.

Any other exception from the plant parks the device before it propagates; on
Ctrl-C the pumps are switched off and the event logged.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from labnr.lock.controller import LimitViolation, LockController, Observation, check_command
from labnr.lock.log import LockLog
from labnr.lock.plant import ErrorSignal, Plant, Reading

__all__ = [
    "Checkpoint",
    "LockSupervisor",
    "Reacquire",
    "Reacquisition",
    "ReadScheduler",
    "SupervisorSettings",
]


@dataclass(frozen=True)
class SupervisorSettings:
    """Thresholds and the read budget of :class:`LockSupervisor`.

    Attributes
    ----------
    lock_db : float
        Worst-path isolation that counts as locked, dB.
    lost_db : float
        Below this for ``lost_reads`` consecutive reads the lock is lost, dB.
    lost_reads : int
        Consecutive reads below ``lost_db`` that make a loss of lock.
    mismatch_fraction : float
        Share of the error outside the knobs' reach that makes a model mismatch.
    mismatch_floor : float, optional
        Smallest out-of-reach error norm (S units) that counts; default: the
        error of every path at ``lock_db``.
    mismatch_reads : int
        Reads in a row with such an error that make a mismatch without a jump.
    reference_forward : float
        Calibrated forward transmission :math:`|S_{fwd}|` (linear), measurement
        chain included. Also scales the error targets (``target_isolation_db``,
        the default ``mismatch_floor``), which are isolations relative to it.
    gain_limit_db : float
        Instability: any :math:`|S|` this far above ``reference_forward``.
    growth_db, growth_reads : float, int
        Instability: largest :math:`|S|` above ``reference_forward`` and
        growing by ``growth_db`` on each of ``growth_reads`` reads.
    max_duty : float
        Largest share of time spent on lock reads.
    target_isolation_db : float
        The read interval aims to let drift take the error no further than this.
    min_interval, max_interval : float
        Bounds of the read interval, s.
    max_relocks_without_lock : int
        Park after this many re-acquisitions in a row that never reached ``lock_db``.
    checkpoint_interval : float
        Plant time between two calls of the supervisor's ``checkpoint`` (the
        last locked point, for a lock that resumes after an interruption), s.
    """

    lock_db: float = 40.0
    lost_db: float = 30.0
    lost_reads: int = 8
    mismatch_fraction: float = 0.5
    mismatch_floor: float | None = None
    mismatch_reads: int = 3
    reference_forward: float = 1.0
    gain_limit_db: float = 3.0
    growth_db: float = 1.0
    growth_reads: int = 2
    max_duty: float = 0.05
    target_isolation_db: float = 52.0
    min_interval: float = 0.0
    max_interval: float = 300.0
    max_relocks_without_lock: int = 2
    checkpoint_interval: float = 600.0


@dataclass(frozen=True)
class Reacquisition:
    """What a ``reacquire()`` callback reports.

    Attributes
    ----------
    success : bool
        The device is back near its operating point (knobs already set).
    jacobian : numpy.ndarray, optional
        A new model Jacobian (e.g. from the refitted model); default: the
        controller re-evaluates or keeps its model Jacobian.
    message : str
        What was re-run, or why it failed (logged).
    """

    success: bool
    jacobian: np.ndarray | None = None
    message: str = ""


#: ``reacquire() -> bool | Reacquisition``.
Reacquire = Callable[[], "bool | Reacquisition"]

#: ``checkpoint(time, knob_values, worst_isolation_db)``: persist the last locked point.
Checkpoint = Callable[[float, dict[str, float], float], None]


class ReadScheduler:
    """When to read next: measurement duty budget and drift-adapted interval.

    The duty rule is cumulative: a read may start only when, with its expected
    duration, the time spent reading since the start stays within
    ``max_duty`` of the elapsed time — so a burst of reads during a recovery
    spends budget saved while the lock was quiet, and the duty never exceeds
    ``max_duty``.

    The desired interval lets a drift of variance rate :math:`q` (1/s) move the
    error by ``target_error``, shortened when the last error was already
    large: :math:`\\tau = e_t^2 / q / (1 + (\\|e\\|/e_t)^2)`.
    """

    def __init__(
        self, max_duty: float, target_error: float, min_interval: float, max_interval: float
    ) -> None:
        if not 0 < max_duty <= 1:
            raise ValueError(f"max_duty={max_duty} must be in (0, 1]")
        self.max_duty = float(max_duty)
        self.target_error = float(target_error)
        self.min_interval = float(min_interval)
        self.max_interval = float(max_interval)

    def desired(self, error_norm: float, drift_rate: float, urgent: bool) -> float:
        """Desired time from this read to the next, s."""
        if urgent:
            return self.min_interval
        q = max(drift_rate, 1e-300)
        tau = self.target_error**2 / q / (1 + (error_norm / self.target_error) ** 2)
        return float(min(max(tau, self.min_interval), self.max_interval))

    def wait(
        self, elapsed: float, read_time: float, expected_read: float, since_read: float,
        desired: float,
    ) -> float:  # fmt: skip
        """Seconds to wait before the next read.

        Parameters
        ----------
        elapsed : float
            Time since the start of the lock, s.
        read_time : float
            Time spent reading so far, s.
        expected_read : float
            Expected duration of the next read, s.
        since_read : float
            Time since the end of the last read, s.
        desired : float
            Desired interval from :meth:`desired`, s.
        """
        budget = (read_time + expected_read) / self.max_duty - expected_read - elapsed
        return float(max(budget, desired - since_read, 0.0))


class LockSupervisor:
    """Runs the lock on a plant.

    Parameters
    ----------
    plant : Plant
        The lab (or a synthetic plant).
    controller : LockController
        The controller; its knob names select the knobs logged and moved.
    signal : ErrorSignal
        Error vector and isolation of a read.
    reacquire : callable, optional
        ``reacquire() -> bool | Reacquisition``, called on loss of lock.
        Without it a loss of lock parks the device.
    settings : SupervisorSettings, optional
        Thresholds and budgets.
    log : LockLog, optional
        Where to record (a new one by default; see :attr:`log`).
    checkpoint : callable, optional
        ``checkpoint(time, knob_values, worst_isolation_db)``, called with a
        read at or above ``lock_db`` at most every ``checkpoint_interval`` s
        of plant time (the first locked read included). A checkpoint that
        raises is logged and does not stop the lock.
    """

    def __init__(
        self,
        plant: Plant,
        controller: LockController,
        signal: ErrorSignal,
        reacquire: Reacquire | None = None,
        settings: SupervisorSettings | None = None,
        log: LockLog | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.plant = plant
        self.checkpoint = checkpoint
        self._last_checkpoint: float | None = None
        self.controller = controller
        self.signal = signal
        self.reacquire = reacquire
        self.settings = st = settings or SupervisorSettings()
        if log is None:
            knobs = plant.knobs()
            units = {n: knobs[n].unit for n in controller.names if n in knobs}
            log = LockLog(signal.reverse_names, controller.names, units)
        self.log = log
        # the error is in absolute S units: a path at ``x`` dB isolation has
        # |S_rev| = |S_fwd| 10**(-x/20), and |S_fwd| includes the measurement
        # chain (about -12 dB on a lab fridge), so the targets scale with it
        fwd = st.reference_forward
        self.scheduler = ReadScheduler(
            st.max_duty, fwd * signal.target_error(st.target_isolation_db), st.min_interval,
            st.max_interval,
        )  # fmt: skip
        self.status = "idle"
        self.locked = False
        self.relocks = 0
        #: Why the lock was last lost, and the controller's view of that read
        #: (for a ``reacquire`` closure choosing which calibration nodes to re-run).
        self.last_loss: tuple[str, Observation] | None = None
        self._history: deque[float] = deque(maxlen=st.growth_reads + 1)
        self._low = 0
        self._unreachable = 0
        self._floor = (
            fwd * signal.target_error(st.lock_db)
            if st.mismatch_floor is None
            else st.mismatch_floor
        )
        self._relocks_in_row = 0
        self._start = 0.0
        self._end: float | None = None
        self._read_time = 0.0
        self._last_read_end: float | None = None
        self._last_duration = 0.0
        self._desired = 0.0

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """Begin a lock at the plant's present knobs (the calibrated operating point)."""
        self._start = self.plant.now()
        knobs = self.plant.knobs()
        self.controller.reset(knobs)
        self.log.start(self._start, {n: knobs[n].value for n in self.controller.names})
        self.status = "running"

    def run(self, duration: float) -> dict[str, Any]:
        """Lock for ``duration`` seconds of plant time; returns :meth:`LockLog.summary`.

        Stops early when parked or on an instability. Calling it again
        continues the same lock (learned Jacobian, log); after a park it does
        nothing.
        """
        self._resume()
        if self.status != "running":
            return self.log.summary()
        self._end = self.plant.now() + float(duration)
        try:
            while self.status == "running" and self.step():
                pass
        except KeyboardInterrupt:
            self._park("interrupted", "Ctrl-C: pumps switched off")
            raise
        finally:
            self._end = None
            self.log.finish(self.plant.now())
        return self.log.summary()

    def _resume(self) -> None:
        if self.status == "idle":
            self.start()
        elif self.status == "done":
            self.status = "running"

    def step(self) -> bool:
        """One cycle: wait, read, decide, correct, log. False once the loop has stopped."""
        self._resume()
        if self.status != "running":
            return False
        try:
            return self._cycle()
        except LimitViolation as exc:
            self._park("parked", f"refused command: {exc}")
            return False
        except Exception as exc:
            self._park("parked", f"{type(exc).__name__}: {exc}")
            raise

    def _cycle(self) -> bool:
        plant, st = self.plant, self.settings
        now = plant.now()
        since = now - self._last_read_end if self._last_read_end is not None else math.inf
        wait = self.scheduler.wait(
            now - self._start, self._read_time, self._last_duration, since, self._desired
        )
        if self._end is not None and now + wait + self._last_duration >= self._end:
            plant.wait(max(self._end - now, 0.0))
            self.status = "done"
            self.log.event(plant.now(), "stop", "duration reached")
            return False
        if wait > 0:
            plant.wait(wait)
        reading = plant.read()
        unstable = self._instability(reading)
        if unstable:  # cut first, then write down what happened
            plant.safe_state()
        self._read_time += reading.duration
        self._last_duration = reading.duration
        self._last_read_end = reading.time
        knobs = plant.knobs()
        iso = self.signal.isolation_db(reading.s)
        self.log.read(
            reading.time, iso, self.signal.forward_db(reading.s),
            {n: knobs[n].value for n in self.controller.names if n in knobs},
            reading.duration, reading.acquisitions,
        )  # fmt: skip
        if unstable:
            self.log.event(plant.now(), "instability", unstable)
            self.status = "instability"
            return False
        e = self.signal.error(reading.s)
        obs = self.controller.observe(e, knobs, reading.time)
        worst = float(np.min(iso))
        self._track(worst, reading.time)
        self._checkpoint(worst, knobs, reading.time)
        reason = self._lost(worst, obs)
        if reason:
            self.last_loss = (reason, obs)
            return self._recover(reason)
        if obs.jacobian == "reset":
            self.log.event(reading.time, "jacobian_reset", "learned Jacobian predicted worse")
        if obs.sudden:
            self.log.event(
                reading.time, "disturbance",
                f"innovation {obs.innovation:.3g} vs expected {obs.expected:.3g}",
            )  # fmt: skip
        self._correct(e, knobs, reading.time)
        self._desired = self.scheduler.desired(
            obs.error_norm, self.controller.drift_rate, urgent=worst < st.lock_db
        )
        return True

    def _correct(self, e: np.ndarray, knobs: dict[str, Any], time: float) -> None:
        cmd = self.controller.propose(e, knobs, time)
        check_command(self.plant.knobs(), cmd.values)
        self.plant.set_knobs(cmd.values)
        note = f"step scaled by {cmd.scale:.3g}" if cmd.scale < 1 else ""
        self.log.correction(self.plant.now(), cmd.values, note)
        if cmd.limited:
            self.log.event(self.plant.now(), "limit", f"clipped at a limit: {list(cmd.limited)}")

    # ------------------------------------------------------------------ decisions
    def _instability(self, reading: Reading) -> str:
        st = self.settings
        values = np.array([complex(v) for v in reading.s.values()])
        if not np.all(np.isfinite(values)):
            return "non-finite S-parameters in the read"
        top = reading.largest()
        limit = st.reference_forward * 10 ** (st.gain_limit_db / 20)
        if top > limit:
            return (
                f"|S| = {20 * math.log10(top):.2f} dB exceeds the gain limit "
                f"{20 * math.log10(limit):.2f} dB (calibrated forward + {st.gain_limit_db} dB)"
            )
        self._history.append(top)
        h = list(self._history)
        factor = 10 ** (st.growth_db / 20)
        if (
            len(h) == st.growth_reads + 1
            and top > st.reference_forward
            and all(b >= a * factor for a, b in zip(h, h[1:], strict=False))
        ):
            return f"|S| grew by >= {st.growth_db} dB on each of {st.growth_reads} reads"
        return ""

    def _track(self, worst: float, time: float) -> None:
        st = self.settings
        if worst >= st.lock_db:
            if not self.locked:
                self.log.event(time, "locked", f"worst isolation {worst:.1f} dB")
            self.locked = True
            self._relocks_in_row = 0
        elif worst < st.lost_db:
            self.locked = False
        self._low = self._low + 1 if worst < st.lost_db else 0

    def _checkpoint(self, worst: float, knobs: dict[str, Any], time: float) -> None:
        st = self.settings
        if self.checkpoint is None or worst < st.lock_db:
            return
        last = self._last_checkpoint
        if last is not None and time - last < st.checkpoint_interval:
            return
        self._last_checkpoint = time
        values = {n: knobs[n].value for n in self.controller.names if n in knobs}
        try:
            self.checkpoint(time, values, worst)
        except Exception as exc:  # noqa: BLE001 - persisting must never stop the lock
            self.log.event(time, "checkpoint_failed", f"{type(exc).__name__}: {exc}")

    def _lost(self, worst: float, obs: Observation) -> str:
        st = self.settings
        if self._low >= st.lost_reads:
            return f"worst isolation below {st.lost_db} dB for {self._low} reads ({worst:.1f} dB)"
        unreachable = (
            obs.out_of_range > self._floor and obs.out_of_range_fraction > st.mismatch_fraction
        )
        self._unreachable = self._unreachable + 1 if unreachable else 0
        if unreachable and (obs.sudden or self._unreachable >= st.mismatch_reads):
            how = "sudden" if obs.sudden else f"for {self._unreachable} reads"
            return (
                f"model mismatch ({how}): {100 * obs.out_of_range_fraction:.0f}% of the error "
                f"({obs.out_of_range:.3g}) is out of the knobs' reach; innovation "
                f"{obs.innovation:.3g}, expected {obs.expected:.3g}"
            )
        return ""

    def _recover(self, reason: str) -> bool:
        now = self.plant.now()
        self.log.event(now, "lost", reason)
        self.locked = False
        if self.reacquire is None:
            self._park("parked", "no re-acquisition configured")
            return False
        if self._relocks_in_row >= self.settings.max_relocks_without_lock:
            self._park("parked", f"{self._relocks_in_row} re-acquisitions without reaching lock")
            return False
        try:
            result = self.reacquire()
        except Exception as exc:  # the calibration failed: park, keep the reason
            result = Reacquisition(False, message=f"{type(exc).__name__}: {exc}")
        if not isinstance(result, Reacquisition):
            result = Reacquisition(bool(result))
        if not result.success:
            self.log.event(self.plant.now(), "reacquire_failed", result.message)
            self._park("parked", "re-acquisition failed")
            return False
        self.relocks += 1
        self._relocks_in_row += 1
        self.log.event(self.plant.now(), "relock", result.message)
        self.controller.reset(self.plant.knobs(), result.jacobian)
        self._low = 0
        self._unreachable = 0
        self._history.clear()
        self._desired = self.settings.min_interval
        self._last_read_end = None
        return True

    def _park(self, event: str, message: str) -> None:
        self.status = "interrupted" if event == "interrupted" else "parked"
        try:
            self.plant.safe_state()
        finally:
            self.log.event(self.plant.now(), event, message)
            if event != "parked":
                self.log.event(self.plant.now(), "parked", message)
