r"""Starting values of the line parameters and the loop phase of a global S-matrix fit.

The cable delay winds the phase of every trace many times over the band
(:math:`2\pi \cdot 100\,{\rm ns} \cdot 150\,{\rm MHz} \approx 30` rad), so
the fit must start with the right delays. With the device model :math:`S^{(0)}`
at the user's guesses, every element's delay and complex gain come from a
matched filter,

.. math::

    \hat\tau_{oi} = \arg\max_\tau \Big|\sum_{k,\delta}
        \overline{S^{(0)}_{k,oi}(\delta)}\, D_{k,oi}(\delta)\, e^{2\pi i\delta\tau}\Big|,
    \qquad
    \hat G_{oi} = \frac{\sum \overline{S^{(0)}}\, D\, e^{2\pi i\delta\hat\tau_{oi}}}
                       {\sum |S^{(0)}|^2},

(a zero-padded FFT, then a bounded scalar refinement), which a broad resonance
feature in :math:`S^{(0)}` that is slightly off does not move much. The element
delays are then split into port delays (:math:`\tau_{oi} = \tau^{\rm out}_o +
\tau^{\rm in}_i`, weighted least squares) and the element gains into port
gains (:math:`G_{oi} = G^{\rm out}_o G^{\rm in}_i`, weighted alternating least
squares), each element weighted by :math:`\sum|S^{(0)}|^2`.

The loop phase is the one strongly non-linear physics parameter: a guess off
by more than ~90° can end in a wrong minimum. :func:`scan_loops` evaluates the
cost of a grid of loop phases (line gains re-estimated for each) and starts
the fit from the best one.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
from scipy.optimize import minimize_scalar

from labnr.fit.smatrix_model import SMatrixModel

#: Largest delay searched, s (|tau| of one element's path).
MAX_DELAY = 1.5e-6


def _correlate(y: np.ndarray, delta: np.ndarray, tau: float) -> complex:
    return complex(np.sum(y * np.exp(2j * np.pi * delta * tau)))


def element_delay(y: np.ndarray, delta: np.ndarray) -> float:
    r"""The delay maximising :math:`|\sum_\delta y(\delta) e^{2\pi i\delta\tau}|`, s."""
    F = delta.size
    if F < 3:
        return 0.0
    step = np.diff(delta)
    h = float(np.median(step))
    span = float(delta[-1] - delta[0])
    res = 1.0 / (8 * abs(span))  # grid resolution of the coarse search
    if np.allclose(step, h, rtol=1e-6, atol=0):
        n = int(2 ** np.ceil(np.log2(8 * F)))
        c = np.abs(np.fft.ifft(y, n))
        taus = np.fft.fftfreq(n, d=h)  # cycles per Hz = s; aliasing at 1/h
        ok = np.abs(taus) <= MAX_DELAY
        tau0 = float(taus[ok][np.argmax(c[ok])]) if np.any(ok) else 0.0
        res = 1.0 / (n * abs(h))
    else:
        taus = np.arange(-MAX_DELAY, MAX_DELAY, res)
        c = np.abs(np.exp(2j * np.pi * np.outer(taus, delta)) @ y)
        tau0 = float(taus[np.argmax(c)])
    best = minimize_scalar(
        lambda t: -abs(_correlate(y, delta, t)),
        bounds=(tau0 - res, tau0 + res),
        method="bounded",
        options={"xatol": 1e-4 * res},
    )
    return float(best.x)


def port_delays(tau: np.ndarray, w: np.ndarray, ref: int) -> tuple[np.ndarray, np.ndarray]:
    """Split element delays into (out, in) port delays, ``tau_in[ref] = 0``."""
    P = tau.shape[0]
    rows, rhs, wts = [], [], []
    for o in range(P):
        for i in range(P):
            if w[o, i] > 0 and np.isfinite(tau[o, i]):
                row = np.zeros(2 * P)
                row[o] = 1.0
                row[P + i] = 1.0
                rows.append(row)
                rhs.append(tau[o, i])
                wts.append(np.sqrt(w[o, i]))
    keep = [j for j in range(2 * P) if j != P + ref]
    if not rows:
        return np.zeros(P), np.zeros(P)
    A = np.array(rows)[:, keep] * np.array(wts)[:, None]
    sol = np.linalg.lstsq(A, np.array(rhs) * np.array(wts), rcond=None)[0]
    full = np.zeros(2 * P)
    full[keep] = sol
    return full[:P], full[P:]


def port_gains(G: np.ndarray, w: np.ndarray, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Weighted rank-1 factorisation ``G[o, i] ~ a[o] b[i]`` (alternating least squares)."""
    w = np.where(np.isfinite(G) & (w > 0), w, 0.0)
    G = np.where(w > 0, G, 0.0)
    P = G.shape[0]
    b = np.ones(P, dtype=complex)
    a = np.ones(P, dtype=complex)
    for _ in range(iterations):
        a = (w * G * np.conj(b)[None]).sum(1) / np.maximum(
            (w * np.abs(b)[None] ** 2).sum(1), 1e-300
        )
        b = (w * G * np.conj(a)[:, None]).sum(0) / np.maximum(
            (w * np.abs(a)[:, None] ** 2).sum(0), 1e-300
        )
    return a, b


def _element_weights(S0: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.sum(np.where(valid, np.abs(S0) ** 2, 0.0), axis=(0, 1))


def init_lines(
    model: SMatrixModel, data: np.ndarray, valid: np.ndarray, values: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Matched-filter delays and gains written into ``model.params``.

    Returns
    -------
    tau : numpy.ndarray
        Element delays (P, P), s (NaN where an element has no data).
    weight : numpy.ndarray
        Element weights :math:`\\sum|S^{(0)}|^2` (P, P).
    """
    S0 = model.device(values)
    D = np.where(valid, data, 0.0)
    w = _element_weights(S0, valid)
    P = len(model.ports)
    delta = model.offsets
    tau = np.full((P, P), np.nan)
    for o in range(P):
        for i in range(P):
            if w[o, i] > 0:
                y = np.sum(np.conj(S0[:, :, o, i]) * D[:, :, o, i], axis=0)
                tau[o, i] = element_delay(y, delta)
    ref = model.ports.index(model.reference)
    t_out, t_in = port_delays(tau, w, ref)
    _fit_gains(model, S0, D, w, t_out, t_in)
    return t_out[:, None] + t_in[None, :], w


def _fit_gains(
    model: SMatrixModel,
    S0: np.ndarray,
    D: np.ndarray,
    w: np.ndarray,
    t_out: np.ndarray,
    t_in: np.ndarray,
) -> float:
    """Port gains for fixed delays (written into ``model.params``); returns the cost proxy."""
    d = model.offsets[:, None, None]
    line = np.exp(
        -2j * np.pi * (d * t_in[None, None, :] + (d + model.excess[None]) * t_out[None, :, None])
    )
    basis = S0 * line[None]
    num = np.sum(np.conj(basis) * D, axis=(0, 1))
    G = num / np.maximum(w, 1e-300)
    a, b = port_gains(G, w)
    model.set_lines(model.params, a, b, t_out, t_in)
    resid = D - (a[:, None] * b[None, :])[None, None] * basis
    return float(np.sum(np.abs(resid[np.abs(D) > 0]) ** 2))


def chord_parameters(model: SMatrixModel) -> dict[str, list[str]]:
    """``{chord: [phase parameter names]}`` of the loops whose phase the fit varies."""
    out: dict[str, list[str]] = {}
    for chord in model.par.loops:
        lk = next(x for x in model.par.links if x.name == chord)
        if lk.tone is not None:
            names = [f"theta_{lk.tone}"]
        else:
            names = [
                n for n in model.params if n == f"phase_{chord}" or n.startswith(f"phase_{chord}_s")
            ]
        names = [n for n in names if model.params[n].vary]
        if names:
            out[chord] = names
    return out


def scan_loops(
    model: SMatrixModel,
    data: np.ndarray,
    valid: np.ndarray,
    weights: np.ndarray,
    points: int = 12,
) -> dict[str, float]:
    """Start the chord phases at the best of a grid of loop phases (in place).

    For each grid point the port gains are re-fitted with the port delays
    fixed (those :func:`init_lines` wrote into ``model.params``) and the squared
    residual, weighted by ``weights`` (1/σ², broadcastable to the data), is
    compared. The user's guess is one of the candidates.

    Returns
    -------
    dict
        ``{chord: phase shift applied}``, rad.
    """
    chords = chord_parameters(model)
    if not chords:
        return {}
    n = points if len(chords) == 1 else max(4, points // 2)
    if len(chords) > 2:
        return {}
    grid = 2 * np.pi * np.arange(n) / n
    base = {c: [model.params[p].value for p in names] for c, names in chords.items()}
    t_out = np.array([model.params[f"delay_out_{p}"].value for p in model.ports])
    t_in = np.array([model.params[f"delay_in_{p}"].value for p in model.ports])
    D = np.where(valid, data, 0.0) * np.sqrt(weights)
    best = (np.inf, None, None)
    for shifts in itertools.product(grid, repeat=len(chords)):
        for (c, names), s in zip(chords.items(), shifts, strict=True):
            for p, v in zip(names, base[c], strict=True):
                model.params[p].set(value=float(np.angle(np.exp(1j * (v + s)))))
        values = model.params.valuesdict()
        S0 = model.device(values) * np.sqrt(weights)
        cost = _fit_gains(model, S0, D, _element_weights(S0, valid), t_out, t_in)
        if cost < best[0]:
            best = (cost, shifts, model.params.copy())
    assert best[2] is not None
    for name, p in best[2].items():
        if name in model.params and p.expr is None:
            model.params[name].set(value=p.value)
    return {c: float(s) for c, s in zip(chords, best[1], strict=True)}
