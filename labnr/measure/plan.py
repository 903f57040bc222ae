r"""Which frequencies the VNA sweeps and listens at: the pure planning of an S-matrix.

A frequency-converting device scatters a wave entering port mode :math:`i` at
:math:`f_i + \delta` out of port mode :math:`o` at another frequency. Every
element is measured on a common offset axis :math:`\delta \in [-s/2, s/2]`
(span :math:`s`) around the input mode's band centre :math:`f_i`: the source
sweeps :math:`f_i + \delta` and the receivers listen at

.. math:: f_\mathrm{rx} = m_{oi}\,(f_i + \delta) + c_{oi},

an affine *receiver map* (multiplier :math:`m_{oi} = \pm 1`, offset
:math:`c_{oi}`) composed along the pump graph from :math:`i` to :math:`o`:

- a **conversion** tone at :math:`f_p` between modes :math:`m_1, m_2` moves a
  signal up by :math:`f_p` when going to the higher mode, down when going to
  the lower one: :math:`f \to f \pm f_p`;
- a **gain** (two-mode squeezing) tone at :math:`f_p = f_{m_1} + f_{m_2}`
  produces the idler: :math:`f \to f_p - f` (the multiplier flips sign).

The path is the shortest one in the pump graph (breadth-first, tones in
config order); a consistent loop gives the same map on every path. Two port
modes that no pump connects scatter at the same frequency: when their band
centres are closer than the span they are measured together in one ordinary
sweep (a *plain group*, around the mean of their centres); otherwise the
receivers listen at the output mode's band, :math:`c_{oi} = f_o - f_i`
(cross-talk and leakage only).

Nothing here talks to an instrument; :mod:`labnr.measure.acquire` executes plans.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "PumpEdge",
    "ReceiverMap",
    "SMatrixPlan",
    "nominal_pump_frequency",
    "plan_smatrix",
    "pump_edges",
    "receiver_map",
]


@dataclass(frozen=True)
class PumpEdge:
    """One pump tone as an edge of the pump graph.

    Attributes
    ----------
    tone : str
        Tone name.
    modes : (str, str)
        The two modes it couples.
    kind : {"conversion", "gain"}
        Beam-splitter (frequency conversion) or two-mode squeezing.
    frequency : float
        Present tone frequency, Hz.
    """

    tone: str
    modes: tuple[str, str]
    kind: Literal["conversion", "gain"]
    frequency: float


@dataclass(frozen=True)
class ReceiverMap:
    """Receivers at ``multiplier * f_stimulus + offset``.

    Attributes
    ----------
    multiplier : int
        +1, or -1 after an odd number of gain (conjugating) processes.
    offset : float
        Hz.
    path : tuple of (str, int)
        The pump tones along the path and the coefficient of each tone's
        frequency in ``offset`` (+1, -1); empty when no pump connects the modes.
    """

    multiplier: int = 1
    offset: float = 0.0
    path: tuple[tuple[str, int], ...] = ()

    @property
    def is_identity(self) -> bool:
        """Receivers at the stimulus frequency (an ordinary sweep)."""
        return self.multiplier == 1 and self.offset == 0.0


@dataclass(frozen=True)
class SMatrixPlan:
    """Where every element of an S-matrix is measured.

    Attributes
    ----------
    ports : tuple of str
        Port modes, in VNA port order (the matrix axes).
    centres : dict
        Band centre of each port mode, Hz (members of a plain group share theirs).
    elements : tuple of (str, str)
        Measured (out, in) pairs, in acquisition order.
    maps : dict
        ``{(out, in): ReceiverMap}`` for every measured element (identity for
        reflections and plain-group elements).
    groups : tuple of tuple of str
        Port modes measured together in one ordinary sweep (each group of two
        or more shares a band centre); single ports are not listed.
    span : float
        Hz.
    points : int
        Points of the offset axis.
    """

    ports: tuple[str, ...]
    centres: dict[str, float]
    elements: tuple[tuple[str, str], ...]
    maps: dict[tuple[str, str], ReceiverMap]
    groups: tuple[tuple[str, ...], ...]
    span: float
    points: int

    def stimulus_range(self, element: tuple[str, str]) -> tuple[float, float]:
        """(start, stop) of the stimulus sweep of ``element``, Hz."""
        f = self.centres[element[1]]
        return f - self.span / 2, f + self.span / 2

    def receiver_range(self, element: tuple[str, str]) -> tuple[float, float]:
        """(lowest, highest) receiver frequency of ``element``, Hz."""
        m = self.maps[element]
        a, b = (m.multiplier * f + m.offset for f in self.stimulus_range(element))
        return min(a, b), max(a, b)


def nominal_pump_frequency(kind: str, f1: float, f2: float) -> float:
    """Tone frequency that makes a process resonant: ``|f1 - f2|`` or ``f1 + f2``.

    Parameters
    ----------
    kind : {"conversion", "gain"}
    f1, f2 : float
        Mode frequencies, Hz.
    """
    if kind == "conversion":
        return abs(f1 - f2)
    if kind == "gain":
        return f1 + f2
    raise ValueError(f"pump kind {kind!r}; allowed 'conversion' or 'gain'")


def pump_edges(config: Any, frequencies: Mapping[str, float]) -> list[PumpEdge]:
    """The pump graph of a :class:`~labnr.config.Config` with the tones' present frequencies.

    Parameters
    ----------
    config : labnr.config.Config
        Experiment config (tones, their modes and kind).
    frequencies : mapping
        ``{tone: Hz}``, the present tone frequencies.
    """
    return [
        PumpEdge(name, tuple(t.modes), t.kind, float(frequencies[name]))  # type: ignore[arg-type]
        for name, t in config.pumps.tones.items()
    ]


def _step(
    current: ReceiverMap, edge: PumpEdge, src: str, dst: str, modes: Mapping[str, float]
) -> ReceiverMap:
    """Extend ``current`` through ``edge`` from mode ``src`` to mode ``dst``."""
    s, c, path = current.multiplier, current.offset, current.path
    if edge.kind == "gain":  # idler: f -> f_p - f
        return ReceiverMap(-s, edge.frequency - c, path + ((edge.tone, 1),))
    sign = 1 if modes[dst] >= modes[src] else -1
    return ReceiverMap(s, c + sign * edge.frequency, path + ((edge.tone, sign),))


def receiver_map(
    in_mode: str,
    out_mode: str,
    modes: Mapping[str, float],
    edges: Sequence[PumpEdge],
) -> ReceiverMap | None:
    """Receiver map from ``in_mode`` to ``out_mode`` along the pump graph.

    Parameters
    ----------
    in_mode, out_mode : str
        Mode names.
    modes : mapping
        ``{mode: Hz}``: mode frequencies (they orient conversion edges: which
        mode of a pair is the higher one).
    edges : sequence of PumpEdge
        The pump graph.

    Returns
    -------
    ReceiverMap or None
        The map along the shortest path; identity for ``in_mode == out_mode``;
        None if no pump path connects the modes.
    """
    for m in (in_mode, out_mode):
        if m not in modes:
            raise KeyError(f"unknown mode {m!r}; modes are {sorted(modes)}")
    seen = {in_mode: ReceiverMap()}
    queue = deque([in_mode])
    while queue:
        src = queue.popleft()
        if src == out_mode:
            return seen[src]
        for edge in edges:
            if src not in edge.modes:
                continue
            dst = edge.modes[1] if edge.modes[0] == src else edge.modes[0]
            if dst not in seen:
                seen[dst] = _step(seen[src], edge, src, dst, modes)
                queue.append(dst)
    return None


def _plain_groups(ports: Sequence[str], plain: set[frozenset[str]]) -> list[list[str]]:
    """Greedy cliques of ports whose every pair scatters at one frequency."""
    groups: list[list[str]] = []
    for p in ports:
        for g in groups:
            if all(frozenset((p, q)) in plain for q in g):
                g.append(p)
                break
        else:
            groups.append([p])
    return groups


def plan_smatrix(
    ports: Sequence[str],
    centres: Mapping[str, float],
    modes: Mapping[str, float],
    edges: Sequence[PumpEdge],
    span: float,
    points: int,
    *,
    paths: Sequence[tuple[str, str]] | None = None,
    frequency_offset: bool = True,
) -> SMatrixPlan:
    """Plan one S-matrix of ``ports`` on a common offset axis.

    Parameters
    ----------
    ports : sequence of str
        Port modes in VNA port order.
    centres : mapping
        Band centre of each port mode, Hz.
    modes : mapping
        Frequency of every mode (orients conversion edges), Hz.
    edges : sequence of PumpEdge
        Pump graph with the tones' present frequencies.
    span : float
        Width of the offset axis, Hz (> 0).
    points : int
        Points of the offset axis (>= 1).
    paths : sequence of (str, str), optional
        Measure only these (out, in) elements (default: all).
    frequency_offset : bool
        False: measure every element in one ordinary sweep around the mean
        band centre (a non-converting device, or a benchmark of one channel).

    Returns
    -------
    SMatrixPlan
    """
    if not ports or len(set(ports)) != len(ports):
        raise ValueError(f"ports {list(ports)}: expected distinct mode names")
    if not span > 0 or points < 1:
        raise ValueError(f"span = {span!r} Hz and points = {points!r} must be > 0 and >= 1")
    missing = [p for p in ports if p not in centres]
    if missing:
        raise ValueError(f"no band centre for port mode(s) {missing}")
    wanted = [(o, i) for o in ports for i in ports] if paths is None else [tuple(p) for p in paths]
    bad = [p for p in wanted if p[0] not in ports or p[1] not in ports]
    if bad or len(set(wanted)) != len(wanted) or not wanted:
        shown = bad or list(paths or [])
        raise ValueError(f"paths {shown}: expected distinct (out, in) pairs of port modes")
    maps: dict[tuple[str, str], ReceiverMap] = {}
    plain: set[frozenset[str]] = set()
    apart: list[tuple[str, str]] = []
    for o in ports:
        for i in ports:
            if o == i:
                continue
            found = receiver_map(i, o, modes, edges) if frequency_offset else None
            if found is not None:
                maps[(o, i)] = found
            elif not frequency_offset or abs(centres[o] - centres[i]) < span:
                plain.add(frozenset((o, i)))
            else:
                apart.append((o, i))
    groups = [g for g in _plain_groups(ports, plain) if len(g) > 1]
    band = {p: float(centres[p]) for p in ports}
    for g in groups:
        mean = sum(band[p] for p in g) / len(g)
        band.update({p: mean for p in g})
    for o, i in apart:  # cross-talk: the receivers listen at the output's band
        maps[(o, i)] = ReceiverMap(1, band[o] - band[i])
    for o in ports:
        for i in ports:
            if o == i or frozenset((o, i)) in plain:
                maps[(o, i)] = ReceiverMap()
    elements = tuple(wanted)
    return SMatrixPlan(
        tuple(ports),
        band,
        elements,
        {e: maps[e] for e in elements},
        tuple(tuple(g) for g in groups),
        float(span),
        int(points),
    )
