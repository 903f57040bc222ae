"""Directionality solvers, isolation figures and noise."""

import numpy as np
import pytest

from labnr.model import (
    Mode,
    Network,
    circulator3,
    directionality_condition,
    isolation_db,
    isolator_reservoir,
    optomechanical_circulator,
    solve_couplings,
)


def test_isolator_condition_is_J_equals_i_gamma_over_2() -> None:
    kappa, gamma = 1.0e6, 0.7e6
    net = isolator_reservoir(kappa, gamma, kappa_aux=1e3 * kappa)
    net.set_coupling("a", "b", g=0.1 * gamma, phase=-1.0)  # start far off
    sol = directionality_condition(net, ("a", "b"), ("a", "b"))
    assert sol.success
    assert sol.g(("a", "b")) == pytest.approx(gamma / 2, rel=1e-9)
    assert sol.phase(("a", "b")) == pytest.approx(np.pi / 2, abs=1e-9)


def test_condition_holds_for_detuned_non_markovian_isolator() -> None:
    # No closed form here: detuned principal modes and a slow reservoir, cancel the
    # reverse path off-centre. The solver must use the model, and its answer must
    # differ from the ideal J = i Gamma/2.
    kappa = 1.0
    net = Network(
        [
            Mode("a", kappa_ext=kappa, detuning=0.2),
            Mode("b", kappa_ext=kappa, detuning=-0.1),
            Mode("aux", kappa_int=5.0, detuning=0.3),
        ]
    )
    g = np.sqrt(kappa * 5.0 / 4)
    net.beamsplitter("aux", "a", g).beamsplitter("aux", "b", g).beamsplitter(
        "a", "b", 0.5, np.pi / 2
    )
    sol = directionality_condition(net, ("a", "b"), ("a", "b"), offset=0.15)
    assert sol.success
    S = sol.network.scattering(0.15, nambu=False)
    assert abs(S[0, 1]) < 1e-9
    assert abs(S[1, 0]) > 0.3
    assert abs(sol.couplings[("a", "b")] - 0.5j) > 1e-3


def test_circulator_phases_solved_from_scratch() -> None:
    # Three unknown links, three reverse paths: recover |g| = kappa/2 and a loop flux of
    # +pi/2 (up to gauge) for circulation a -> b -> c -> a.
    net = circulator3(1.0, g=0.3, loop_phase=0.4)
    sol = solve_couplings(
        net, [("a", "b"), ("b", "c"), ("c", "a")], [("a", "b"), ("b", "c"), ("c", "a")]
    )
    assert sol.success
    flux = np.angle(np.prod(list(sol.couplings.values())))
    assert flux == pytest.approx(np.pi / 2, abs=1e-6)
    assert all(abs(c) == pytest.approx(0.5, rel=1e-6) for c in sol.couplings.values())


def test_isolation_db_by_name_and_index() -> None:
    S = circulator3(1.0, g=0.5, loop_phase=np.pi / 2 + 0.01).scattering(0.0, nambu=False)
    iso = isolation_db(S, ("b", "a"), ("a", "b"), ports=["a", "b", "c"])
    assert iso == pytest.approx(isolation_db(S, (1, 0), (0, 1)))
    # |S_rev|^2 ~ (dphi/2)^2 -> 20 log10(2/0.01) ~ 46 dB
    assert 40 < iso < 52


def test_optomechanical_preset_isolates() -> None:
    net = optomechanical_circulator()
    S = net.scattering(0.0, nambu=False)
    assert isolation_db(S, (1, 0), (0, 1)) > 60
    assert abs(S[1, 0]) ** 2 > 0.7
    flux = net.coupling("a2", "m2").phase
    S2 = optomechanical_circulator(loop_phase=-flux).scattering(0.0, nambu=False)
    assert isolation_db(S2, (0, 1), (1, 0)) > 60  # the opposite flux reverses the sense


def test_output_noise_of_passive_network_is_vacuum_and_thermal() -> None:
    net = circulator3(1.0)
    np.testing.assert_allclose(net.output_noise(np.linspace(-1, 1, 5)), 0.0, atol=1e-12)
    hot = net.output_noise(0.0, thermal_occupation={"a": 2.0})
    np.testing.assert_allclose(hot, [0.0, 2.0, 0.0], atol=1e-12)  # a's noise goes to b


def test_added_noise_of_lossy_transmission() -> None:
    # A lossy transmission |S21|^2 = T adds n_add = (1 - T)/(2T) quanta of vacuum noise
    # (the isolator's reservoir is the loss): T = 4 k G/(k + G)^2 here.
    kappa, gamma = 1.0, 0.5
    net = isolator_reservoir(kappa, gamma, kappa_aux=1e6)
    T = (4 * kappa * gamma / (kappa + gamma) ** 2) ** 2
    refl = ((gamma - kappa) / (kappa + gamma)) ** 2
    n = net.added_noise("b", "a", 0.0)
    np.testing.assert_allclose(n, (1 - T) / (2 * T), rtol=1e-6)
    assert refl > 0  # the reflected b input is part of that noise


def test_unknown_noise_channel() -> None:
    with pytest.raises(ValueError, match=r"unknown channels \['z'\]"):
        circulator3(1.0).output_noise(0.0, thermal_occupation={"z": 1.0})
