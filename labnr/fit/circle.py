r"""Algebraic circle fit and the circle-based initial guess of a resonance.

A resonance traces a circle in the complex plane once the cable delay is
removed (Probst et al., Rev. Sci. Instrum. 86, 024706 (2015)). The guess
follows their recipe:

1. cable delay :math:`\tau` from the common phase slope of the two band edges,
   refined by minimising the circle-fit residual of
   :math:`S\,e^{+2\pi i (f-f_c)\tau}` over :math:`\tau`;
2. an algebraic circle fit with Pratt's constraint (:func:`fit_circle`);
3. :math:`f_0` and :math:`\kappa` from the angle of the centred points,
   :math:`\theta(f) = \theta_0 + 2\arctan\big(2(f-f_0)/\kappa\big)`
   (:func:`fit_circle_phase`; labnr's :math:`e^{-i\omega t}` convention makes
   the circle turn counter-clockwise with frequency);
4. the off-resonant point :math:`P = c + r e^{i(\theta_0+\pi)}` gives the
   background :math:`a e^{i\alpha}`; the circle of :math:`S/P`, of centre
   :math:`1 - \tfrac{k}{2} e^{i\varphi}`, gives the mismatch angle
   :math:`\varphi` and the relative diameter :math:`k`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.optimize import least_squares, minimize_scalar

from labnr.fit.result import estimate_noise

__all__ = [
    "Circle",
    "CircleGuess",
    "estimate_delay",
    "fit_circle",
    "fit_circle_phase",
    "guess_circle",
]

_PRATT_INV = np.array([[0.0, 0, 0, -0.5], [0, 1, 0, 0], [0, 0, 1, 0], [-0.5, 0, 0, 0]])


class Circle(NamedTuple):
    """A circle in the complex plane and the rms distance of the points from it."""

    center: complex
    radius: float
    rms: float


class CircleGuess(NamedTuple):
    """What the circle analysis of a resonance trace gives (see module docstring)."""

    tau: float  #: cable delay, s
    f0: float  #: resonance frequency, Hz
    kappa: float  #: total linewidth (FWHM), Hz
    diameter: float  #: k, diameter of the circle of S / P
    phi: float  #: mismatch (Fano) angle, rad
    background: complex  #: a e^{i alpha}, the off-resonant point at f0 (delay referenced to f0)
    rms: float  #: rms of data − guessed model, same units as S
    clockwise: bool = False  #: the circle turns clockwise: data in the e^{+iωt} convention?

    def model(self, frequency: np.ndarray) -> np.ndarray:
        r"""The trace this guess describes (any kind: it is the circle itself).

        :math:`a e^{i\alpha} e^{-2\pi i(f-f_0)\tau}[1 - \tfrac{k}{2}e^{i\varphi}
        (1 + e^{i\psi})]` with :math:`\psi = 2\arctan(2(f-f_0)/\kappa)`.
        """
        df = np.asarray(frequency, dtype=float) - self.f0
        psi = 2 * np.arctan(2 * df / self.kappa)
        circle = 1 - 0.5 * self.diameter * np.exp(1j * self.phi) * (1 + np.exp(1j * psi))
        return self.background * np.exp(-2j * np.pi * df * self.tau) * circle


def _circle_batch(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pratt fits of every row of ``z`` (M, N) at once: centres, radii, rms residuals."""
    shift = z.mean(axis=1, keepdims=True)
    scale = np.sqrt(np.mean(np.abs(z - shift) ** 2, axis=1, keepdims=True))
    scale = np.where(scale > 0, scale, 1.0)
    w = (z - shift) / scale
    cols = np.stack([np.abs(w) ** 2, w.real, w.imag, np.ones_like(w.real)], axis=1)
    moments = cols @ np.swapaxes(cols, 1, 2)
    vals, vecs = np.linalg.eig(_PRATT_INV @ moments)  # M v = λ B v, B invertible
    vals = np.where(np.isfinite(vals.real), vals.real, np.inf)
    tol = 1e-9 * np.max(np.where(np.isfinite(vals), np.abs(vals), 0.0), axis=1, keepdims=True)
    vals = np.where(vals > -tol, vals, np.inf)
    pick = np.argmin(vals, axis=1)
    coef = np.real(np.take_along_axis(vecs, pick[:, None, None], axis=2)[:, :, 0])
    a, b, c, d = coef.T
    with np.errstate(divide="ignore", invalid="ignore"):
        center = -(b + 1j * c) / (2 * a)
        radius = np.sqrt(np.maximum(b * b + c * c - 4 * a * d, 0.0)) / (2 * np.abs(a))
        rms = np.sqrt(np.mean((np.abs(w - center[:, None]) - radius[:, None]) ** 2, axis=1))
    bad = ~np.isfinite(vals[np.arange(len(pick)), pick]) | (np.abs(a) < 1e-12)
    rms = np.where(bad | ~np.isfinite(rms), np.inf, rms)
    s = scale[:, 0]
    return center * s + shift[:, 0], radius * s, rms * s


def fit_circle(z: np.ndarray) -> Circle:
    r"""Algebraic circle fit with Pratt's constraint.

    Minimises :math:`\sum_k (A|z_k|^2 + B x_k + C y_k + D)^2` subject to
    :math:`B^2 + C^2 - 4AD = 1`, a generalised eigenproblem of the 4 × 4
    moment matrix; centre :math:`-(B + iC)/2A`, radius :math:`1/(2|A|)`.
    Points are centred and scaled first for conditioning.

    Parameters
    ----------
    z : ndarray of complex
        At least 3 points.

    Raises
    ------
    ValueError
        Fewer than 3 points, or no circle (points on a line, non-finite).
    """
    z = np.asarray(z, dtype=complex).ravel()
    if z.size < 3:
        raise ValueError(f"a circle fit needs at least 3 points; got {z.size}")
    center, radius, rms = _circle_batch(z[None, :])
    if not np.isfinite(rms[0]):
        raise ValueError("circle fit failed: the points lie on a line or are not finite")
    return Circle(complex(center[0]), float(radius[0]), float(rms[0]))


def _edge_delay(frequency: np.ndarray, z: np.ndarray, fraction: float = 0.15) -> float:
    """Common phase slope of the two band edges (separate offsets), as a delay in s."""
    n = max(3, int(round(fraction * z.size)))
    xs, ys, rows = [], [], []
    for j, sl in enumerate((slice(0, n), slice(z.size - n, z.size))):
        f, ph = frequency[sl], np.unwrap(np.angle(z[sl]))
        xs.append(f - f.mean())
        ys.append(ph)
        rows.append(np.full(f.size, j))
    x, y, row = np.concatenate(xs), np.concatenate(ys), np.concatenate(rows)
    design = np.stack([x, row == 0, row == 1], axis=1).astype(float)
    slope = np.linalg.lstsq(design, y, rcond=None)[0][0]
    return float(-slope / (2 * np.pi))


def estimate_delay(frequency: np.ndarray, z: np.ndarray) -> float:
    r"""Cable delay τ (s) of a resonance trace, in the convention :math:`e^{-2\pi i f\tau}`.

    Edge phase slope first, then the τ within ±2/span of it that makes the
    delay-corrected points most circular (vectorised grid of 81, then bounded
    Brent between the neighbours of the best grid point).
    """
    f = np.asarray(frequency, dtype=float)
    z = np.asarray(z, dtype=complex)
    fc, span = 0.5 * (f[0] + f[-1]), float(np.ptp(f))
    tau0 = _edge_delay(f, z)
    grid = tau0 + np.linspace(-2.0, 2.0, 81) / span
    rms = _circle_batch(z[None, :] * np.exp(2j * np.pi * np.outer(grid, f - fc)))[2]
    i = int(np.argmin(rms))

    def cost(tau: float) -> float:
        return float(_circle_batch(z[None, :] * np.exp(2j * np.pi * (f - fc) * tau))[2][0])

    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = minimize_scalar(cost, bounds=(lo, hi), method="bounded", options={"xatol": 2e-3 / span})
    return float(res.x) if res.fun <= rms[i] else float(grid[i])


def fit_circle_phase(
    frequency: np.ndarray, z_centered: np.ndarray, f0: float, kappa: float
) -> tuple[float, float, float]:
    r"""Fit :math:`\theta(f) = \theta_0 + 2\arctan(2(f-f_0)/\kappa)` to the angle of centred points.

    Residuals are wrapped to :math:`(-\pi, \pi]`, so no unwrapping is needed.
    Returns ``(theta0, f0, kappa)``; κ may come out negative if the circle
    turns clockwise (data in the :math:`e^{+i\omega t}` convention).
    """
    f = np.asarray(frequency, dtype=float)
    theta = np.angle(z_centered)
    scale = abs(kappa)
    i0 = int(np.argmin(np.abs(f - f0)))

    def resid(p: np.ndarray) -> np.ndarray:
        model = p[0] + 2 * np.arctan(2 * (f - p[1] * scale) / (p[2] * scale))
        return np.angle(np.exp(1j * (theta - model)))

    start = np.array([theta[i0], f0 / scale, kappa / scale])
    sol = least_squares(resid, start, method="lm", x_scale="jac")
    return float(sol.x[0]), float(sol.x[1] * scale), float(sol.x[2] * scale)


def _width_guess(f: np.ndarray, z: np.ndarray, p: complex) -> tuple[float, float]:
    """f0 at the point farthest from P; κ from the FWHM of |z − P|² (Lorentzian)."""
    dist2 = np.abs(z - p) ** 2
    i0 = int(np.argmax(dist2))
    half = dist2 > 0.5 * dist2[i0]
    df = float(np.median(np.diff(f)))
    width = float(np.count_nonzero(half)) * df
    return float(f[i0]), float(np.clip(width, 2 * df, np.ptp(f)))


def _analyse(f: np.ndarray, z: np.ndarray, tau: float) -> CircleGuess:
    """Steps 2–4 of the module docstring for a given delay."""
    fc = 0.5 * (f[0] + f[-1])
    zc = z * np.exp(2j * np.pi * (f - fc) * tau)
    circle = fit_circle(zc)
    n_edge = max(3, f.size // 20)
    p_edges = np.concatenate([zc[:n_edge], zc[-n_edge:]]).mean()
    f0, kappa = _width_guess(f, zc, p_edges)
    theta0, f0, kappa = fit_circle_phase(f, zc - circle.center, f0, kappa)
    p = circle.center + circle.radius * np.exp(1j * (theta0 + np.pi))
    rel = 1 - circle.center / p
    guess = CircleGuess(
        tau=float(tau),
        f0=f0,
        kappa=abs(kappa),
        diameter=float(2 * abs(rel)),
        phi=float(np.angle(rel)),
        background=complex(p * np.exp(-2j * np.pi * (f0 - fc) * tau)),
        rms=math.nan,
        clockwise=bool(kappa < 0),
    )
    return guess._replace(rms=float(np.sqrt(np.mean(np.abs(z - guess.model(f)) ** 2))))


def guess_circle(frequency: np.ndarray, z: np.ndarray, tau: float | None = None) -> CircleGuess:
    """The circle analysis of a resonance trace (module docstring, steps 1–4).

    Without ``tau``, the circle-refined delay is tried first; unless its
    guessed model already matches the data to within 2× the noise
    (:func:`~labnr.fit.result.estimate_noise`), the edge-slope delay is
    tried too and the guess closer to the data is returned (the circle
    criterion alone can prefer a wrong delay when a weak resonance sits on
    a rippled background).

    Parameters
    ----------
    frequency : ndarray
        Increasing frequencies, Hz.
    z : ndarray of complex
        The trace.
    tau : float, optional
        Known cable delay, s (skips step 1).

    Raises
    ------
    ValueError
        If no candidate gives a finite circle.
    """
    f = np.asarray(frequency, dtype=float)
    z = np.asarray(z, dtype=complex)
    taus = [tau] if tau is not None else [estimate_delay(f, z), _edge_delay(f, z)]
    good_enough = 2 * math.sqrt(2) * estimate_noise(z) if tau is None else math.inf
    best: CircleGuess | None = None
    for t in taus:
        try:
            g = _analyse(f, z, t)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.isfinite(g.rms) and (best is None or g.rms < best.rms):
            best = g
        if best is not None and best.rms <= good_enough:  # noise-limited: no need to try more
            break
    if best is None:
        raise ValueError("circle analysis failed for every delay candidate")
    return best
