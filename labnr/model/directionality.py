r"""Directionality: isolation figures and the couplings that cancel a reverse path.

Nonreciprocity arises when a coherent coupling between two modes is balanced
against the coupling mediated by other (damped) modes, so that the two paths
from an input to an output interfere destructively in one direction only
(Metelmann & Clerk, PRX 5, 021025 (2015), Sec. II). For the ideal
reservoir-engineered isolator this is :math:`J = i\Gamma/2`; for a detuned,
lossy or non-Markovian network there is no closed form, so the solvers here
find the condition with the model itself: they search the complex coupling(s)
:math:`g e^{i\phi}` of chosen links that make chosen scattering elements
vanish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from labnr.model.network import Network, UnstableNetworkError


def _index(port: int | str, ports: Sequence[str] | None) -> int:
    if isinstance(port, str):
        if ports is None or port not in ports:
            raise ValueError(f"unknown port {port!r}; pass ports=[...] naming the S axes")
        return list(ports).index(port)
    return int(port)


def isolation_db(
    S: np.ndarray,
    fwd: tuple[int | str, int | str],
    rev: tuple[int | str, int | str],
    ports: Sequence[str] | None = None,
) -> np.ndarray:
    """Isolation :math:`20\\log_{10}(|S_{fwd}|/|S_{rev}|)` in dB.

    Parameters
    ----------
    S : numpy.ndarray
        Scattering matrices, shape ``(..., P, P)`` indexed [out, in].
    fwd, rev : tuple
        (out, in) of the forward and reverse paths, as indices or port names.
    ports : sequence of str, optional
        Port names of the S axes, needed when paths are given by name.

    Returns
    -------
    numpy.ndarray
        Isolation in dB with shape ``S.shape[:-2]``; ``inf`` where the reverse
        path is exactly zero.
    """
    S = np.asarray(S)
    fo, fi = (_index(p, ports) for p in fwd)
    ro, ri = (_index(p, ports) for p in rev)
    with np.errstate(divide="ignore"):
        return 20 * np.log10(np.abs(S[..., fo, fi])) - 20 * np.log10(np.abs(S[..., ro, ri]))


@dataclass(frozen=True)
class CouplingSolution:
    """Result of a directionality solve.

    Attributes
    ----------
    couplings : dict
        ``(a, b) -> g e^{i phi}`` for every solved link (Hz, oriented a -> b).
    residual : float
        Largest :math:`|S|` left on the target elements.
    network : Network
        A copy of the network with the solution applied.
    success : bool
        True if the residual is below the requested tolerance.
    """

    couplings: dict[tuple[str, str], complex]
    residual: float
    network: Network
    success: bool

    def g(self, link: tuple[str, str]) -> float:
        """Coupling magnitude of ``link`` in Hz."""
        return float(abs(self.couplings[link]))

    def phase(self, link: tuple[str, str]) -> float:
        """Coupling phase of ``link`` in rad, in (-pi, pi]."""
        return float(np.angle(self.couplings[link]))


def _target_index(net: Network, port: str) -> int:
    """Doubled-basis index of ``'b'`` or of the conjugate ``'b*'``."""
    if port.endswith("*"):
        return net.port_index(port[:-1], conjugate=True)
    return net.port_index(port)


def solve_couplings(
    network: Network,
    links: Sequence[tuple[str, str]],
    zeros: Sequence[tuple[str, str]],
    offset: float = 0.0,
    tol: float = 1e-9,
    restarts: int = 12,
    seed: int = 0,
) -> CouplingSolution:
    """Find complex couplings of ``links`` that make the ``zeros`` elements of S vanish.

    Parameters
    ----------
    network : Network
        Starting point; its current couplings on ``links`` are the first guess.
    links : sequence of (str, str)
        Existing couplings whose magnitude and phase are free.
    zeros : sequence of (str, str)
        (out, in) port names of scattering elements to cancel; a trailing
        ``*`` names a conjugate port (doubled basis).
    offset : float
        Offset from the frame frequencies where the elements must vanish, Hz.
    tol : float
        Success threshold on the largest remaining :math:`|S|`.
    restarts : int
        Further random starting points tried if the first guess fails.
    seed : int
        Seed of the random restarts.

    Returns
    -------
    CouplingSolution
        The best solution found, with ``success`` telling whether it met ``tol``.
    """
    links = [tuple(link) for link in links]
    if not links or not zeros:
        raise ValueError("solve_couplings needs at least one link and one target element")
    idx = [(_target_index(network, o), _target_index(network, i)) for o, i in zeros]
    start = np.array([network.coupling(a, b).value for a, b in links])
    scale = max(max(m.kappa for m in network.modes), 1e-300)

    def apply(x: np.ndarray) -> Network:
        c = (x[: len(links)] + 1j * x[len(links) :]) * scale
        return network.with_couplings(dict(zip(links, c, strict=True)))

    def residual(x: np.ndarray) -> np.ndarray:
        try:
            S = apply(x).scattering(offset)
        except UnstableNetworkError:
            return np.full(2 * len(idx), 10.0)
        r = np.array([S[o, i] for o, i in idx])
        return np.concatenate([r.real, r.imag])

    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray] | None = None
    x0 = np.concatenate([start.real, start.imag]) / scale
    for attempt in range(restarts + 1):
        if attempt:
            x0 = rng.normal(scale=0.5, size=2 * len(links))
        fit = least_squares(residual, x0, xtol=1e-15, ftol=1e-15, gtol=1e-15)
        r = residual(fit.x)
        worst = float(np.max(np.hypot(r[: len(idx)], r[len(idx) :])))
        if best is None or worst < best[0]:
            best = (worst, fit.x)
        if worst < tol:
            break
    assert best is not None
    net = apply(best[1])
    couplings = {link: net.coupling(*link).value for link in links}
    return CouplingSolution(couplings, best[0], net, best[0] < tol)


def directionality_condition(
    network: Network,
    link: tuple[str, str],
    reverse: tuple[str, str],
    offset: float = 0.0,
    tol: float = 1e-9,
) -> CouplingSolution:
    """The coherent coupling on ``link`` that cancels the ``reverse`` path.

    Parameters
    ----------
    network : Network
        The network, including the dissipative path (damped modes) that the
        coherent coupling must balance.
    link : (str, str)
        The coherent coupling to tune (magnitude and phase).
    reverse : (str, str)
        (out, in) port names of the path to cancel.
    offset : float
        Offset (Hz) at which the reverse path must vanish.
    tol : float
        Success threshold on :math:`|S_{rev}|`.

    Returns
    -------
    CouplingSolution
        ``solution.g(link)`` and ``solution.phase(link)`` give the coupling.

    Examples
    --------
    For the Metelmann–Clerk isolator the answer is :math:`J = i\\Gamma/2`:

    >>> from labnr.model import isolator_reservoir
    >>> net = isolator_reservoir(kappa=1e6, gamma=1e6, kappa_aux=1e8)
    >>> sol = directionality_condition(net.set_coupling("a", "b", g=0.1e6, phase=0.0),
    ...                                ("a", "b"), ("a", "b"))
    >>> round(sol.g(("a", "b")) / 0.5e6, 6), round(sol.phase(("a", "b")) / (np.pi / 2), 6)
    (1.0, 1.0)
    """
    return solve_couplings(network, [link], [reverse], offset=offset, tol=tol)
