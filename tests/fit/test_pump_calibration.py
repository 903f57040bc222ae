"""Pump calibration: eta and Stark shifts from an amplitude sweep; the loop phase offset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from smatrix_synthetic import LINE_PHASE_SUM, make_truth, simulate, user_guesses

from labnr.fit import FitLink, calibrate_amplitude, calibrate_loop_phase, guess_etas

STARK = {("a", "ab"): -1.0e8, ("b", "ab"): -1.4e8, ("c", "ab"): -0.6e8}  # Hz/V^2 of tone ab


def _unknown_etas(links: list[FitLink]) -> list[FitLink]:
    return [FitLink(lk.a, lk.b, tone=lk.tone) for lk in links]  # eta = 0: not known


def _deg(a: float, b: float) -> float:
    return abs(np.degrees(np.angle(np.exp(1j * (a - b)))))


def test_amplitude_sweep_gives_eta_and_stark_coefficients() -> None:
    n = 7
    amps = {"ab": np.linspace(0, 0.3, n), "bc": np.zeros(n), "ca": np.zeros(n)}
    phases = {t: np.zeros(n) for t in amps}
    truth = make_truth(n, amplitudes=amps, phases=phases, stark=STARK)
    data = simulate(truth, np.random.default_rng(21), points=201)
    modes, links = user_guesses(truth)
    r = calibrate_amplitude(data, "ab", modes, _unknown_etas(links), sigma=truth.sigma)
    v, e = r.values, r.errors
    assert r.success and r.info["calibration"] == "amplitude"
    assert v["eta_ab"] == pytest.approx(truth.eta["ab"], rel=0.01)
    assert "eta_bc" not in v  # tones off at every point are not in the model
    for (m, _), chi in STARK.items():
        assert v[f"{m}_stark_ab"] == pytest.approx(chi, rel=0.02)
        assert abs(v[f"{m}_stark_ab"] - chi) < 4 * e[f"{m}_stark_ab"]
        assert v[f"{m}_kappa_ext"] == pytest.approx(truth.kappa_ext[m], rel=0.02)
        assert v[f"{m}_detuning"] == pytest.approx(truth.detuning[m], abs=0.2e6)  # at A = 0
    assert abs(r.redchi - 1) < 0.05
    d = json.loads(json.dumps(r.to_dict()))
    assert d["info"]["tone"] == "ab" and d["values"]["a_stark_ab"] < 0


def test_eta_guess_from_the_strongest_point() -> None:
    truth = make_truth(2)
    data = simulate(truth, np.random.default_rng(22), points=151)
    modes, links = user_guesses(truth)
    etas = guess_etas(data, modes, _unknown_etas(links), sigma=truth.sigma)
    for tone, eta in truth.eta.items():
        assert etas[tone] == pytest.approx(eta, rel=0.01)


def test_loop_phase_sweep_gives_the_offset_and_the_circulator_phase() -> None:
    n = 8
    phases = {"ab": np.zeros(n), "bc": np.linspace(-np.pi, np.pi, n, endpoint=False),
              "ca": np.full(n, 0.4)}  # fmt: skip
    amps = {t: np.full(n, 0.1) for t in phases}
    truth = make_truth(n, amplitudes=amps, phases=phases)
    data = simulate(truth, np.random.default_rng(23), points=201)
    modes, links = user_guesses(truth)
    r = calibrate_loop_phase(data, "bc", modes, _unknown_etas(links))
    assert r.success, r.message
    assert _deg(r.values["loop_offset"], LINE_PHASE_SUM) < 1.0
    best = r.values["bc_phase_for_target"]
    # at that phase, with ab and ca as measured, the true loop flux is pi/2
    flux = 0.0 + truth.theta["ab"] + best + truth.theta["bc"] - (0.4 + truth.theta["ca"])
    assert _deg(flux, np.pi / 2) < 1.0
    assert r.errors["loop_offset"] < np.radians(0.5)
    assert "loop_offset" in r.fit_report() and r.info["loop"][0] == ("ca", -1)
    for tone, eta in truth.eta.items():
        assert r.values[f"eta_{tone}"] == pytest.approx(eta, rel=0.01)


def test_calibration_inputs_are_checked() -> None:
    truth = make_truth(2)
    data = simulate(truth, np.random.default_rng(24), points=41)
    modes, links = user_guesses(truth)
    with pytest.raises(ValueError, match="at least two different amplitudes"):
        calibrate_amplitude(data.select([0]), "ab", modes, links)
    with pytest.raises(ValueError, match="pump-mode links"):
        calibrate_amplitude(data, "ab", modes, [FitLink("a", "b", g=1e7)])
    with pytest.raises(ValueError, match="closes no loop"):
        calibrate_loop_phase(data, "bc", modes, [lk for lk in links if lk.tone != "ca"])
    with pytest.raises(ValueError, match="not in the data"):
        calibrate_loop_phase(data, "xy", modes, links)
