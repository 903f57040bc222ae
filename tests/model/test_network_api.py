"""Network construction, bad input, numerical methods and shapes."""

import numpy as np
import pytest

from labnr.model import Mode, Network, circulator3, isolator_reservoir, response
from labnr.model.linear import MAX_EIGVEC_CONDITION


def two_modes(**kw) -> Network:
    return Network([Mode("a", kappa_ext=1.0), Mode("b", kappa_ext=1.0, **kw)])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Mode("a", kappa_ext=-1.0), r"kappa_ext=-1.0 .*>= 0"),
        (lambda: Mode("a", kappa_int=float("nan")), r"kappa_int=nan .*finite"),
        (lambda: Mode("a", detuning=float("inf")), r"detuning=inf .*finite"),
        (lambda: Mode("", kappa_ext=1.0), r"Mode name '' is not allowed"),
        (lambda: Mode("a", kappa_ext="1e6"), r"kappa_ext='1e6' .*real number"),
        (lambda: Network([Mode("a"), Mode("a")]), r"duplicate mode names \['a'\]"),
        (lambda: Network([]), r"at least one Mode"),
        (lambda: two_modes().beamsplitter("a", "c", 0.1), r"unknown mode 'c'.*\['a', 'b'\]"),
        (lambda: two_modes().beamsplitter("a", "a", 0.1), r"mode 'a' to itself"),
        (lambda: two_modes().beamsplitter("a", "b", -0.1), r"g=-0.1 .*>= 0"),
        (lambda: two_modes().squeezing("a", "b", 0.1, phase=np.nan), r"phase=nan .*finite"),
        (
            lambda: two_modes().beamsplitter("a", "b", 0.1).squeezing("b", "a", 0.1),
            r"already coupled",
        ),
        (lambda: two_modes().scattering([0.0, np.nan]), r"offset contains \[nan\]"),
        (lambda: two_modes().port_index("z"), r"unknown port 'z'"),
        (lambda: two_modes().squeezing("a", "b", 0.1).scattering(0.0, nambu=False), r"nambu=False"),
        (lambda: Network([Mode("a", kappa_int=1.0)]).scattering(0.0), r"no ports"),
    ],
)
def test_bad_input_names_value_and_allowed(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_ports_and_indices() -> None:
    net = isolator_reservoir(1.0, 1.0, 100.0)
    assert net.ports == ["a", "b"]
    assert net.channels == ["a", "b", "aux.int"]
    assert net.port_index("b") == 1
    assert net.port_index("b", conjugate=True) == 3


def test_coupling_orientation_and_set() -> None:
    net = two_modes().beamsplitter("a", "b", 0.3, phase=0.4)
    assert net.coupling("b", "a").phase == pytest.approx(-0.4)
    net.set_coupling("b", "a", phase=0.1)
    assert net.coupling("a", "b").phase == pytest.approx(-0.1)
    assert net.coupling("a", "b").g == pytest.approx(0.3)


def test_scalar_and_shaped_offsets() -> None:
    net = circulator3(1.0)
    assert net.scattering(0.0).shape == (6, 6)
    assert net.scattering(0.0, nambu=False).shape == (3, 3)
    assert net.scattering(np.zeros((4, 5)), nambu=False).shape == (4, 5, 3, 3)


def test_undamped_mode_is_not_stable() -> None:
    net = Network([Mode("a", kappa_ext=1.0), Mode("b")]).beamsplitter("a", "b", 0.0)
    assert not net.is_stable()


def test_methods_agree_on_generic_network() -> None:
    net = circulator3(1.0, g=0.37, loop_phase=1.1)
    w = np.linspace(-3, 3, 101)
    A = net.dynamical_matrix()
    B = np.diag(np.sqrt([1.0, 1.0, 1.0]))
    S_poles = response(A, B, w, "poles")
    S_solve = response(A, B, w, "solve")
    np.testing.assert_allclose(S_poles, S_solve, atol=1e-12)
    np.testing.assert_allclose(net.scattering(w, nambu=False), S_solve, atol=1e-12)


def test_exceptional_point_falls_back_to_direct_solve() -> None:
    # Two modes with kappa_a != kappa_b and g = |kappa_a - kappa_b| / 4: the eigenvalues
    # coalesce, the eigenvector matrix is singular and pole-residue loses accuracy.
    ka, kb = 3.0, 1.0
    net = Network([Mode("a", kappa_ext=ka), Mode("b", kappa_ext=kb)]).beamsplitter(
        "a", "b", (ka - kb) / 4
    )
    A = net.dynamical_matrix()
    assert np.linalg.cond(np.linalg.eig(A)[1]) > MAX_EIGVEC_CONDITION
    B = np.diag(np.sqrt([ka, kb]))
    w = np.linspace(-2, 2, 41)
    exact = response(A, B, w, "solve")
    assert np.max(np.abs(response(A, B, w, "poles") - exact)) > 1e-10  # naive form is off
    np.testing.assert_allclose(net.scattering(w, nambu=False), exact, atol=1e-13)


def test_batch_of_parameter_sets() -> None:
    # A leading batch of dynamical matrices (e.g. several pump settings) in one call.
    phases = np.linspace(0, np.pi, 5)
    nets = [circulator3(1.0, loop_phase=p) for p in phases]
    A = np.stack([n.dynamical_matrix() for n in nets])
    B = np.eye(3)
    w = np.linspace(-1, 1, 7)
    S = response(A, B, w)
    assert S.shape == (5, 7, 3, 3)
    for k, n in enumerate(nets):
        np.testing.assert_allclose(S[k], n.scattering(w, nambu=False), atol=1e-12)


def test_mixed_batch_uses_fallback_only_where_needed() -> None:
    ka, kb = 3.0, 1.0
    ep = Network([Mode("a", kappa_ext=ka), Mode("b", kappa_ext=kb)]).beamsplitter("a", "b", 0.5)
    ok = Network([Mode("a", kappa_ext=ka), Mode("b", kappa_ext=kb)]).beamsplitter("a", "b", 0.9)
    A = np.stack([ep.dynamical_matrix(), ok.dynamical_matrix()])
    B = np.diag(np.sqrt([ka, kb]))
    w = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(response(A, B, w), response(A, B, w, "solve"), atol=1e-13)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="method='fast' is not allowed"):
        response(np.eye(2) * -1, np.eye(2), [0.0], "fast")
