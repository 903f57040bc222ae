r"""Gauss–Newton lock controller with an online (Broyden) Jacobian, integral action and bounds.

The error :math:`e` (see :class:`labnr.lock.plant.ErrorSignal`) depends on the
knobs :math:`k` through the Jacobian :math:`J = \partial e/\partial k`, known
first from the fitted model and then refined from the reads. Each correction
is a damped least-squares (Levenberg–Marquardt) step in scaled knobs
:math:`x_i = k_i / s_i` (:math:`s_i` the knob's ``max_step``):

.. math::

    \delta x = -G\,(J_s^\top J_s + \lambda\,\sigma_{\max}^2 I)^{-1} J_s^\top e,
    \qquad J_s = J\,{\rm diag}(s),

plus a feed-forward of the estimated drift rate (integral action, with a leak,
conditional integration and a clamp as anti-windup). The step is scaled as a
whole so that no knob moves by more than its ``max_step`` (the direction is
kept), then clipped to the limits (periodic knobs wrap), and
:func:`check_command` verifies the result again before anything is written.

Between two reads the controller compares the observed change of the error
with the change the Jacobian predicts from the knob change. The *innovation*
:math:`\nu = e_n - (e_{n-1} + J\Delta k)` drives three things:

- a relaxed good-Broyden rank-1 update :math:`J_s \leftarrow J_s + \beta(\nu\,\Delta
  x^\top)/(\Delta x^\top\Delta x)`, skipped when the step is too small to be
  seen above read noise and drift, and undone (reset to the model) when the
  learned Jacobian predicts worse than the model or becomes ill-conditioned;
- an estimate of the drift (variance rate of the error, 1/s), which sets the
  read interval;
- the *sudden mismatch* flag, when :math:`\|\nu\|` is far above what noise,
  drift and model error explain. Together with the part of the error outside
  the range of :math:`J` (which no knob can reach — e.g. a mode detuned by a
  flux jump) it tells the supervisor that the model no longer describes the
  device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from labnr.lock.plant import ErrorSignal, KnobSpec, element_name
from labnr.model import Network

__all__ = [
    "Command",
    "ControllerSettings",
    "LimitViolation",
    "LockController",
    "Observation",
    "check_command",
    "model_jacobian",
    "network_elements",
]

JacobianSource = np.ndarray | Callable[[Mapping[str, float]], np.ndarray]


class LimitViolation(ValueError):
    """A command (or a present knob value) breaks a knob's limits or step bound."""


# ====================================================================== model Jacobian
def network_elements(
    network: Network,
    offset: float = 0.0,
    chain: Mapping[str, complex] | None = None,
    convention: Literal["vna", "model"] = "vna",
) -> dict[str, complex]:
    r"""Every port-to-port element of a model network at ``offset``, named like a read.

    Parameters
    ----------
    network : Network
        The model; with squeezing the signal block of the doubled basis is used.
    offset : float
        Offset from band centre, Hz.
    chain : Mapping[str, complex], optional
        Complex factor per element (the measurement chain's gain and phase as
        the calibration measured it), so that model and reads share one frame.
    convention : {"vna", "model"}
        ``"vna"`` (default): what an analyser — real or the virtual lab —
        reports, phasors in :math:`e^{+j\omega t}`, i.e. the complex conjugate
        of ``labnr.model``'s :math:`e^{-i\omega t}` S-matrix. ``"model"``: as
        the model computes it. A Jacobian in the wrong convention is mirrored
        (not rotated) and the lock would diverge.
    """
    if convention not in ("vna", "model"):
        raise ValueError(f"convention={convention!r}; use 'vna' (analyser data) or 'model'")
    ports = network.ports  # with squeezing: the first len(ports) rows/columns (signal)
    S = network.scattering(offset, nambu=network.has_squeezing)
    if convention == "vna":
        S = np.conj(S)
    out = {
        element_name(o, i): complex(S[jo, ji])
        for jo, o in enumerate(ports)
        for ji, i in enumerate(ports)
    }
    for name, c in (chain or {}).items():
        if name in out:
            out[name] *= complex(c)
    return out


def model_jacobian(
    network_of: Callable[[Mapping[str, float]], Network],
    knobs: Mapping[str, KnobSpec] | Mapping[str, float],
    signal: ErrorSignal,
    steps: Mapping[str, float] | None = None,
    chain: Mapping[str, complex] | None = None,
    offset: float = 0.0,
    convention: Literal["vna", "model"] = "vna",
) -> np.ndarray:
    """Jacobian :math:`\\partial e/\\partial k` of a model by central finite differences.

    Parameters
    ----------
    network_of : callable
        ``network_of(knob_values) -> Network``: the fitted model as a function
        of the knob values (caller-supplied, e.g. from the calibration state).
    knobs : Mapping[str, KnobSpec] or Mapping[str, float]
        Where to linearise, in the knob order the controller uses.
    signal : ErrorSignal
        Defines the error vector.
    steps : Mapping[str, float], optional
        Difference step per knob. Default ``1e-3 * max_step`` for
        :class:`KnobSpec` values, else ``1e-6 * max(1, |value|)``.
    chain : Mapping[str, complex], optional
        Measurement-chain factor per element (see :func:`network_elements`).
    offset : float
        Offset from band centre, Hz.
    convention : {"vna", "model"}
        Convention of the reads the Jacobian will be used with (see
        :func:`network_elements`); analysers report ``"vna"``.

    Returns
    -------
    numpy.ndarray
        Shape ``(signal.size, len(knobs))``, error units per knob unit.
    """
    values = {n: (k.value if isinstance(k, KnobSpec) else float(k)) for n, k in knobs.items()}
    J = np.zeros((signal.size, len(values)))
    for col, (name, v) in enumerate(values.items()):
        spec = knobs[name]
        if steps is not None and name in steps:
            h = float(steps[name])
        elif isinstance(spec, KnobSpec):
            h = 1e-3 * spec.max_step
        else:
            h = 1e-6 * max(1.0, abs(v))
        up = network_elements(network_of({**values, name: v + h}), offset, chain, convention)
        dn = network_elements(network_of({**values, name: v - h}), offset, chain, convention)
        J[:, col] = (signal.error(up) - signal.error(dn)) / (2 * h)
    return J


# ====================================================================== limits
def check_command(knobs: Mapping[str, KnobSpec], command: Mapping[str, float]) -> None:
    """Raise :class:`LimitViolation` unless every commanded value is allowed.

    Allowed: a known knob, a finite value inside ``[minimum, maximum]``, and a
    change from the present value of at most ``max_step`` (shortest way round
    for a periodic knob). Called right before every write.
    """
    for name, value in command.items():
        if name not in knobs:
            raise LimitViolation(f"knob {name!r} is not one the lock may move ({sorted(knobs)})")
        spec = knobs[name]
        v = float(value)
        if not spec.within_limits(v):
            raise LimitViolation(
                f"knob {name!r}: command {v!r} {spec.unit} is outside its limits "
                f"[{spec.minimum}, {spec.maximum}] {spec.unit}"
            )
        step = abs(spec.distance(spec.value, v))
        if step > spec.max_step * (1 + 1e-9):
            raise LimitViolation(
                f"knob {name!r}: step {step:.6g} {spec.unit} from {spec.value:.6g} exceeds its "
                f"max_step {spec.max_step:.6g} {spec.unit}"
            )


# ====================================================================== settings, results
@dataclass(frozen=True)
class ControllerSettings:
    """Tuning of :class:`LockController` (error units are those of :class:`ErrorSignal`).

    Attributes
    ----------
    gain : float
        Fraction of the Gauss–Newton step taken (1 = full step).
    damping : float
        Levenberg–Marquardt :math:`\\lambda`, relative to the largest squared
        singular value of the scaled Jacobian.
    integral_gain : float
        Gain of the drift-rate (integral) estimate; 0 disables integral action.
    integral_leak : float
        Fraction of the drift-rate estimate forgotten per correction.
    integral_limit : float
        Largest feed-forward per correction, as a fraction of ``max_step``.
    integral_error : float
        No integration while the error norm is above this (recovery).
    integral_min_interval : float
        No integration over corrections closer than this, s (a burst of reads
        says nothing about the drift rate).
    broyden : bool
        Update the Jacobian online.
    broyden_snr : float
        Update only when the predicted change is this many times above noise and drift.
    broyden_relaxation : float
        Fraction of the secant correction applied per update (1 = classic
        Broyden; smaller averages read noise over several steps).
    broyden_max_error : float
        Update only while the error norm before and after the step is below
        this: the error is markedly nonlinear in the loop phase (a secant over
        a 20 degree step differs from the tangent at the operating point by
        ~35 %), and the Jacobian the lock needs is the one at the operating point.
    reset_ratio : float
        Reset to the model Jacobian when the learned one predicts this many
        times worse (rms, averaged) than the model.
    max_condition : float
        Reset when the scaled Jacobian's condition number exceeds this.
    read_noise : float
        rms noise of one complex error component, S units (e.g. 1e-3 at −60 dB).
    drift_guess : float
        Initial drift estimate, variance rate of the error norm, 1/s.
    model_error : float
        Relative uncertainty of the Jacobian's predictions.
    jump_factor : float
        Innovation this many sigma above the expected one is *sudden*.
    """

    gain: float = 1.0
    damping: float = 1e-3
    integral_gain: float = 0.1
    integral_leak: float = 0.05
    integral_limit: float = 0.1
    integral_min_interval: float = 1.0
    integral_error: float = 0.03
    broyden: bool = True
    broyden_snr: float = 6.0
    broyden_relaxation: float = 0.5
    broyden_max_error: float = 0.05
    reset_ratio: float = 2.0
    max_condition: float = 1e6
    read_noise: float = 1e-3
    drift_guess: float = 1e-6
    model_error: float = 0.5
    jump_factor: float = 8.0


@dataclass(frozen=True)
class Observation:
    """What one read told the controller.

    Attributes
    ----------
    error_norm : float
        :math:`\\|e\\|`.
    innovation : float
        :math:`\\|\\nu\\|` (NaN on the first read after a reset).
    expected : float
        Expected :math:`\\|\\nu\\|` from noise, drift and model error.
    sudden : bool
        Innovation beyond ``jump_factor`` times the expected one.
    out_of_range : float
        Norm of the part of :math:`e` no knob can reach (outside range(J)).
    out_of_range_fraction : float
        ``out_of_range / error_norm``.
    jacobian : str
        ``"updated"``, ``"skipped"``, ``"reset"`` or ``""`` (first read).
    drift_rate : float
        Present drift estimate, variance rate of the error, 1/s.
    predicted : float
        :math:`\\|J\\Delta k\\|`, the change the last correction should have made
        (NaN on the first read after a reset).
    """

    error_norm: float
    innovation: float
    expected: float
    sudden: bool
    out_of_range: float
    out_of_range_fraction: float
    jacobian: str
    drift_rate: float
    predicted: float = float("nan")


@dataclass(frozen=True)
class Command:
    """A proposed correction.

    Attributes
    ----------
    values : dict
        New knob values to write (only the controller's knobs).
    steps : dict
        Change of each knob (shortest way round for periodic knobs).
    scale : float
        Factor applied to the whole step to respect the step bounds (1 = none).
    limited : tuple of str
        Knobs clipped at a limit.
    """

    values: dict[str, float]
    steps: dict[str, float]
    scale: float = 1.0
    limited: tuple[str, ...] = ()

    @property
    def saturated(self) -> bool:
        """True if a bound or a limit changed the step."""
        return self.scale < 1.0 or bool(self.limited)


@dataclass
class _Memory:
    """State carried between reads."""

    knobs: np.ndarray | None = None
    error: np.ndarray | None = None
    time: float | None = None
    last_correction: float | None = None
    rate: np.ndarray | None = None  # drift-rate estimate, scaled knob units / s
    saturated: bool = False
    fit_learned: float = 0.0  # averaged squared prediction errors (informative steps)
    fit_model: float = 0.0
    informative: int = 0
    drift: float = 0.0


# ====================================================================== controller
class LockController:
    """Moves the balance knobs to null the error vector.

    Parameters
    ----------
    knob_names : sequence of str
        The knobs to move, in the Jacobian's column order.
    jacobian : numpy.ndarray or callable
        The model Jacobian, shape ``(m, n)``, or ``model_jacobian(knob_values)
        -> J`` evaluated at every reset (e.g. a closure over
        :func:`model_jacobian` and the fitted model).
    settings : ControllerSettings, optional
        Tuning.
    """

    def __init__(
        self,
        knob_names: Sequence[str],
        jacobian: JacobianSource,
        settings: ControllerSettings | None = None,
    ) -> None:
        self.names = tuple(knob_names)
        if not self.names or len(set(self.names)) != len(self.names):
            raise ValueError(f"knob_names must be distinct and non-empty; got {self.names}")
        self.settings = settings or ControllerSettings()
        self._source = jacobian
        self.model_J: np.ndarray | None = None
        self.J: np.ndarray | None = None
        if not callable(jacobian):
            self.model_J = self._checked(np.asarray(jacobian, dtype=float))
            self.J = self.model_J.copy()
        self._mem = _Memory(drift=self.settings.drift_guess)

    # ------------------------------------------------------------------ helpers
    def _checked(self, J: np.ndarray) -> np.ndarray:
        if J.ndim != 2 or J.shape[1] != len(self.names) or not np.all(np.isfinite(J)):
            raise ValueError(
                f"the Jacobian must be a finite (m, {len(self.names)}) array for knobs "
                f"{self.names}; got shape {J.shape}"
            )
        return J.copy()

    def _specs(self, knobs: Mapping[str, KnobSpec]) -> list[KnobSpec]:
        missing = [n for n in self.names if n not in knobs]
        if missing:
            raise LimitViolation(
                f"the plant does not offer knobs {missing}; it has {sorted(knobs)}"
            )
        return [knobs[n] for n in self.names]

    @staticmethod
    def _scale(specs: Sequence[KnobSpec]) -> np.ndarray:
        return np.array([s.max_step for s in specs])

    def _ensure_model(self, knobs: Mapping[str, KnobSpec]) -> None:
        if self.model_J is None:
            values = {n: knobs[n].value for n in self.names}
            J = self._source(values)  # type: ignore[operator]
            self.model_J = self._checked(np.asarray(J, dtype=float))
            self.J = self.model_J.copy()

    def reset(self, knobs: Mapping[str, KnobSpec], jacobian: np.ndarray | None = None) -> None:
        """Forget the learned Jacobian and the integral (after a re-acquisition).

        Parameters
        ----------
        knobs : Mapping[str, KnobSpec]
            Present knobs (a callable model Jacobian is evaluated here).
        jacobian : numpy.ndarray, optional
            A new model Jacobian (e.g. from a refitted model).
        """
        if jacobian is not None:
            self.model_J = self._checked(np.asarray(jacobian, dtype=float))
        elif callable(self._source):
            self.model_J = None
        self._ensure_model(knobs)
        assert self.model_J is not None
        self.J = self.model_J.copy()
        self._mem = _Memory(drift=self._mem.drift)

    @property
    def drift_rate(self) -> float:
        """Estimated variance rate of the error from drift, 1/s."""
        return self._mem.drift

    # ------------------------------------------------------------------ observe
    def observe(self, error: np.ndarray, knobs: Mapping[str, KnobSpec], time: float) -> Observation:
        """Take in a read: innovation, Broyden update, drift estimate, range check.

        Parameters
        ----------
        error : numpy.ndarray
            The error vector of this read.
        knobs : Mapping[str, KnobSpec]
            Knob values at the time of the read (as the plant reports them).
        time : float
            Time of the read, s.
        """
        self._ensure_model(knobs)
        assert self.J is not None and self.model_J is not None
        e = np.asarray(error, dtype=float)
        if e.shape != (self.J.shape[0],):
            raise ValueError(
                f"error vector has shape {e.shape}; the Jacobian expects ({self.J.shape[0]},)"
            )
        specs = self._specs(knobs)
        k = np.array([s.value for s in specs])
        mem, st = self._mem, self.settings
        status, innov, expected, sudden = "", float("nan"), float("nan"), False
        change = float("nan")
        if mem.knobs is not None and mem.error is not None and mem.time is not None:
            dk = np.array([s.distance(a, b) for s, a, b in zip(specs, mem.knobs, k, strict=True)])
            dt = max(time - mem.time, 0.0)
            pred = self.J @ dk
            change = float(np.linalg.norm(pred))
            nu = e - mem.error - pred
            innov = float(np.linalg.norm(nu))
            noise = e.size / 2 * st.read_noise**2 * 2
            var = noise + mem.drift * dt + (st.model_error * np.linalg.norm(pred)) ** 2
            expected = math.sqrt(var)
            sudden = innov > st.jump_factor * expected
            status = "skipped"
            if not sudden:
                self._update_drift(innov**2 - noise, dt)
                small = max(np.linalg.norm(e), np.linalg.norm(mem.error)) < st.broyden_max_error
                if st.broyden and small:
                    status = self._broyden(specs, dk, e - mem.error, noise + mem.drift * dt)
        out, frac = self._out_of_range(e)
        mem.knobs, mem.error, mem.time = k, e, time
        return Observation(
            float(np.linalg.norm(e)), innov, expected, sudden, out, frac, status, mem.drift, change
        )

    def _update_drift(self, excess: float, dt: float) -> None:
        """EMA of the innovation's excess over read noise per second (conservative: it
        also holds the correction's model error)."""
        if dt < 1.0:
            return
        q = max(excess, 0.0) / dt
        self._mem.drift = 0.9 * self._mem.drift + 0.1 * q

    def _broyden(
        self, specs: Sequence[KnobSpec], dk: np.ndarray, de: np.ndarray, floor: float
    ) -> str:
        st, mem = self.settings, self._mem
        assert self.J is not None and self.model_J is not None
        s = self._scale(specs)
        dx = dk / s
        pred = self.J @ dk
        if float(pred @ pred) < st.broyden_snr**2 * floor or dx @ dx < 1e-12:
            return "skipped"
        r_learned = float(np.sum((de - pred) ** 2))
        r_model = float(np.sum((de - self.model_J @ dk) ** 2))
        mem.fit_learned = 0.7 * mem.fit_learned + 0.3 * r_learned
        mem.fit_model = 0.7 * mem.fit_model + 0.3 * r_model
        mem.informative += 1
        Js = self.J * s
        Js = Js + st.broyden_relaxation * np.outer(de - Js @ dx, dx) / float(dx @ dx)
        cond = np.linalg.cond(Js)
        worse = mem.informative >= 3 and mem.fit_learned > st.reset_ratio**2 * mem.fit_model
        if not np.all(np.isfinite(Js)) or cond > st.max_condition or worse:
            self.J = self.model_J.copy()
            mem.fit_learned, mem.fit_model, mem.informative = 0.0, 0.0, 0
            return "reset"
        self.J = Js / s
        return "updated"

    def _out_of_range(self, e: np.ndarray) -> tuple[float, float]:
        assert self.J is not None
        U, sv, _ = np.linalg.svd(self.J, full_matrices=False)
        U = U[:, sv > 1e-9 * max(sv.max(initial=0.0), 1e-300)]
        rest = e - U @ (U.T @ e)
        out = float(np.linalg.norm(rest))
        norm = float(np.linalg.norm(e))
        return out, (out / norm if norm > 0 else 0.0)

    # ------------------------------------------------------------------ propose
    def propose(self, error: np.ndarray, knobs: Mapping[str, KnobSpec], time: float) -> Command:
        """The next correction: damped Gauss–Newton step plus integral, bounded and clipped.

        Raises
        ------
        LimitViolation
            If a non-periodic knob is already outside its limits (the lock
            then refuses to command anything).
        """
        self._ensure_model(knobs)
        assert self.J is not None
        specs = self._specs(knobs)
        for sp in specs:
            if not sp.periodic and not sp.within_limits(sp.value):
                raise LimitViolation(
                    f"knob {sp.name!r} is at {sp.value} {sp.unit}, outside its limits "
                    f"[{sp.minimum}, {sp.maximum}]; the lock will not command it"
                )
        e = np.asarray(error, dtype=float)
        if e.shape != (self.J.shape[0],) or not np.all(np.isfinite(e)):
            raise ValueError(f"the error vector must be finite with shape ({self.J.shape[0]},)")
        s = self._scale(specs)
        gn = self._gauss_newton(self.J * s, e)
        dx = gn + self._integral(gn, e, time)
        big = float(np.max(np.abs(dx))) if dx.size else 0.0
        scale = 1.0 if big <= 1.0 else 1.0 / big
        dx = dx * scale
        values, steps, limited = {}, {}, []
        for sp, d in zip(specs, dx * s, strict=True):
            target = sp.value + float(d)
            if sp.periodic:
                target = sp.wrap(target)
            elif not sp.within_limits(target):
                target = min(max(target, sp.minimum), sp.maximum)
                limited.append(sp.name)
            values[sp.name] = target
            steps[sp.name] = sp.distance(sp.value, target)
        cmd = Command(values, steps, scale, tuple(limited))
        self._mem.saturated = cmd.saturated
        self._mem.last_correction = time
        return cmd

    def _gauss_newton(self, Js: np.ndarray, e: np.ndarray) -> np.ndarray:
        st = self.settings
        A = Js.T @ Js
        lam = max(st.damping * float(np.linalg.norm(Js, 2)) ** 2, 1e-300)
        return -st.gain * np.linalg.solve(A + lam * np.eye(A.shape[0]), Js.T @ e)

    def _integral(self, gn: np.ndarray, e: np.ndarray, time: float) -> np.ndarray:
        """Drift-rate feed-forward (scaled units) with conditional integration.

        The Gauss–Newton step ``gn`` of this read, divided by the time since
        the last correction, is the residual drift rate; it is integrated
        (with a leak) unless the last command saturated, the corrections came
        in a burst, or the error is large (a disturbance, not drift), and fed
        forward over the same interval, clamped to ``integral_limit`` of the
        step bound.
        """
        st, mem = self.settings, self._mem
        if mem.rate is None:
            mem.rate = np.zeros(len(self.names))
        last = mem.last_correction
        if st.integral_gain <= 0 or last is None or time - last <= 0:
            return np.zeros(len(self.names))
        dt = time - last
        frozen = (
            mem.saturated or dt < st.integral_min_interval
            or float(np.linalg.norm(e)) > st.integral_error
        )  # fmt: skip
        if not frozen:
            mem.rate = (1 - st.integral_leak) * mem.rate + st.integral_gain * gn / dt
        return np.clip(mem.rate * dt, -st.integral_limit, st.integral_limit)
