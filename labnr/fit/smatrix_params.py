r"""Parametrisation of the global coupled-mode S-matrix model (see :mod:`labnr.fit.smatrix`).

What the fit parameters mean
----------------------------
Every mode ``m`` has a detuning :math:`d_m` (Hz, the mode frequency minus its
rotating frame — for a port mode, minus its band centre), a port coupling
:math:`\kappa_{{\rm ext},m}` and an internal loss :math:`\kappa_{{\rm int},m}`
(FWHM, Hz). With Stark coefficients :math:`\chi_{m,t}` (Hz/V²) the detuning at
pump setting :math:`k` is

.. math:: d_{m,k} = d_m + \sum_t \chi_{m,t} A_{t,k}^2 .

A link :math:`(a, b)` is the beam splitter :math:`H = c\,a^\dagger b + {\rm h.c.}`
with :math:`c_k = g_k e^{i\phi_k}`, either

- *coupling mode* (no tone): :math:`g`, :math:`\phi` fitted directly (one pair per
  pump setting when there are several settings; the detunings are then shared
  by all settings, so settings of different pump power belong in pump mode
  with Stark coefficients), or
- *pump mode* (link driven by tone ``t``): :math:`g_k = \eta_t A_{t,k}` and
  :math:`\phi_k = \varphi_{t,k} + \theta_t` with the tone's known amplitude
  :math:`A_{t,k}` (V) and phase :math:`\varphi_{t,k}` (rad) at each setting; the
  fit gives :math:`\eta_t` (Hz/V) and the line phase :math:`\theta_t`.

Identifiability (gauge)
-----------------------
Port-to-port data cannot see a rotation :math:`a_m \to e^{i\vartheta_m} a_m` of
any mode: it moves link phases by :math:`\vartheta_a - \vartheta_b` and port
elements by :math:`\vartheta_o - \vartheta_i`, which the per-port line phases
absorb. Only the phase *around a closed loop* of links (the synthetic flux) is
physical. We therefore take a spanning tree of the link graph (links in the
order given; a link that closes a loop with earlier ones is a *chord*) and
hold the phases of the tree links fixed — at the user's guess, default 0 — at
the first pump setting (coupling mode) or for all settings (pump mode,
:math:`\theta_t`), and fit the phases of the chords. Each chord closes one
independent loop; the derived parameter ``loop_<chord>`` is the signed sum of
the link phases around it. For the triangle ``(a,b), (b,c), (a,c)`` the chord
is ``(a,c)`` and :math:`\Phi = \phi_{ab} + \phi_{bc} - \phi_{ac}`, the flux of
the loop a -> b -> c -> a (in pump mode the same sum of the line phases
:math:`\theta_t`: the loop phase offset, so that
:math:`\Phi = \varphi_{ab} + \varphi_{bc} - \varphi_{ca} + \Phi_0`).
The fitted line phases of the ports therefore include this gauge choice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import lmfit
import numpy as np

from labnr.model import Mode

#: Kinds of per-setting physical quantities the parameters map onto.
QUANTITIES = ("det", "kint", "kext", "g", "phi")


@dataclass(frozen=True)
class FitMode:
    """A mode of the model with the starting values of its parameters.

    Parameters
    ----------
    name : str
        Mode name; a mode whose name is one of the data's ports has a port.
    kappa_ext : float
        Guess of the port coupling (FWHM), Hz.
    kappa_int : float
        Guess of the internal loss, Hz. For a mode without a port in the data
        (a mechanical mode, an unmeasured port) ``<name>_kappa_int`` is its
        whole linewidth: loss through an unmeasured port looks like internal loss.
    detuning : float
        Guess of the mode frequency minus its band centre (frame), Hz.
    stark : mapping, optional
        ``{tone: chi}``: fit Stark coefficients (Hz per V² of the tone's
        amplitude), starting at ``chi``. None: no Stark shift.
    """

    name: str
    kappa_ext: float
    kappa_int: float = 0.0
    detuning: float = 0.0
    stark: Mapping[str, float] | None = None

    @classmethod
    def from_mode(cls, mode: Mode, stark: Mapping[str, float] | None = None) -> FitMode:
        """Starting values from a :class:`labnr.model.Mode`."""
        return cls(mode.name, mode.kappa_ext, mode.kappa_int, mode.detuning, stark)


@dataclass(frozen=True)
class FitLink:
    r"""A beam-splitter link :math:`c\,a^\dagger b + {\rm h.c.}` with its starting values.

    Parameters
    ----------
    a, b : str
        Mode names (orientation: the coupling multiplies :math:`a^\dagger b`).
        For a pumped conversion link put the lower-frequency mode first: the
        tone's phase then enters as :math:`+\varphi_t`.
    g : float
        Coupling-mode guess of :math:`|c|`, Hz.
    phase : float
        Coupling-mode guess (or fixed value, for a spanning-tree link) of
        :math:`\arg c`, rad.
    tone : str, optional
        Pump mode: the tone driving the link.
    eta : float
        Pump-mode guess of the coupling per volt of tone amplitude, Hz/V.
    line_phase : float
        Pump-mode guess (or fixed value) of the line phase :math:`\theta_t`, rad.
    """

    a: str
    b: str
    g: float = 0.0
    phase: float = 0.0
    tone: str | None = None
    eta: float = 0.0
    line_phase: float = 0.0

    @property
    def name(self) -> str:
        """Parameter-name stem: the tone, or ``<a>_<b>``."""
        return self.tone if self.tone is not None else f"{self.a}_{self.b}"


@dataclass
class Term:
    """One parameter's linear contribution to a per-setting quantity."""

    param: str
    kind: str  # one of QUANTITIES
    index: int  # mode or link index
    coef: np.ndarray  # (K,)


@dataclass
class Parametrisation:
    """Parameters and the affine map from them to per-setting physical quantities.

    Attributes
    ----------
    modes, links : list
        The model's modes and links (mode order = matrix order).
    ports : list of str
        Data ports (port modes), in data order.
    settings : int
        Number of pump settings K.
    params : lmfit.Parameters
        Physics parameters with hints and bounds (line parameters are added by
        :class:`~labnr.fit.smatrix_model.SMatrixModel`).
    const : dict
        ``{kind: (K, n) array}``: the constant part of each quantity.
    terms : list of Term
        The linear part.
    loops : dict
        ``{chord link name: [(link index, sign), ...]}`` the cycle each chord closes.
    """

    modes: list[FitMode]
    links: list[FitLink]
    ports: list[str]
    settings: int
    params: lmfit.Parameters
    const: dict[str, np.ndarray]
    terms: list[Term] = field(default_factory=list)
    loops: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def quantities(self, values: Mapping[str, float]) -> dict[str, np.ndarray]:
        """Per-setting quantities ``{kind: (K, n)}`` at parameter ``values``."""
        q = {k: v.copy() for k, v in self.const.items()}
        for t in self.terms:
            q[t.kind][:, t.index] += t.coef * values[t.param]
        return q


def spanning_tree(names: Sequence[str], links: Sequence[FitLink]) -> tuple[list[int], dict]:
    """Spanning forest of the link graph, links taken in the order given (Kruskal).

    Returns
    -------
    chords : list of int
        Indices of the links that close a loop with earlier links.
    adjacency : dict
        ``{mode: [(neighbour, link index), ...]}`` along the tree links.
    """
    root = {n: n for n in names}

    def find(x: str) -> str:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    chords: list[int] = []
    tree: dict[str, list[tuple[str, int]]] = {n: [] for n in names}
    for j, lk in enumerate(links):
        ra, rb = find(lk.a), find(lk.b)
        if ra == rb:
            chords.append(j)
            continue
        root[ra] = rb
        tree[lk.a].append((lk.b, j))
        tree[lk.b].append((lk.a, j))
    return chords, tree


def loop_of(chord: int, tree: dict, links: Sequence[FitLink]) -> list[tuple[int, int]]:
    r"""The loop closed by ``chord``, as ``[(link index, sign)]``: :math:`\Phi = \sum s_j\phi_j`.

    The loop runs from the chord's mode ``a`` through the tree to its mode ``b``
    and back to ``a`` through the chord; a hop :math:`x \to y` contributes
    :math:`\arg` of the coefficient of :math:`x^\dagger y` (``+phi`` on a link
    ``(x, y)``, ``-phi`` on ``(y, x)``). For the triangle ``(a,b), (b,c), (a,c)``
    the chord is ``(a,c)`` and :math:`\Phi = \phi_{ab} + \phi_{bc} - \phi_{ac}`,
    the flux of the loop a -> b -> c -> a.
    """
    lk = links[chord]
    prev: dict[str, tuple[str, int] | None] = {lk.a: None}
    queue = deque([lk.a])
    while queue:
        m = queue.popleft()
        for other, j in tree[m]:
            if other not in prev:
                prev[other] = (m, j)
                queue.append(other)
    cycle = [(chord, -1)]
    node = lk.b
    while prev[node] is not None:
        up, j = prev[node]  # hop up -> node
        cycle.append((j, +1 if links[j].a == up else -1))
        node = up
    return cycle


def _add(
    params: lmfit.Parameters,
    name: str,
    value: float,
    vary: bool = True,
    minimum: float = -np.inf,
    maximum: float = np.inf,
) -> None:
    value = float(np.clip(value, minimum, maximum))
    params.add(name, value=value, vary=vary, min=minimum, max=maximum)


def build(
    modes: Sequence[FitMode],
    links: Sequence[FitLink],
    ports: Sequence[str],
    amplitudes: Mapping[str, np.ndarray],
    phases: Mapping[str, np.ndarray],
    settings: int,
    detuning_range: float,
) -> Parametrisation:
    """Physics parameters (with bounds) and their map onto per-setting quantities.

    Parameters
    ----------
    modes, links : sequences
        Model structure and starting values.
    ports : sequence of str
        Data ports; each must be a mode.
    amplitudes, phases : mapping
        ``{tone: (K,) array}`` known tone amplitudes (V) and phases (rad).
    settings : int
        Number of pump settings K.
    detuning_range : float
        Half-width of the allowed detunings around their guesses, Hz.
    """
    names = [m.name for m in modes]
    _check_structure(names, links, ports, amplitudes, modes)
    K = settings
    ones = np.ones(K)
    p = lmfit.Parameters()
    n, nl = len(modes), len(links)
    const = {k: np.zeros((K, nl if k in ("g", "phi") else n)) for k in QUANTITIES}
    terms: list[Term] = []
    kappa_scale = max(m.kappa_ext + m.kappa_int for m in modes)
    for i, m in enumerate(modes):
        has_port = m.name in ports
        kappa = max(m.kappa_ext + m.kappa_int, 1e-6 * kappa_scale)
        if not has_port:  # its port coupling (if any) is a loss like any other: in kappa_int
            m = FitMode(m.name, 0.0, m.kappa_ext + m.kappa_int, m.detuning, m.stark)
        half = detuning_range + 2 * kappa
        _add(
            p,
            f"{m.name}_detuning",
            m.detuning,
            minimum=m.detuning - half,
            maximum=m.detuning + half,
        )
        terms.append(Term(f"{m.name}_detuning", "det", i, ones))
        if has_port:
            _add(p, f"{m.name}_kappa_ext", m.kappa_ext, minimum=1e-3 * kappa, maximum=20 * kappa)
            terms.append(Term(f"{m.name}_kappa_ext", "kext", i, ones))
        # with a port: below 0 allowed (down to -kappa/2) so that a lossless mode is not biased
        # by a bound (fit_smatrix warns when it is negative beyond its error bar); without a
        # port it is the whole linewidth and must stay positive
        lowest = -0.5 * kappa if has_port else 1e-3 * kappa
        _add(p, f"{m.name}_kappa_int", m.kappa_int, minimum=lowest, maximum=20 * kappa)
        terms.append(Term(f"{m.name}_kappa_int", "kint", i, ones))
        for tone, chi in (m.stark or {}).items():
            name = f"{m.name}_stark_{tone}"
            _add(p, name, chi)
            terms.append(Term(name, "det", i, np.asarray(amplitudes[tone], float) ** 2))
    chords, tree = spanning_tree(names, links)
    for j, lk in enumerate(links):
        is_tree = j not in chords
        if lk.tone is None:
            _coupling_params(p, terms, const, lk, j, K, is_tree, kappa_scale)
        else:
            amp = np.asarray(amplitudes[lk.tone], float)
            _add(p, f"eta_{lk.tone}", lk.eta, minimum=0.0)
            terms.append(Term(f"eta_{lk.tone}", "g", j, amp))
            _add(
                p,
                f"theta_{lk.tone}",
                _wrap(lk.line_phase),
                vary=not is_tree,
                minimum=-4 * np.pi,
                maximum=4 * np.pi,
            )
            terms.append(Term(f"theta_{lk.tone}", "phi", j, ones))
            const["phi"][:, j] = np.asarray(phases[lk.tone], float)
    loops = {links[c].name: loop_of(c, tree, links) for c in chords}
    par = Parametrisation(list(modes), list(links), list(ports), K, p, const, terms, loops)
    _add_loop_expressions(par)
    return par


def _coupling_params(
    p: lmfit.Parameters,
    terms: list[Term],
    const: dict,
    lk: FitLink,
    j: int,
    K: int,
    is_tree: bool,
    kappa_scale: float,
) -> None:
    for k in range(K):
        sfx = f"_s{k}" if K > 1 else ""
        onehot = np.zeros(K)
        onehot[k] = 1.0
        _add(p, f"g_{lk.name}{sfx}", lk.g, minimum=0.0, maximum=20 * kappa_scale)
        terms.append(Term(f"g_{lk.name}{sfx}", "g", j, onehot))
        fixed = is_tree and k == 0
        _add(
            p,
            f"phase_{lk.name}{sfx}",
            _wrap(lk.phase),
            vary=not fixed,
            minimum=-4 * np.pi,
            maximum=4 * np.pi,
        )
        terms.append(Term(f"phase_{lk.name}{sfx}", "phi", j, onehot))


def _add_loop_expressions(par: Parametrisation) -> None:
    """Derived ``loop_<chord>`` parameters: the signed phase sum around each loop."""
    for chord, cycle in par.loops.items():
        for k in range(par.settings if _coupling(par, cycle) else 1):
            pieces = []
            for j, s in cycle:
                lk = par.links[j]
                if lk.tone is not None:
                    pname = f"theta_{lk.tone}"
                else:
                    pname = f"phase_{lk.name}" + (f"_s{k}" if par.settings > 1 else "")
                pieces.append(("+ " if s > 0 else "- ") + pname)
            sfx = f"_s{k}" if _coupling(par, cycle) and par.settings > 1 else ""
            par.params.add(f"loop_{chord}{sfx}", expr=" ".join(pieces).lstrip("+ "))


def _coupling(par: Parametrisation, cycle: list[tuple[int, int]]) -> bool:
    return any(par.links[j].tone is None for j, _ in cycle)


def _wrap(phi: float) -> float:
    return float(np.angle(np.exp(1j * phi)))


def _check_structure(
    names: list[str],
    links: Sequence[FitLink],
    ports: Sequence[str],
    amplitudes: Mapping[str, np.ndarray],
    modes: Sequence[FitMode],
) -> None:
    if len(set(names)) != len(names):
        raise ValueError(f"mode names {names} are not unique")
    missing = [q for q in ports if q not in names]
    if missing:
        raise ValueError(f"data port(s) {missing} are not modes of the model (modes: {names})")
    seen: set[frozenset[str]] = set()
    for lk in links:
        if lk.a not in names or lk.b not in names or lk.a == lk.b:
            raise ValueError(f"link {lk.a}-{lk.b}: expected two different modes of {names}")
        if frozenset((lk.a, lk.b)) in seen:
            raise ValueError(f"link {lk.a}-{lk.b} is given twice")
        seen.add(frozenset((lk.a, lk.b)))
        if lk.tone is not None and lk.tone not in amplitudes:
            raise ValueError(
                f"link {lk.a}-{lk.b} is driven by tone {lk.tone!r} but the data give no "
                f"amplitude/phase for it (tones: {sorted(amplitudes)})"
            )
    for m in modes:
        for tone in m.stark or {}:
            if tone not in amplitudes:
                raise ValueError(
                    f"mode {m.name!r} has a Stark coefficient for tone {tone!r} but the data "
                    f"give no amplitude for it (tones: {sorted(amplitudes)})"
                )
