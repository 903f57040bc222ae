"""The model against the closed forms of Metelmann & Clerk, PRX 5, 021025 (2015).

Each test writes out the formula it checks and where it comes from. Rates and
offsets are in Hz; only ratios enter.
"""

import numpy as np
import pytest

from labnr.model import (
    Mode,
    Network,
    UnstableNetworkError,
    circulator3,
    directional_amplifier,
    isolator_reservoir,
)

OFFSETS = np.linspace(-3.0, 3.0, 61)


@pytest.mark.parametrize("gamma_over_kappa", [0.3, 1.0, 2.5])
def test_isolator_zero_offset_matches_eq_smatrixiso(gamma_over_kappa: float) -> None:
    # M&C Eq. (eq.:smatrixiso), Markovian reservoir, J = i Gamma / 2:
    #   S[0] = [[(G - k)/(k + G), 0], [4 k G/(k + G)^2, (G - k)/(k + G)]]
    kappa = 1.0e6
    gamma = gamma_over_kappa * kappa
    S = isolator_reservoir(kappa, gamma, kappa_aux=1e4 * kappa).scattering(0.0, nambu=False)
    refl = (gamma - kappa) / (kappa + gamma)
    np.testing.assert_allclose(S[0, 0], refl, atol=1e-12)
    np.testing.assert_allclose(S[1, 1], refl, atol=1e-12)
    np.testing.assert_allclose(S[1, 0], 4 * kappa * gamma / (kappa + gamma) ** 2, atol=1e-12)
    assert abs(S[0, 1]) < 1e-12  # exact at zero offset, any kappa_aux


def test_isolator_markov_limit_full_frequency_dependence() -> None:
    # M&C Sec. IV.A, Markovian limit with impedance matching Gamma = kappa:
    #   S11 = -i w/k / (1 - i w/k),  S21 = 1 / (1 - i w/k)^2,  S12 = 0 for all w.
    kappa = 1.0
    w = OFFSETS
    S = isolator_reservoir(kappa, kappa, kappa_aux=1e9).scattering(w, nambu=False)
    x = w / kappa
    np.testing.assert_allclose(S[:, 0, 0], -1j * x / (1 - 1j * x), atol=1e-7)
    np.testing.assert_allclose(S[:, 1, 0], 1 / (1 - 1j * x) ** 2, atol=1e-7)
    assert np.max(np.abs(S[:, 0, 1])) < 1e-7


@pytest.mark.parametrize("kappa_aux", [3.0, 10.0, 40.0])
def test_isolator_non_markovian_reverse_transmission(kappa_aux: float) -> None:
    # M&C Sec. IV.A, finite auxiliary damping k' (directionality and impedance matching met):
    #   |S12(w)|^2 = (w^2/k'^2) / [ (w^2/k'^2)(1 + 4 w^4/k^4) - 4 w^4/(k^3 k') + (1 + w^2/k^2)^2 ]
    kappa = 1.0
    w = OFFSETS
    S = isolator_reservoir(kappa, kappa, kappa_aux).scattering(w, nambu=False)
    a = w**2 / kappa_aux**2
    expected = a / (
        a * (1 + 4 * w**4 / kappa**4)
        - 4 * w**4 / (kappa**3 * kappa_aux)
        + (1 + w**2 / kappa**2) ** 2
    )
    np.testing.assert_allclose(np.abs(S[:, 0, 1]) ** 2, expected, rtol=1e-9, atol=1e-15)
    assert np.max(expected) > 1e-4  # large enough that a Markovian model would fail


@pytest.mark.parametrize("C", [0.6, 0.8, 0.95])
def test_amplifier_zero_offset_smatrix(C: float) -> None:
    # M&C Sec. III.A (eq. dirampoutputshort), impedance matched, basis (d1, d2^dagger):
    #   S[0] = [[0, 0], [sqrt(G), sqrt(G + 1)]],  G = (2C - 1)/(C - 1)^2.
    kappa = 2.0e6
    net = directional_amplifier(kappa, C, kappa_aux=1e5 * kappa)
    S = net.scattering(0.0)
    a, bc = net.port_index("a"), net.port_index("b", conjugate=True)
    sub = S[np.ix_([a, bc], [a, bc])]
    G = (2 * C - 1) / (C - 1) ** 2
    np.testing.assert_allclose(np.abs(sub), [[0, 0], [np.sqrt(G), np.sqrt(G + 1)]], atol=1e-9)
    # Nothing leaves port a: no reflection and no reverse gain in either quadrature.
    assert np.max(np.abs(S[a, :])) < 1e-9


def test_amplifier_finite_offset_forward_gain() -> None:
    # M&C Sec. IV.B: |S21(w)|^2 = (2C - 1) / ([w^2/k^2 + 1][(C - 1)^2 + w^2/k^2]) + O(w/k'),
    # reverse gain |S12(w)|^2 = G(w) w^2/k'^2 + O(w^3/k'^3).
    kappa, C, kappa_aux = 1.0, 0.8, 1e6
    net = directional_amplifier(kappa, C, kappa_aux)
    S = net.scattering(OFFSETS)
    bc, a = net.port_index("b", conjugate=True), net.port_index("a")
    x2 = (OFFSETS / kappa) ** 2
    gain = (2 * C - 1) / ((x2 + 1) * ((C - 1) ** 2 + x2))
    np.testing.assert_allclose(np.abs(S[:, bc, a]) ** 2, gain, rtol=1e-5)
    rev = np.abs(S[:, net.port_index("a", conjugate=True), net.port_index("b")]) ** 2
    np.testing.assert_allclose(rev, gain * OFFSETS**2 / kappa_aux**2, rtol=1e-4, atol=1e-20)


def test_amplifier_is_quantum_limited() -> None:
    # M&C Sec. IV.B: n_add = (1/2 + n_T)(1 + 1/G[0]) with no thermal noise on cavity 2,
    # independent of the reservoir temperature.
    C = 0.9
    net = directional_amplifier(1e6, C, kappa_aux=1e11)
    G = (2 * C - 1) / (C - 1) ** 2
    n = net.added_noise("b", "a", 0.0, thermal_occupation={"aux.int": 3.0})
    np.testing.assert_allclose(n, 0.5 * (1 + 1 / G), rtol=1e-6)
    hot = net.added_noise("b", "a", 0.0, thermal_occupation={"b": 0.2})
    np.testing.assert_allclose(hot, (0.5 + 0.2) * (1 + 1 / G), rtol=1e-6)


def test_circulator_is_a_permutation() -> None:
    # |g| = k/2, Phi = pi/2: S[0] circulates a -> b -> c -> a (|S| is a permutation matrix);
    # Phi = -pi/2 circulates the other way.
    net = circulator3(10e6)
    S = np.abs(net.scattering(0.0, nambu=False))
    np.testing.assert_allclose(S, [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-12)
    S = np.abs(circulator3(10e6, loop_phase=-np.pi / 2).scattering(0.0, nambu=False))
    np.testing.assert_allclose(S, [[0, 1, 0], [0, 0, 1], [1, 0, 0]], atol=1e-12)


def test_circulator_reciprocal_without_flux() -> None:
    S = circulator3(10e6, loop_phase=0.0).scattering(OFFSETS * 1e6, nambu=False)
    np.testing.assert_allclose(S, np.swapaxes(S, -1, -2), atol=1e-12)


@pytest.mark.parametrize(("ka", "kb"), [(1.0, 1.0), (2.0, 0.5)])
def test_ndpa_instability_threshold(ka: float, kb: float) -> None:
    # Non-degenerate paramp: eigenvalues of [[-ka/2, -ig], [ig*, -kb/2]] cross zero at
    # g^2 = ka kb / 4.
    g_th = np.sqrt(ka * kb / 4)
    net = Network([Mode("a", kappa_ext=ka), Mode("b", kappa_ext=kb)]).squeezing("a", "b", 0.0)
    assert net.set_coupling("a", "b", g=0.999 * g_th).is_stable()
    assert not net.set_coupling("a", "b", g=1.001 * g_th).is_stable()
    with pytest.raises(UnstableNetworkError, match="unstable"):
        net.scattering(0.0)
    S = net.scattering(0.0, allow_unstable=True)
    assert np.all(np.isfinite(S))


def test_ndpa_gain_below_threshold() -> None:
    # Textbook NDPA at zero offset, equal rates: sqrt(G) = (1 + C)/(1 - C), C = 4g^2/(ka kb).
    kappa, C = 1.0, 0.5
    g = np.sqrt(C * kappa * kappa / 4)
    net = Network([Mode("a", kappa_ext=kappa), Mode("b", kappa_ext=kappa)]).squeezing("a", "b", g)
    S = net.scattering(0.0)
    refl = S[net.port_index("a"), net.port_index("a")]
    np.testing.assert_allclose(abs(refl), (1 + C) / (1 - C), rtol=1e-12)
