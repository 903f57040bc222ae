r"""Ready-made networks for the devices labnr targets.

Every preset returns an ordinary :class:`~labnr.model.network.Network`, so
couplings and detunings can be changed afterwards.
"""

from __future__ import annotations

import numpy as np

from labnr.model._validate import finite_real
from labnr.model.network import Mode, Network


def _two_modes_with_aux(kappa: float, kappa_aux: float) -> Network:
    """Principal modes ``a``, ``b`` with ports and a damped auxiliary mode without one."""
    return Network(
        [Mode("a", kappa_ext=kappa), Mode("b", kappa_ext=kappa), Mode("aux", kappa_int=kappa_aux)]
    )


def circulator3(kappa: float, g: float | None = None, loop_phase: float = np.pi / 2) -> Network:
    r"""Three modes in a beam-splitter loop: the parametric (JPC-type) circulator.

    Modes ``a``, ``b``, ``c`` (each with a port, linewidth ``kappa``) are coupled
    pairwise by frequency conversion, :math:`H = g(e^{i\Phi}a^\dagger b +
    b^\dagger c + c^\dagger a) + h.c.`, so the synthetic flux through the loop
    is :math:`\Phi = \arg(g_{ab}g_{bc}g_{ca})`. With :math:`g = \kappa/2`
    and :math:`\Phi = \pi/2` the zero-offset S-matrix is a permutation: the
    device circulates a→b→c→a (Sliwa et al., PRX 5, 041020 (2015); Metelmann &
    Clerk, PRX 5, 021025 (2015), Sec. III.B, where the same three-mode loop
    appears as the isolator with its reservoir mode exposed);
    :math:`\Phi = -\pi/2` reverses the sense.

    Parameters
    ----------
    kappa : float
        Linewidth of each mode (all external), Hz.
    g : float, optional
        Coupling magnitude of each link, Hz. Default ``kappa / 2``.
    loop_phase : float
        Synthetic flux :math:`\Phi`, rad.
    """
    kappa = finite_real(kappa, "circulator3 kappa", minimum=0.0)
    g = kappa / 2 if g is None else finite_real(g, "circulator3 g", minimum=0.0)
    net = Network([Mode(n, kappa_ext=kappa) for n in "abc"])
    net.beamsplitter("a", "b", g, phase=finite_real(loop_phase, "circulator3 loop_phase"))
    net.beamsplitter("b", "c", g)
    net.beamsplitter("c", "a", g)
    return net


def isolator_reservoir(kappa: float, gamma: float, kappa_aux: float) -> Network:
    r"""Metelmann–Clerk reservoir-engineered isolator (PRX 5, 021025, Sec. II, IV.A).

    Two principal modes ``a`` and ``b`` (linewidth ``kappa``, each with a port)
    are coupled coherently, :math:`J a^\dagger b + h.c.`, and dissipatively,
    through a strongly damped auxiliary mode ``aux`` (internal loss
    ``kappa_aux``, no port) coupled to both with :math:`g`. Eliminating
    ``aux`` gives the dissipative hop :math:`\Gamma = 4g^2/\kappa_{aux}`.
    Directionality needs :math:`J = i\Gamma/2`: transmission a→b with
    :math:`S_{ba} = 4\kappa\Gamma/(\kappa+\Gamma)^2` and :math:`S_{ab} = 0` at
    zero offset; :math:`\Gamma = \kappa` also impedance-matches (no reflection).

    Parameters
    ----------
    kappa : float
        Linewidth of ``a`` and ``b``, Hz.
    gamma : float
        Engineered dissipative coupling :math:`\Gamma`, Hz.
    kappa_aux : float
        Damping of the auxiliary mode, Hz (Markovian limit: ``kappa_aux >> kappa``).
    """
    kappa = finite_real(kappa, "isolator_reservoir kappa", minimum=0.0)
    gamma = finite_real(gamma, "isolator_reservoir gamma", minimum=0.0)
    kappa_aux = finite_real(kappa_aux, "isolator_reservoir kappa_aux", minimum=0.0)
    g = np.sqrt(gamma * kappa_aux / 4)
    net = _two_modes_with_aux(kappa, kappa_aux)
    net.beamsplitter("aux", "a", g).beamsplitter("aux", "b", g)
    net.beamsplitter("a", "b", gamma / 2, phase=np.pi / 2)
    return net


def directional_amplifier(kappa: float, cooperativity: float, kappa_aux: float) -> Network:
    r"""Metelmann–Clerk phase-preserving directional amplifier (PRX 5, 021025, Sec. III.A, IV.B).

    Principal modes ``a`` and ``b`` (linewidth ``kappa``, ports) with a coherent
    non-degenerate parametric interaction :math:`\lambda a^\dagger b^\dagger +
    h.c.`, balanced against the dissipative amplification mediated by a damped
    auxiliary mode ``aux`` (``kappa_aux``, no port) that converts with ``a``
    (:math:`g_1 aux^\dagger a`) and squeezes with ``b`` (:math:`g_2 aux^\dagger
    b^\dagger`). The preset is impedance matched, :math:`4g_1^2/\kappa_{aux} =
    \kappa`, with :math:`4g_2^2/\kappa_{aux} = (2C-1)\kappa` and the
    directionality condition :math:`\lambda = 2 i g_1 g_2/\kappa_{aux}`. At zero
    offset, in the basis :math:`(a, b^\dagger)`, :math:`|S| = [[0, 0],
    [\sqrt{G}, \sqrt{G+1}]]` with :math:`G = (2C-1)/(C-1)^2`.

    Parameters
    ----------
    kappa : float
        Linewidth of ``a`` and ``b``, Hz.
    cooperativity : float
        :math:`C`, with :math:`1/2 \le C < 1` (gain diverges as :math:`C\to1`).
    kappa_aux : float
        Damping of the auxiliary mode, Hz.
    """
    kappa = finite_real(kappa, "directional_amplifier kappa", minimum=0.0)
    kappa_aux = finite_real(kappa_aux, "directional_amplifier kappa_aux", minimum=0.0)
    C = finite_real(cooperativity, "directional_amplifier cooperativity")
    if not 0.5 <= C < 1.0:
        raise ValueError(
            f"directional_amplifier cooperativity={cooperativity!r} is not allowed; "
            "it must satisfy 0.5 <= C < 1 (C >= 1 is past the instability)"
        )
    g1 = np.sqrt(kappa * kappa_aux / 4)
    g2 = np.sqrt((2 * C - 1) * kappa * kappa_aux / 4)
    net = _two_modes_with_aux(kappa, kappa_aux)
    net.beamsplitter("aux", "a", g1).squeezing("aux", "b", g2)
    net.squeezing("a", "b", 2 * g1 * g2 / kappa_aux, phase=np.pi / 2)
    return net


def optomechanical_circulator(
    kappa: float = 2.0e6,
    gamma_m: float = 100.0,
    cooperativity: float = 2.0,
    mech_detuning: float | None = None,
    loop_phase: float | None = None,
) -> Network:
    r"""Two microwave modes, two mechanical modes, four beam-splitter links.

    The Bernier/Barzanjeh-type electromechanical isolator–circulator (Bernier
    et al., Nat. Commun. 8, 604 (2017); Barzanjeh et al., Nat. Commun. 8, 953
    (2017)): microwave modes ``a1`` and ``a2`` (ports, linewidth ``kappa``)
    each couple to mechanical modes ``m1`` and ``m2`` (intrinsic damping
    :math:`\gamma_m`, no port) through red-sideband pumps, with
    :math:`g = \sqrt{C\gamma_m\kappa/4}` on every link (cooperativity
    :math:`C = 4g^2/(\kappa\gamma_m)` per link). The pumps are detuned so that
    ``m1`` and ``m2`` sit at :math:`\pm\delta` in the rotating frame. The
    paths a1→m1→a2 and a1→m2→a2 interfere with the loop phase
    :math:`\Phi = \phi_{11} - \phi_{21} - \phi_{12} + \phi_{22}`, carried here by
    the ``a2``–``m2`` link. The mechanical baths play the role of the
    engineered reservoir: eliminating the (broad) microwave modes at zero
    offset, the reverse path a2→a1 vanishes when

    .. math:: \tan(\Phi/2) = -\gamma_m / (2\delta),

    which transmits a1→a2 and blocks a2→a1; the opposite flux
    :math:`-\Phi` reverses the sense. With :math:`C = 2` and :math:`\delta = \gamma_m` the
    forward transmission is about 0.78 (−1.1 dB). The two mechanical baths
    (channels ``m1.int``, ``m2.int``) are the circulator's third and fourth
    ports.

    Parameters
    ----------
    kappa : float
        Microwave linewidth (all external), Hz.
    gamma_m : float
        Intrinsic mechanical damping, Hz.
    cooperativity : float
        Single-link cooperativity :math:`C`.
    mech_detuning : float, optional
        :math:`\delta`, Hz. Default :math:`\gamma_m`.
    loop_phase : float, optional
        :math:`\Phi`, rad. Default: the isolation condition above.
    """
    kappa = finite_real(kappa, "optomechanical_circulator kappa", minimum=0.0)
    gamma_m = finite_real(gamma_m, "optomechanical_circulator gamma_m", minimum=0.0)
    C = finite_real(cooperativity, "optomechanical_circulator cooperativity", minimum=0.0)
    g = float(np.sqrt(C * gamma_m * kappa / 4))
    delta = gamma_m if mech_detuning is None else finite_real(mech_detuning, "mech_detuning")
    if loop_phase is None:
        loop_phase = -2 * float(np.arctan2(gamma_m, 2 * delta))
    net = Network(
        [
            Mode("a1", kappa_ext=kappa),
            Mode("a2", kappa_ext=kappa),
            Mode("m1", kappa_int=gamma_m, detuning=+delta),
            Mode("m2", kappa_int=gamma_m, detuning=-delta),
        ]
    )
    net.beamsplitter("a1", "m1", g).beamsplitter("a2", "m1", g)
    net.beamsplitter("a1", "m2", g)
    net.beamsplitter("a2", "m2", g, phase=finite_real(loop_phase, "loop_phase"))
    return net
