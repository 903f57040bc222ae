"""Global coupled-mode S-matrix fit: model, recovery, honest errors, robustness, data input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from smatrix_synthetic import (
    CENTRES,
    PORTS,
    TONES,
    make_truth,
    network,
    simulate,
    user_guesses,
)

from labnr.fit import FitError, FitLink, FitMode, SMatrixData, fit_smatrix
from labnr.fit.smatrix_model import SMatrixModel
from labnr.fit.smatrix_params import build
from labnr.model import Mode, Network


def _rel(a: float, b: float) -> float:
    return abs(a / b - 1)


def _deg(a: float, b: float) -> float:
    return abs(np.degrees(np.angle(np.exp(1j * (a - b)))))


# ---------------------------------------------------------------- the model itself
def _model_with_shifts() -> tuple[SMatrixModel, dict]:
    truth = make_truth(3, stark={("a", "ab"): -1e8})
    modes = [FitMode(m, truth.kappa_ext[m], truth.kappa_int[m], truth.detuning[m],
                     stark={"ab": -1e8} if m == "a" else None) for m in PORTS]  # fmt: skip
    links = [
        FitLink(a, b, tone=t, eta=eta, line_phase=th) for (a, b), (t, eta, th) in TONES.items()
    ]
    par = build(modes, links, list(PORTS), truth.amplitudes, truth.phases, 3, 75e6)
    u = np.array([0.0, 1.5e6, -2.5e6])  # frames off the band centres
    model = SMatrixModel(par, np.linspace(-75e6, 75e6, 201), u, u[None, :] - u[:, None], "a")
    rng = np.random.default_rng(0)
    for p in PORTS:
        for side in ("out", "in"):
            if (side, p) != ("in", "a"):
                model.params[f"gain_{side}_{p}"].value = 0.5 + rng.random()
                model.params[f"phase_{side}_{p}"].value = rng.normal()
                model.params[f"delay_{side}_{p}"].value = 60e-9 * rng.random()
    return model, {"truth": truth, "u": u}


def test_model_is_the_conjugated_network_times_the_lines() -> None:
    model, extra = _model_with_shifts()
    truth, u = extra["truth"], extra["u"]
    v = model.params.valuesdict()
    M = model.evaluate(v)
    delta = model.offsets
    for k in range(3):
        # the network's own frames: detunings and theta as in the truth, tree phases fixed at theirs
        net = network(truth, k)
        for i, pi in enumerate(PORTS):
            S = net.scattering(delta + u[i], nambu=False)
            for o, po in enumerate(PORTS):
                e = u[i] - u[o]
                line = (v[f"gain_out_{po}"] * v[f"gain_in_{pi}"]
                        * np.exp(1j * (v[f"phase_out_{po}"] + v[f"phase_in_{pi}"]))
                        * np.exp(-2j * np.pi * (delta * v[f"delay_in_{pi}"]
                                                + (delta + e) * v[f"delay_out_{po}"])))  # fmt: skip
                expected = line * np.conj(S[:, o, i])  # a VNA's e^{+j w t} phasors
                np.testing.assert_allclose(M[k, :, o, i], expected, rtol=1e-9, atol=1e-12)


def test_analytic_jacobian_matches_finite_differences() -> None:
    model, _ = _model_with_shifts()
    v = model.params.valuesdict()
    names = [n for n, p in model.params.items() if p.vary and not p.expr]
    J = model.jacobian(v, names)
    for c, name in enumerate(names):
        h = 1e-13 if name.startswith("delay") else max(abs(v[name]) * 1e-6, 1e-7)
        up, down = dict(v), dict(v)
        up[name] += h
        down[name] -= h
        fd = (model.evaluate(up) - model.evaluate(down)) / (2 * h)
        scale = np.max(np.abs(fd))
        assert scale > 0, name  # every varied parameter moves the model
        assert np.max(np.abs(J[c] - fd)) < 1e-5 * scale, name


def test_gauge_fixed_tree_phases_and_loop_expression() -> None:
    truth = make_truth(1)
    modes, links = user_guesses(truth, pump_mode=False)
    par = build(modes, links, list(PORTS), {}, {}, 1, 75e6)
    assert not par.params["phase_a_b"].vary and not par.params["phase_b_c"].vary
    assert par.params["phase_a_c"].vary
    assert par.loops == {"a_c": [(2, -1), (1, +1), (0, +1)]}
    assert par.params["loop_a_c"].expr.replace(" ", "") == "-phase_a_c+phase_b_c+phase_a_b"


# ---------------------------------------------------------------- quality bars
def test_recovery_at_40db_from_user_guesses_pump_mode() -> None:
    truth = make_truth(3, snr_db=40)
    data = simulate(truth, np.random.default_rng(11))
    modes, links = user_guesses(truth, pump_mode=True)  # theta unknown: 0
    r = fit_smatrix(data, modes, links, sigma=truth.sigma)
    v = r.values
    assert r.success, r.message
    for (a, b), (tone, _, _) in TONES.items():
        for k in range(3):
            assert _rel(v[f"eta_{tone}"] * truth.amplitudes[tone][k], truth.g((a, b), k)) < 0.01
    for m in PORTS:
        assert _rel(v[f"{m}_kappa_ext"], truth.kappa_ext[m]) < 0.02
        kappa = v[f"{m}_kappa_ext"] + v[f"{m}_kappa_int"]
        assert _rel(kappa, truth.kappa_ext[m] + truth.kappa_int[m]) < 0.02
        assert abs(v[f"{m}_detuning"] - truth.detuning[m]) < 0.01 * truth.kappa_ext[m]
    # loop_ca is the loop phase offset: flux = phi_ab + phi_bc - phi_ca + offset
    for k in range(3):
        flux = truth.phases["ab"][k] + truth.phases["bc"][k] - truth.phases["ca"][k] + v["loop_ca"]
        assert _deg(flux, truth.loop_flux(k)) < 1.0
    assert abs(r.redchi - 1) < 5 * np.sqrt(2 / r.nfree)  # the right sigma: chi2_nu ~ 1
    assert r.nfree == 2 * data.S.size - r.nvarys


def test_recovery_coupling_mode_single_setting() -> None:
    truth = make_truth(1, snr_db=40)
    data = simulate(truth, np.random.default_rng(12))
    modes, links = user_guesses(truth, pump_mode=False)
    r = fit_smatrix(data, modes, links)  # sigma estimated
    assert r.success, r.message
    for a, b in TONES:
        assert _rel(r.values[f"g_{a}_{b}"], truth.g((a, b))) < 0.01
    assert _deg(r.values["loop_a_c"], truth.loop_flux(0)) < 1.0
    assert r.info["sigma_estimated"] and abs(r.redchi - 1) < 0.1
    # the fitted device reproduces the true device's S-matrix (gauge-invariant magnitudes)
    delta = data.offsets
    S_fit = np.abs(r.network().scattering(delta, nambu=False))
    S_true = np.abs(network(truth, 0).scattering(delta, nambu=False))
    assert np.max(np.abs(S_fit - S_true)) < 0.01


def test_coverage_of_one_sigma_intervals() -> None:
    """Over 100 seeded repetitions the 1 sigma intervals hold the truth 60-76 % of the time."""
    truth = make_truth(1, snr_db=30)
    modes = [FitMode(m, truth.kappa_ext[m], truth.kappa_int[m], truth.detuning[m]) for m in PORTS]
    links = [FitLink(a, b, g=truth.g((a, b))) for a, b in TONES]
    hits = []
    for seed in range(100):
        data = simulate(truth, np.random.default_rng(1000 + seed), points=61)
        r = fit_smatrix(data, modes, links, sigma=truth.sigma, scan_loop=False)
        v, e = r.values, r.errors
        pairs = [(f"g_{a}_{b}", truth.g((a, b))) for a, b in TONES]
        pairs += [(f"{m}_kappa_ext", truth.kappa_ext[m]) for m in PORTS]
        pairs += [(f"{m}_kappa_int", truth.kappa_int[m]) for m in PORTS]
        pairs += [(f"{m}_detuning", truth.detuning[m]) for m in PORTS]
        hits += [abs(v[n] - t) <= e[n] for n, t in pairs]
        hits.append(_deg(v["loop_a_c"], truth.loop_flux(0)) <= np.degrees(e["loop_a_c"]))
    coverage = float(np.mean(hits))
    assert 0.60 <= coverage <= 0.76, coverage


def test_wrong_sigma_shows_in_reduced_chi_square() -> None:
    truth = make_truth(1)
    data = simulate(truth, np.random.default_rng(13), points=101)
    modes, links = user_guesses(truth, pump_mode=False)
    r = fit_smatrix(data, modes, links, sigma=truth.sigma / 2)
    assert r.redchi == pytest.approx(4.0, rel=0.1)
    assert any("errors scaled" in w for w in r.warnings)
    honest = fit_smatrix(data, modes, links, sigma=truth.sigma)
    ratio = r.errors["g_a_b"] / honest.errors["g_a_b"]
    assert ratio == pytest.approx(1.0, rel=0.05)  # Birge-scaled back to the honest size


def test_loop_phase_found_from_a_wrong_guess() -> None:
    truth = make_truth(1)
    data = simulate(truth, np.random.default_rng(14), points=201)
    modes, links = user_guesses(truth, pump_mode=False)
    wrong = [FitLink(lk.a, lk.b, g=lk.g, phase=np.pi if lk.b == "c" and lk.a == "a" else 0.0)
             for lk in links]  # fmt: skip
    r = fit_smatrix(data, modes, wrong)
    assert _deg(r.values["loop_a_c"], truth.loop_flux(0)) < 1.0


def test_nonconvergence_is_reported_not_returned() -> None:
    truth = make_truth(1)
    data = simulate(truth, np.random.default_rng(15), points=101)
    modes, links = user_guesses(truth, pump_mode=False)
    with pytest.raises(FitError, match="did not converge") as err:
        fit_smatrix(data, modes, links, max_nfev=2)
    assert err.value.result is not None and not err.value.result.success
    # a model without the loop's third link cannot describe the data
    r = fit_smatrix(data, modes, links[:2], raise_on_failure=False)
    assert not r.success and "reduced chi-square" in r.message
    # pure noise: no resonance to fit
    noise = SMatrixData(data.S - simulate(truth, None, points=101, noise=False).S, data.offsets,
                        PORTS)  # fmt: skip
    with pytest.raises(FitError):
        fit_smatrix(noise, modes, links)


def test_result_serialises_and_plots() -> None:
    truth = make_truth(2)
    data = simulate(truth, np.random.default_rng(16), points=61)
    modes, links = user_guesses(truth)
    r = fit_smatrix(data, modes, links, sigma=truth.sigma)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["run_id"] == "synthetic" and d["success"] and "eta_ab" in d["values"]
    assert d["info"]["loops"] == {"ca": [["ca", -1], ["bc", 1], ["ab", 1]]}
    assert len(r.traces) == 2 * 9
    fig = r.plot(max_traces=3)
    assert len(fig.axes) == 6
    assert "loop_ca" in r.fit_report()


def test_inputs_are_checked() -> None:
    truth = make_truth(1)
    data = simulate(truth, np.random.default_rng(17), points=41)
    modes, links = user_guesses(truth, pump_mode=False)
    with pytest.raises(ValueError, match="not modes of the model"):
        fit_smatrix(data, modes[:2], links[:1])
    with pytest.raises(ValueError, match="tone 'xy'"):
        fit_smatrix(data, modes, [FitLink("a", "b", tone="xy")])
    with pytest.raises(ValueError, match="given twice"):
        fit_smatrix(data, modes, [links[0], FitLink("b", "a")])
    with pytest.raises(ValueError, match="shape"):
        SMatrixData(data.S[:, :, :2], data.offsets, PORTS)
    with pytest.raises(ValueError, match="unknown parameter"):
        fit_smatrix(data, modes, links, fixed=["nope"])


def test_from_dataset_flattens_knobs_and_reads_tones() -> None:
    truth = make_truth(3)
    data = simulate(truth, np.random.default_rng(18), points=41)
    phases = truth.phases["bc"]
    S = data.S.copy()
    S[1, :, 0, 0] = np.nan  # one element not measured at one point
    snapshot = {"station": {"instruments": {"pump": {
        "parameters": {"output": {"value": True}},
        "submodules": {t: {"parameters": {"amplitude": {"value": 0.1},
                                          "phase": {"value": 0.0}}} for t in ("ab", "bc", "ca")},
    }}}}  # fmt: skip
    config = {"pumps": {"tones": {t: {"modes": list(m), "kind": "conversion"}
                                  for m, (t, _, _) in TONES.items()}}}  # fmt: skip
    offsets = {f"{o},{i}": CENTRES[o] - CENTRES[i] for o in PORTS for i in PORTS}
    ds = xr.Dataset(
        {"S": (("pump_bc_phase", "frequency", "out", "in"), S)},
        coords={"pump_bc_phase": phases, "frequency": data.offsets, "out": list(PORTS),
                "in": list(PORTS)},
        attrs={"run_id": 42, "band_centres": CENTRES, "receiver_offsets": offsets,
               "snapshot": snapshot, "config": config},
    )  # fmt: skip
    got = SMatrixData.from_dataset(ds)
    assert got.settings == 3 and got.run_id == 42
    np.testing.assert_allclose(got.phases["bc"], phases)
    np.testing.assert_allclose(got.amplitudes["ab"], 0.1)
    np.testing.assert_allclose(got.excess, 0.0)
    assert got.labels[0].startswith("pump_bc_phase=")
    assert not got.valid[1, :, 0, 0].any() and got.valid[0].all()
    ds.attrs["receiver_offsets"] = {**offsets, "b,a": offsets["b,a"] + 1e6}
    assert SMatrixData.from_dataset(ds).excess[1, 0] == pytest.approx(1e6)


def test_labnr_model_modes_are_accepted_as_guesses() -> None:
    truth = make_truth(1)
    data = simulate(truth, np.random.default_rng(19), points=101)
    modes = [Mode(m, truth.kappa_ext[m], truth.kappa_int[m], truth.detuning[m]) for m in PORTS]
    links = [(a, b, truth.g((a, b))) for a, b in TONES]
    r = fit_smatrix(data, modes, links, sigma=truth.sigma)
    assert isinstance(r.network(), Network) and r.success


def test_mode_without_a_port_and_the_loop_through_it() -> None:
    """Two ports and a dark mode m closing the loop a-b-m (a reservoir-engineered isolator)."""
    net = Network([Mode("a", 20e6, 0.2e6), Mode("b", 25e6, 0.2e6, 1e6), Mode("m", 0, 18e6, -2e6)])
    net.beamsplitter("a", "b", 6e6).beamsplitter("b", "m", 8e6).beamsplitter("a", "m", 7e6, 1.2)
    delta = np.linspace(-60e6, 60e6, 241)
    line = 0.3 * np.exp(1j * 0.4 - 2j * np.pi * delta * 80e-9)[:, None, None]
    sigma = 0.3e-2 / np.sqrt(2)
    rng = np.random.default_rng(31)
    S = np.conj(net.scattering(delta, nambu=False)) * line  # as a VNA reports it
    S = S + sigma * (rng.normal(size=S.shape) + 1j * rng.normal(size=S.shape))
    data = SMatrixData(S, delta, ["a", "b"])
    modes = [FitMode("a", 22e6, 0.5e6, 3e6), FitMode("b", 22e6, 0.5e6, -3e6),
             FitMode("m", 0.0, 15e6, 0.0)]  # fmt: skip
    links = [FitLink("a", "b", g=5e6), FitLink("b", "m", g=10e6), FitLink("a", "m", g=5e6)]
    r = fit_smatrix(data, modes, links, sigma=sigma)
    assert "m_kappa_ext" not in r.values
    assert r.values["m_kappa_int"] == pytest.approx(18e6, rel=0.02)
    assert r.values["g_a_m"] == pytest.approx(7e6, rel=0.01)
    # loop a -> b -> m -> a: phi_ab + phi_bm - phi_am = -1.2
    assert _deg(r.values["loop_a_m"], -1.2) < 1.0


def test_noise_estimate_needs_points_and_exact_data_fit_exactly() -> None:
    truth = make_truth(1)
    modes, links = user_guesses(truth, pump_mode=False)
    with pytest.raises(ValueError, match="pass sigma"):
        fit_smatrix(simulate(truth, np.random.default_rng(32), points=4), modes, links)
    clean = simulate(truth, None, points=41, noise=False)
    r = fit_smatrix(clean, modes, links, sigma=1e-9)
    assert r.values["g_a_b"] == pytest.approx(truth.g(("a", "b")), rel=1e-6)


def test_data_in_the_model_convention() -> None:
    truth = make_truth(1)
    data = simulate(truth, np.random.default_rng(33), points=101, convention="physics")
    modes, links = user_guesses(truth, pump_mode=False)
    r = fit_smatrix(data, modes, links, sigma=truth.sigma, convention="physics")
    assert _deg(r.values["loop_a_c"], truth.loop_flux(0)) < 1.0
    assert r.info["convention"] == "physics"
    wrong = fit_smatrix(data, modes, links, sigma=truth.sigma, raise_on_failure=False)
    assert not wrong.success  # conjugated model: resonances turn the wrong way
