r"""A single resonance in reflection or notch (hanger) transmission, with its environment.

Physics (labnr's :math:`e^{-i\omega t}` convention, the one of
:mod:`labnr.model`; frequencies and linewidths in Hz, κ's are FWHM):

.. math::

    S(f) = a\,e^{i\alpha}\,e^{-2\pi i (f - f_0)\tau}
           \left[1 - \frac{c\,\kappa_{\rm ext}\,(1 + i\tan\varphi)}
                          {\kappa - 2i(f - f_0)}\right],
    \qquad \kappa = \kappa_{\rm ext} + \kappa_{\rm int},

with :math:`c = 2` in reflection (:func:`reflection`) and :math:`c = 1` for a
resonator side-coupled to a through line (:func:`notch`). At
:math:`\varphi = 0, a = 1, \alpha = 0` the reflection is exactly
``Network([Mode(name, kappa_ext, kappa_int, detuning=f0)]).scattering(f)``.

- :math:`a\,e^{i\alpha}` is the complex background *at* :math:`f_0` and
  :math:`\tau` the cable delay (the :math:`e^{-2\pi i f\tau}` of a line, as the
  virtual lab and a VNA apply it), referenced to :math:`f_0` so that α and τ are
  not strongly correlated.
- :math:`\varphi` is the impedance-mismatch (Fano) angle. The resonant circle is
  rotated by φ about the off-resonant point and its diameter grows by
  :math:`1/\cos\varphi`: :math:`c\kappa_{\rm ext}e^{i\varphi}/\cos\varphi` is
  the complex coupling of Probst et al. (RSI 86, 024706 (2015)) and Khalil et
  al. (JAP 111, 054510 (2012)), so that :math:`\kappa_{\rm ext}` is the real
  part of the coupling rate and :math:`\kappa_{\rm int} = \kappa -
  \kappa_{\rm ext}` is the internal loss ("diameter correction method").

Data taken in the engineering convention :math:`e^{+i\omega t}` with
:math:`1/(1 + 2iQ\,\delta f/f_0)` resonances (a real VNA's raw S11) turn
clockwise round the circle and cannot be fitted; :func:`fit_resonance` then
fails and says so. Fit ``np.conj(S)`` instead (τ then comes out negative).

Failure policy, κ_int bounds and noise: see :func:`fit_resonance` and
:mod:`labnr.fit.result`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import lmfit
import numpy as np

from labnr.fit.circle import CircleGuess, guess_circle
from labnr.fit.result import FitError, FitResult, Trace, estimate_noise

__all__ = [
    "NotchModel",
    "ReflectionModel",
    "ResonanceModel",
    "fit_resonance",
    "notch",
    "reflection",
]

ResonanceKind = Literal["reflection", "notch"]
PHI_MAX = 1.4  #: bound on the mismatch angle |φ|, rad (80°): beyond it 1/cos φ explodes
SIGNIFICANCE = 5.0  #: κ_ext / σ(κ_ext) below this: "no significant resonance" (a failure)
DEPTH_SIGMAS = 5.0  #: circle diameter a·c·κ_ext/(κ cos φ) below this × σ: a failure
KAPPA_INT_SIGMAS = 2.0  #: κ_int below −this × σ(κ_int): non-physical (a warning)
MAX_NFEV_PER_PARAM = 100  #: evaluation budget per free parameter before "did not converge"


def _resonance(
    frequency: np.ndarray,
    f0: float,
    kappa_ext: float,
    kappa_int: float,
    phi: float,
    a: float,
    alpha: float,
    tau: float,
    c: float,
) -> np.ndarray:
    df = np.asarray(frequency, dtype=float) - f0
    kappa = kappa_ext + kappa_int
    background = a * np.exp(1j * (alpha - 2 * np.pi * df * tau))
    return background * (1 - c * kappa_ext * (1 + 1j * np.tan(phi)) / (kappa - 2j * df))


def reflection(
    frequency: np.ndarray,
    f0: float = 0.0,
    kappa_ext: float = 1e6,
    kappa_int: float = 0.0,
    phi: float = 0.0,
    a: float = 1.0,
    alpha: float = 0.0,
    tau: float = 0.0,
) -> np.ndarray:
    r"""Reflection :math:`S_{11}` of a one-port resonator with its environment.

    .. math::

        S_{11}(f) = a\,e^{i\alpha}\,e^{-2\pi i (f - f_0)\tau}
            \left[1 - \frac{2\kappa_{\rm ext}(1 + i\tan\varphi)}
                           {\kappa_{\rm ext} + \kappa_{\rm int} - 2i(f - f_0)}\right]

    Parameters
    ----------
    frequency : ndarray
        Probe frequencies, Hz.
    f0 : float
        Resonance frequency, Hz.
    kappa_ext, kappa_int : float
        External (port) and internal loss rates, FWHM in Hz.
    phi : float
        Impedance-mismatch (Fano) angle, rad.
    a, alpha : float
        Background amplitude and phase (rad) at ``f0``.
    tau : float
        Cable delay, s.

    Returns
    -------
    ndarray of complex
        Same shape as ``frequency``.
    """
    return _resonance(frequency, f0, kappa_ext, kappa_int, phi, a, alpha, tau, 2.0)


def notch(
    frequency: np.ndarray,
    f0: float = 0.0,
    kappa_ext: float = 1e6,
    kappa_int: float = 0.0,
    phi: float = 0.0,
    a: float = 1.0,
    alpha: float = 0.0,
    tau: float = 0.0,
) -> np.ndarray:
    r"""Transmission :math:`S_{21}` past a resonator side-coupled to a line (notch/hanger).

    .. math::

        S_{21}(f) = a\,e^{i\alpha}\,e^{-2\pi i (f - f_0)\tau}
            \left[1 - \frac{\kappa_{\rm ext}(1 + i\tan\varphi)}
                           {\kappa_{\rm ext} + \kappa_{\rm int} - 2i(f - f_0)}\right]

    ``kappa_ext`` is the total decay rate into the line (both directions).
    Parameters as in :func:`reflection`.
    """
    return _resonance(frequency, f0, kappa_ext, kappa_int, phi, a, alpha, tau, 1.0)


class ResonanceModel(lmfit.Model):
    """lmfit Model of one resonance (base of :class:`ReflectionModel`, :class:`NotchModel`).

    Parameters (with ``prefix``): ``f0`` (Hz), ``kappa_ext``, ``kappa_int``
    (FWHM, Hz), ``phi`` (rad, |φ| ≤ :data:`PHI_MAX`), ``a`` (≥ 0), ``alpha``
    (rad, ±2π), ``tau`` (s, ±2 µs), and the derived ``kappa = kappa_ext +
    kappa_int`` (its error is propagated by lmfit). ``kappa_ext ≥ 0``;
    ``kappa_int`` may go negative (by :meth:`guess`, down to −κ) so that a
    non-physical internal loss shows up with its error bar instead of sticking
    to a bound, which would also distort its uncertainty.

    Parameters
    ----------
    func : callable
        :func:`reflection` or :func:`notch`.
    coupling : float
        The factor c of the module docstring (2 or 1), used by :meth:`guess`.
    prefix : str
        Parameter-name prefix.
    **kwargs
        Passed to :class:`lmfit.Model` (not ``independent_vars``).
    """

    kind: ResonanceKind = "reflection"

    def __init__(
        self,
        func: Callable[..., np.ndarray],
        coupling: float,
        prefix: str = "",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("nan_policy", "raise")
        super().__init__(func, independent_vars=["frequency"], prefix=prefix, **kwargs)
        self.coupling = float(coupling)
        self.set_param_hint("f0", min=0.0)
        self.set_param_hint("kappa_ext", min=0.0)
        self.set_param_hint("kappa_int", min=-np.inf)
        self.set_param_hint("phi", value=0.0, min=-PHI_MAX, max=PHI_MAX)
        self.set_param_hint("a", min=0.0)
        self.set_param_hint("alpha", value=0.0, min=-2 * np.pi, max=2 * np.pi)
        self.set_param_hint("tau", value=0.0, min=-2e-6, max=2e-6)
        self.set_param_hint("kappa", expr=f"{prefix}kappa_ext + {prefix}kappa_int")

    def guess(
        self, data: np.ndarray, frequency: np.ndarray | None = None, **kwargs: Any
    ) -> lmfit.Parameters:
        """Initial parameters from the circle analysis of :mod:`labnr.fit.circle`.

        Bounds are set from the data: ``f0`` within the band, ``kappa_ext`` and
        ``kappa_int`` within [0, 100 × span] and [−κ, 100 × span], ``tau``
        within ±1/span of its guess. If the circle analysis fails (no
        resonance, too few points) a crude guess is used (largest deviation
        from the median for f0, span/10 for κ).

        Parameters
        ----------
        data : ndarray of complex
            The trace.
        frequency : ndarray
            Increasing frequencies, Hz.
        **kwargs
            Parameter values that override the guess (lmfit convention).
        """
        if frequency is None:
            raise ValueError("guess() needs the frequency array: guess(data, frequency=f)")
        f, z = _validate(frequency, data)
        try:
            g = guess_circle(f, z)
            if not np.all(np.isfinite([g.f0, g.kappa, g.diameter, g.phi, abs(g.background)])):
                raise ValueError("non-finite circle guess")
        except (ValueError, np.linalg.LinAlgError):
            g = _crude_guess(f, z)
        params = self._params_from(g, f)
        return lmfit.models.update_param_vals(params, self.prefix, **kwargs)

    def _params_from(self, g: CircleGuess, f: np.ndarray) -> lmfit.Parameters:
        span, df = float(np.ptp(f)), float(np.median(np.diff(f)))
        kappa = float(np.clip(g.kappa, df, 10 * span))
        phi = float(np.clip(g.phi, -0.95 * PHI_MAX, 0.95 * PHI_MAX))
        k_ext = float(np.clip(g.diameter * kappa * math.cos(phi) / self.coupling, 0.0, kappa))
        bg = g.background if abs(g.background) > 0 else 1.0 + 0j
        return self.make_params(
            f0={"value": float(np.clip(g.f0, f[0], f[-1])), "min": f[0], "max": f[-1]},
            kappa_ext={"value": k_ext, "min": 0.0, "max": 100 * span},
            kappa_int={"value": kappa - k_ext, "min": -kappa, "max": 100 * span},
            phi={"value": phi, "min": -PHI_MAX, "max": PHI_MAX},
            a={"value": abs(bg), "min": 0.0, "max": 100 * abs(bg)},
            alpha={"value": float(np.angle(bg)), "min": -2 * np.pi, "max": 2 * np.pi},
            tau={"value": g.tau, "min": g.tau - 1 / span, "max": g.tau + 1 / span},
        )


class ReflectionModel(ResonanceModel):
    """One-port reflection :math:`S_{11}` (:func:`reflection`) as an lmfit Model."""

    kind: ResonanceKind = "reflection"

    def __init__(self, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(reflection, 2.0, prefix=prefix, **kwargs)


class NotchModel(ResonanceModel):
    """Notch/hanger transmission :math:`S_{21}` (:func:`notch`) as an lmfit Model."""

    kind: ResonanceKind = "notch"

    def __init__(self, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(notch, 1.0, prefix=prefix, **kwargs)


_MODELS: dict[str, type[ResonanceModel]] = {"reflection": ReflectionModel, "notch": NotchModel}


def _validate(frequency: Any, data: Any) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(frequency, dtype=float)
    z = np.asarray(data, dtype=complex)
    if f.ndim != 1 or z.shape != f.shape:
        raise ValueError(
            f"frequency and S must be 1-D of equal length; got shapes {f.shape} and {z.shape}"
        )
    if f.size < 10:
        raise ValueError(f"a resonance fit needs at least 10 points; got {f.size}")
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(z))):
        raise ValueError("frequency and S must be finite (no NaN or inf)")
    if not np.all(np.diff(f) > 0):
        raise ValueError("frequency must be strictly increasing")
    return f, z


def _crude_guess(f: np.ndarray, z: np.ndarray) -> CircleGuess:
    """Fallback when the circle analysis fails: largest deviation from the median."""
    med = complex(np.median(z.real), np.median(z.imag))
    i0 = int(np.argmax(np.abs(z - med)))
    return CircleGuess(
        tau=0.0, f0=float(f[i0]), kappa=float(np.ptp(f)) / 10, diameter=0.5, phi=0.0,
        background=med if abs(med) > 0 else 1.0 + 0j, rms=math.nan,
    )  # fmt: skip


def _apply_user_guess(params: lmfit.Parameters, guess: Mapping[str, float]) -> None:
    """Override guessed values with the user's (``kappa`` rescales κ_ext and κ_int)."""
    unknown = set(guess) - set(params)
    if unknown:
        raise ValueError(f"unknown parameter(s) in guess: {sorted(unknown)}; known: {list(params)}")
    if "kappa" in guess and not {"kappa_ext", "kappa_int"} & set(guess):
        total = params["kappa_ext"].value + params["kappa_int"].value
        ratio = params["kappa_ext"].value / total if total > 0 else 0.5
        guess = {**guess, "kappa_ext": ratio * guess["kappa"]}
        guess["kappa_int"] = guess["kappa"] - guess["kappa_ext"]
    for name, value in guess.items():
        if name == "kappa":
            continue
        p = params[name]
        value = float(value)
        p.set(value=value, min=min(p.min, value), max=max(p.max, value))
    kappa = params["kappa_ext"].value + params["kappa_int"].value
    params["kappa_int"].set(min=min(params["kappa_int"].min, -abs(kappa)))


def _turns_clockwise(f: np.ndarray, z: np.ndarray, noise: float) -> bool:
    """True if the circle analysis finds a clear resonance turning the other way round."""
    try:
        g = guess_circle(f, z)
    except (ValueError, np.linalg.LinAlgError):
        return False
    return g.clockwise and g.diameter * abs(g.background) > DEPTH_SIGMAS * noise


def _checks(
    model: ResonanceModel,
    result: lmfit.model.ModelResult,
    f: np.ndarray,
    noise: float,
    sigma_given: bool,
) -> tuple[list[str], list[str]]:
    """Resonance-specific failures and warnings of a converged fit.

    The significance tests use errors and noise inflated by sqrt(reduced χ²)
    when it exceeds 1, so that a wrong (too small) σ cannot make noise look
    like a resonance.
    """
    p = result.params
    inflate = math.sqrt(max(result.redchi, 1.0))
    val = {n: p[n].value for n in p}
    err = {n: p[n].stderr if p[n].stderr is not None else math.nan for n in p}
    sig_err = {n: e * (inflate if sigma_given else 1.0) for n, e in err.items()}
    noise = noise * inflate
    failures, warns = [], []
    span, df = float(np.ptp(f)), float(np.median(np.diff(f)))
    kappa = val["kappa_ext"] + val["kappa_int"]
    if not val["kappa_ext"] > SIGNIFICANCE * sig_err["kappa_ext"]:
        failures.append(
            f"no significant resonance in the band: kappa_ext = {val['kappa_ext']:.4g} ± "
            f"{sig_err['kappa_ext']:.2g} Hz is below {SIGNIFICANCE:g} sigma"
        )
    depth = val["a"] * model.coupling * val["kappa_ext"] / (abs(kappa) * math.cos(val["phi"]))
    if not depth > DEPTH_SIGMAS * noise:
        failures.append(
            f"the resonance circle (diameter {depth:.3g}) is not above the noise "
            f"(sigma {noise:.3g}; needs {DEPTH_SIGMAS:g} sigma)"
        )
    if not f[0] + 0.5 * df < val["f0"] < f[-1] - 0.5 * df:
        failures.append(
            f"f0 = {val['f0']:.9g} Hz is at the edge of the band [{f[0]:.9g}, {f[-1]:.9g}] Hz"
        )
    if not kappa > 1.5 * df:
        failures.append(
            f"linewidth kappa = {kappa:.4g} Hz is not resolved by the point spacing {df:.4g} Hz"
        )
    elif kappa > 3 * span:
        failures.append(
            f"linewidth kappa = {kappa:.4g} Hz exceeds 3 x the span {span:.4g} Hz: "
            "the resonance cannot be told from the background"
        )
    if val["kappa_int"] < -KAPPA_INT_SIGMAS * err["kappa_int"]:
        warns.append(
            f"non-physical internal loss: kappa_int = {val['kappa_int']:.4g} ± "
            f"{err['kappa_int']:.2g} Hz is below zero by more than {KAPPA_INT_SIGMAS:g} sigma "
            "(miscalibrated background, wrong sigma, or a wrong model kind?)"
        )
    for name in ("phi", "tau", "a", "kappa_ext", "kappa_int"):
        par = p[name]
        if par.vary and (np.isclose(par.value, par.min) or np.isclose(par.value, par.max)):
            warns.append(f"{name} = {par.value:.4g} is at its bound [{par.min:.4g}, {par.max:.4g}]")
    if sigma_given and result.redchi > 2.0:
        warns.append(
            f"reduced chi-square {result.redchi:.3g} > 2: the model does not describe the data "
            "or sigma is underestimated"
        )
    return failures, warns


def fit_resonance(
    frequency: np.ndarray,
    S: np.ndarray,
    kind: ResonanceKind = "reflection",
    sigma: float | np.ndarray | None = None,
    guess: Mapping[str, float] | lmfit.Parameters | None = None,
    run_id: int | str | None = None,
    fixed: Mapping[str, float] | None = None,
    raise_on_failure: bool = True,
) -> FitResult:
    r"""Fit one resonance (reflection or notch) to a complex trace.

    Parameters
    ----------
    frequency : ndarray
        Strictly increasing frequencies, Hz (absolute or offsets — f0 is
        reported on the same axis), at least 10 points.
    S : ndarray of complex
        The measured trace.
    kind : {"reflection", "notch"}
        :func:`reflection` or :func:`notch`.
    sigma : float or ndarray, optional
        Per-quadrature noise σ (scalar or per point). If given, the errors are
        the unscaled covariance (trusting σ; reduced χ² tests it). If None, σ
        is estimated by :func:`~labnr.fit.result.estimate_noise` and the
        covariance is scaled by the reduced χ² (lmfit's ``scale_covar``).
    guess : mapping or lmfit.Parameters, optional
        Starting values a user would type (``f0``, ``kappa`` or
        ``kappa_ext``/``kappa_int``, ...); they override the automatic guess,
        which still provides the rest (background, delay). ``Parameters`` are
        used as they are.
    run_id : int or str, optional
        Dataset the trace came from, kept in the result.
    fixed : mapping, optional
        Parameters held fixed at the given values (e.g. ``{"phi": 0.0}``).
    raise_on_failure : bool
        If True (default) a failed fit raises :class:`FitError` whose
        ``result`` is the flagged :class:`FitResult`; if False that result is
        returned with ``success = False`` and ``message``.

    Returns
    -------
    FitResult
        ``values``/``errors`` for f0, kappa_ext, kappa_int, kappa, phi, a,
        alpha, tau. Failures: no convergence, no error bars, no significant
        resonance (κ_ext below 5σ), f0 at the band edge, κ unresolved or ≫
        span. Warnings: κ_int < −2σ(κ_int), a parameter at a bound,
        reduced χ² > 2 with σ given.
    """
    if kind not in _MODELS:
        raise ValueError(f"kind must be one of {sorted(_MODELS)}; got {kind!r}")
    f, z = _validate(frequency, S)
    sigma_given = sigma is not None
    s = np.asarray(sigma if sigma_given else estimate_noise(z), dtype=float)
    if not (np.all(np.isfinite(s)) and np.all(s > 0)) or s.ndim > 1 or s.size not in (1, f.size):
        raise ValueError(f"sigma must be > 0 and a scalar or one value per point; got {sigma!r}")
    model = _MODELS[kind]()
    if isinstance(guess, lmfit.Parameters):
        params = guess.copy()
    else:
        params = model.guess(z, frequency=f)
        if guess is not None:
            _apply_user_guess(params, guess)
    for name, value in (fixed or {}).items():
        if name not in params:
            raise ValueError(f"unknown parameter {name!r} in fixed; known: {list(params)}")
        params[name].set(value=float(value), vary=False)
    weights = np.broadcast_to(1.0 / s, f.shape)
    nvarys = sum(p.vary and not p.expr for p in params.values())
    raw = model.fit(
        z,
        params,
        frequency=f,
        weights=weights,
        scale_covar=not sigma_given,
        max_nfev=MAX_NFEV_PER_PARAM * (nvarys + 1),  # a good fit needs < 100; noise would wander
    )
    noise = float(np.mean(s))
    failures, warns = _checks(model, raw, f, noise, sigma_given) if raw.errorbars else ([], [])
    if (failures or not raw.errorbars or not raw.success) and _turns_clockwise(f, z, noise):
        failures.append(
            "the resonance circle turns clockwise with frequency: data in the engineering "
            "e^{+iwt} convention? fit np.conj(S) instead (tau then comes out negative)"
        )
    result = FitResult(
        raw,
        [Trace(f"S ({kind})", f, z, raw.best_fit, s if s.size > 1 else float(s))],
        model_name=f"{type(model).__name__}",
        run_id=run_id,
        warnings=warns,
        failures=failures,
        info={"kind": kind, "sigma": noise, "sigma_estimated": not sigma_given},
    )
    if raise_on_failure and not result.success:
        raise FitError(f"{kind} resonance fit failed: {result.message}", result=result)
    return result
