"""Flux spectroscopy analysis: resonance positions from reflection phase, and the sweet spot.

Used by the ``flux_sweet_spot`` calibration node and by
``experiments/flux_spectroscopy.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["resonance_offsets", "sweet_spot"]


def resonance_offsets(S: np.ndarray, delta: np.ndarray, threshold: float = 20.0) -> np.ndarray:
    """Offset (Hz) where each trace's phase turns fastest; S shape (..., nfreq).

    The phase step between neighbouring points is a constant (the cable delay)
    plus the resonance's peak; the median removes the constant. Traces whose
    peak does not stand ``threshold`` times above the typical step noise (no
    mode in the band) give NaN.
    """
    S = np.asarray(S)
    delta = np.asarray(delta, dtype=float)
    step = np.angle(S[..., 1:] / S[..., :-1])
    excess = np.abs(step - np.median(step, axis=-1, keepdims=True))
    noise = np.median(excess, axis=-1)
    centre = 0.5 * (delta[1:] + delta[:-1])
    found = centre[np.argmax(excess, axis=-1)]
    return np.where(np.max(excess, axis=-1) > threshold * noise, found, np.nan)


def sweet_spot(flux: np.ndarray, f_res: np.ndarray) -> tuple[float, float] | None:
    """(flux, frequency) of the highest resonance, refined by a local parabola.

    ``f_res`` is the resonance position at each flux (NaN where none was
    found). Returns None if no resonance was found at any flux.
    """
    flux = np.asarray(flux, dtype=float)
    f_res = np.asarray(f_res, dtype=float)
    if not np.isfinite(f_res).any():
        return None
    k = int(np.nanargmax(f_res))
    top, f_top = float(flux[k]), float(f_res[k])
    near = np.arange(max(k - 2, 0), min(k + 3, flux.size))
    near = near[np.isfinite(f_res[near])]
    if near.size >= 3:
        a, b, c = np.polyfit(flux[near], f_res[near], 2)
        if a < 0 and flux[near].min() <= -b / (2 * a) <= flux[near].max():
            top = float(-b / (2 * a))
            f_top = float(c - b * b / (4 * a))
    return top, f_top
