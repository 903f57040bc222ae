"""Sideband-window fit: a port mode's reflection with a conversion tone to an unseen mode."""

from __future__ import annotations

import numpy as np
import pytest

from labnr.fit import FitError, fit_sideband_window, sideband_reflection

KE, KI = 1.2e6, 0.1e6
OFFSET = np.linspace(-2500, 2500, 401)


def traces(eta: float, delta: float, gamma: float, amps, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    B = 0.2 * np.exp(1.1j)
    y = np.array([B * sideband_reflection(OFFSET, KE, KI, eta * a, delta, gamma) for a in amps])
    return y + sigma * (rng.normal(size=y.shape) + 1j * rng.normal(size=y.shape))


def test_window_closed_form() -> None:
    """The Network model equals the textbook OMIT reflection (e^{-iwt}, FWHM linewidths)."""
    g, d, gm = 3e3, 150.0, 80.0
    w = OFFSET
    k = KE + KI
    expected = 1 - KE / (k / 2 - 1j * w + g**2 / (gm / 2 - 1j * (w - d)))
    assert np.allclose(sideband_reflection(w, KE, KI, g, d, gm), expected, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_recovers_parameters(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    eta, delta, gamma = rng.uniform(2e4, 6e4), rng.uniform(-800, 800), rng.uniform(50, 120)
    amps = [0.05, 0.1]
    fit = fit_sideband_window(OFFSET, traces(eta, delta, gamma, amps, 2e-3, seed), amps, KE, KI)
    v, e = fit.values, fit.errors
    for name, true in (("eta", eta), ("delta_m", delta), ("gamma_m", gamma)):
        assert abs(v[name] - true) < 5 * e[name] + 1e-9, (name, v[name], true, e[name])
    assert 0.7 < fit.redchi < 1.4


def test_noise_only_fails() -> None:
    y = traces(0.0, 0.0, 80.0, [0.05, 0.1], 2e-3, 1)
    with pytest.raises(FitError, match="no sideband window"):
        fit_sideband_window(OFFSET, y, [0.05, 0.1], KE, KI)


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="expected \\(amplitudes, offsets\\)"):
        fit_sideband_window(OFFSET, np.ones((3, 401)), [0.1, 0.2], KE, KI)
    with pytest.raises(ValueError, match="all zero"):
        fit_sideband_window(OFFSET, np.ones((1, 401)), [0.0], KE, KI)
