"""Property tests on random networks (hypothesis)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labnr.model import Mode, Network


def _random_network(draw, n: int, squeeze: bool, real_phases: bool, tree: bool) -> Network:
    kappas = draw(st.lists(st.floats(0.2, 3.0), min_size=n, max_size=n))
    detunings = draw(st.lists(st.floats(-2.0, 2.0), min_size=n, max_size=n))
    modes = [
        Mode(f"m{i}", kappa_ext=k, detuning=d)
        for i, (k, d) in enumerate(zip(kappas, detunings, strict=True))
    ]
    net = Network(modes)
    pairs = (
        [(i, i + 1) for i in range(n - 1)]
        if tree
        else [(i, j) for i in range(n) for j in range(i + 1, n)]
    )
    for i, j in pairs:
        g = draw(st.floats(0.0, 1.5))
        phase = (
            draw(st.sampled_from([0.0, np.pi])) if real_phases else draw(st.floats(-np.pi, np.pi))
        )
        kind = "squeezing" if squeeze and draw(st.booleans()) else "beamsplitter"
        if kind == "squeezing":
            g *= 0.3  # mostly below threshold
        getattr(net, kind)(f"m{i}", f"m{j}", g, phase)
    return net


@st.composite
def networks(draw, squeeze: bool = False, real_phases: bool = False, tree: bool = False):
    n = draw(st.integers(2, 5))
    return _random_network(draw, n, squeeze, real_phases, tree)


OFFS = np.linspace(-4, 4, 9)


@settings(max_examples=60, deadline=None)
@given(networks(squeeze=True))
def test_stable_lossless_network_is_symplectic(net: Network) -> None:
    # S J S^H = J with J = diag(1, -1): bosonic commutators are preserved.
    if not net.is_stable():
        return
    S = net.scattering(OFFS)
    p = len(net.ports)
    J = np.diag(np.r_[np.ones(p), -np.ones(p)])
    lhs = S @ J @ np.conj(np.swapaxes(S, -1, -2))
    scale = max(1.0, float(np.max(np.abs(S))) ** 2)
    np.testing.assert_allclose(lhs, np.broadcast_to(J, lhs.shape), atol=1e-8 * scale)


@settings(max_examples=60, deadline=None)
@given(networks(squeeze=False))
def test_lossless_passive_network_is_unitary(net: Network) -> None:
    S = net.scattering(OFFS, nambu=False)
    eye = np.eye(len(net.ports))
    np.testing.assert_allclose(
        S @ np.conj(np.swapaxes(S, -1, -2)), np.broadcast_to(eye, S.shape), atol=1e-9
    )


@settings(max_examples=60, deadline=None)
@given(networks(real_phases=True))
def test_no_flux_no_squeezing_is_reciprocal(net: Network) -> None:
    # Real couplings: every loop flux is 0 or pi, so S = S^T exactly.
    S = net.scattering(OFFS, nambu=False)
    np.testing.assert_allclose(S, np.swapaxes(S, -1, -2), atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(networks(tree=True))
def test_tree_is_reciprocal_in_magnitude(net: Network) -> None:
    # Without a closed loop the coupling phases are a gauge: |S| = |S|^T (only the
    # transmission phases carry the pump phases, with opposite signs both ways).
    S = net.scattering(OFFS, nambu=False)
    np.testing.assert_allclose(np.abs(S), np.abs(np.swapaxes(S, -1, -2)), atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(networks(squeeze=True))
def test_doubled_basis_conjugate_block(net: Network) -> None:
    # The a-dagger block at +w is the complex conjugate of the a block at -w.
    if not net.is_stable():
        return
    p = len(net.ports)
    S = net.scattering(OFFS)
    Sm = net.scattering(-OFFS)
    np.testing.assert_allclose(
        S[:, p:, p:], np.conj(Sm[:, :p, :p]), atol=1e-8 * max(1, np.abs(S).max())
    )
