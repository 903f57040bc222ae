"""S-matrix acquisition: plan from the config and the pumps, execute on the VNA driver.

:func:`acquire_smatrix` returns arrays and stores nothing (calibration and the
lock use it); :func:`labnr.measure.measure_smatrix` stores the same in a
QCoDeS dataset. Both work on anything shaped like a :class:`MeasurementSession`
(``labnr.session.open_lab`` returns one).

Execution of a :class:`~labnr.measure.plan.SMatrixPlan`: the elements of a
plain group (ports sharing one band, no conversion between them) come from
one ordinary sweep of the driver's sweep channel (``vna.sweep``); every other
element, reflections included, is one :meth:`transmission_offset` acquisition
of the driver's offset channel (frequency offset on when the receiver map is
not the identity). Averaging, IF bandwidth and port powers are the sweep
channel's (``vna.if_bandwidth``, ``vna.averages``, ``vna.port<n>.power``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from labnr.measure.plan import SMatrixPlan, plan_smatrix, pump_edges

__all__ = [
    "MeasurementSession",
    "SMatrixMeta",
    "acquire_smatrix",
    "execute_plan",
    "make_plan",
    "port_modes",
]

log = logging.getLogger(__name__)


class MeasurementSession(Protocol):
    """What the measurement layer needs from a lab session.

    Attributes
    ----------
    config : labnr.config.Config
        The experiment config.
    station : qcodes.Station
        Station holding every instrument (its snapshot goes into datasets).
    vna : KeysightPNAXBase
        The network analyser driver.
    pump : MultiTonePump or None
        The pump (tones ``pump.tone(name)``), None without pumps.
    flux : FluxBias or None
        The flux bias, None without one.
    """

    config: Any
    station: Any
    vna: Any
    pump: Any
    flux: Any


@dataclass(frozen=True)
class SMatrixMeta:
    """What an acquired S-matrix is (returned with the arrays by :func:`acquire_smatrix`).

    Attributes
    ----------
    plan : SMatrixPlan
        Band centres, receiver maps and the measured elements.
    port_numbers : dict
        VNA port of each port mode.
    pump_frequencies : dict
        Tone frequencies when the plan was made, Hz.
    """

    plan: SMatrixPlan
    port_numbers: dict[str, int]
    pump_frequencies: dict[str, float]

    @property
    def ports(self) -> tuple[str, ...]:
        """Port modes in port order (the matrix axes)."""
        return self.plan.ports

    @property
    def band_centres(self) -> dict[str, float]:
        """``{mode: Hz}``."""
        return dict(self.plan.centres)

    @property
    def receiver_offsets(self) -> dict[str, float]:
        """``{"<out>,<in>": Hz}`` for every measured element."""
        return {f"{o},{i}": m.offset for (o, i), m in self.plan.maps.items()}

    @property
    def receiver_multipliers(self) -> dict[str, int]:
        """``{"<out>,<in>": +1 or -1}`` for every measured element."""
        return {f"{o},{i}": m.multiplier for (o, i), m in self.plan.maps.items()}

    def as_json(self) -> dict[str, str]:
        """The metadata entries of a labnr dataset (JSON strings) describing this plan."""
        paths = {f"{o},{i}": [list(t) for t in m.path] for (o, i), m in self.plan.maps.items()}
        return {
            "labnr_ports": json.dumps(list(self.ports)),
            "labnr_band_centres": json.dumps(self.band_centres),
            "labnr_receiver_offsets": json.dumps(self.receiver_offsets),
            "labnr_receiver_multipliers": json.dumps(self.receiver_multipliers),
            "labnr_conversion_paths": json.dumps(paths),
            "labnr_span": json.dumps(self.plan.span),
        }


def port_modes(config: Any) -> dict[str, int]:
    """``{mode: VNA port}`` of the config's modes that have a port, in port order."""
    ported = [(m.vna_port, name) for name, m in config.modes.items() if m.vna_port is not None]
    return {name: port for port, name in sorted(ported)}


def pump_frequencies(pump: Any) -> dict[str, float]:
    """Present tone frequencies (the driver's cached read-back), Hz."""
    if pump is None:
        return {}
    return {t.short_name: float(t.frequency.cache.get()) for t in pump}


def make_plan(
    session: MeasurementSession,
    *,
    span: float | None = None,
    points: int | None = None,
    centres: Mapping[str, float] | None = None,
    paths: Sequence[tuple[str, str]] | None = None,
    ports: Sequence[str] | None = None,
    frequency_offset: bool = True,
    frequencies: Mapping[str, float] | None = None,
) -> SMatrixMeta:
    """Plan an S-matrix from the session's config and the pumps' present frequencies.

    Parameters
    ----------
    session : MeasurementSession
        The lab session.
    span : float, optional
        Offset axis width, Hz (default ``config.vna.span``).
    points : int, optional
        Offset axis points (default ``config.vna.points``).
    centres : mapping, optional
        Band centre per mode, Hz (default: the config's mode frequencies;
        calibration passes fitted ones). Modes not given keep the default.
    paths : sequence of (str, str), optional
        (out, in) elements to measure (default: all).
    ports : sequence of str, optional
        Port modes to include (default: every mode with a ``vna_port``).
    frequency_offset : bool
        False: one ordinary sweep for all elements (see :func:`plan_smatrix`).
    frequencies : mapping, optional
        Tone frequencies to plan with instead of the present ones, Hz (to
        check a planned sweep of a pump frequency before it starts).

    Returns
    -------
    SMatrixMeta
    """
    cfg = session.config
    numbers = port_modes(cfg)
    chosen = list(numbers) if ports is None else list(ports)
    unknown = [p for p in chosen if p not in numbers]
    if unknown:
        raise ValueError(f"ports {unknown}: not modes with a vna_port; those are {list(numbers)}")
    modes = {name: m.frequency for name, m in cfg.modes.items()}
    given = dict(centres or {})
    bad = sorted(set(given) - set(modes))
    if bad:
        raise ValueError(f"centres names unknown mode(s) {bad}; modes are {sorted(modes)}")
    band = {p: float(given.get(p, modes[p])) for p in chosen}
    freqs = pump_frequencies(session.pump) | dict(frequencies or {})
    edges = pump_edges(cfg, freqs) if freqs else []
    plan = plan_smatrix(
        chosen,
        band,
        modes,
        edges,
        float(cfg.vna.span if span is None else span),
        int(cfg.vna.points if points is None else points),
        paths=paths,
        frequency_offset=frequency_offset,
    )
    check_plan(session.vna, plan)
    return SMatrixMeta(plan, {p: numbers[p] for p in chosen}, freqs)


def check_plan(vna: Any, plan: SMatrixPlan) -> None:
    """Refuse a plan whose stimulus or receiver leaves the VNA's frequency range."""
    low, high = vna.limits.min_frequency, vna.limits.max_frequency
    for element in plan.elements:
        for what, (a, b) in (
            ("stimulus", plan.stimulus_range(element)),
            ("receiver", plan.receiver_range(element)),
        ):
            if a < low or b > high:
                raise ValueError(
                    f"S_{element[0]}_{element[1]}: {what} {a:.9g}..{b:.9g} Hz leaves the range "
                    f"{low:g}..{high:g} Hz of {vna.name!r}"
                )


def _set_sweep_range(vna: Any, start: float, stop: float, points: int) -> None:
    """Put the sweep channel on [start, stop] with ``points`` (only what changed is sent)."""
    if vna.points.cache.get() != points:
        vna.points(points)
    if vna.start.cache.get() == start and vna.stop.cache.get() == stop:
        return
    if start > vna.stop.cache.get():  # keep start <= stop at every step
        vna.stop(stop)
        vna.start(start)
    else:
        vna.start(start)
        vna.stop(stop)


def execute_plan(vna: Any, meta: SMatrixMeta) -> dict[tuple[str, str], npt.NDArray[np.complex128]]:
    """Acquire every element of a plan.

    Parameters
    ----------
    vna : KeysightPNAXBase
        The network analyser driver.
    meta : SMatrixMeta
        The plan and the port numbers.

    Returns
    -------
    dict
        ``{(out, in): complex array (points,)}`` in ``plan.elements`` order.
    """
    plan, num = meta.plan, meta.port_numbers
    wanted = set(plan.elements)
    out: dict[tuple[str, str], npt.NDArray[np.complex128]] = {}
    for group in plan.groups:
        pairs = [(o, i) for o in group for i in group if (o, i) in wanted]
        if not pairs:
            continue
        start, stop = plan.stimulus_range(pairs[0])
        _set_sweep_range(vna, start, stop, plan.points)
        _, data = vna.sweep([(num[o], num[i]) for o, i in pairs])
        for k, pair in enumerate(pairs):
            out[pair] = data[:, k]
    for element in plan.elements:
        if element in out:
            continue
        o, i = element
        start, stop = plan.stimulus_range(element)
        m = plan.maps[element]
        res = vna.transmission_offset(
            num[o], num[i], start, stop, plan.points, m.offset, multiplier=float(m.multiplier)
        )
        out[element] = res.data
    return {e: out[e] for e in plan.elements}


def offset_axis(plan: SMatrixPlan) -> npt.NDArray[np.float64]:
    """The common offset axis δ of a plan, Hz."""
    return np.linspace(-plan.span / 2, plan.span / 2, plan.points)


def acquire_smatrix(
    session: MeasurementSession,
    *,
    span: float | None = None,
    points: int | None = None,
    centres: Mapping[str, float] | None = None,
    paths: Sequence[tuple[str, str]] | None = None,
    ports: Sequence[str] | None = None,
    frequency_offset: bool = True,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.complex128], SMatrixMeta]:
    """One S-matrix at the present settings, not stored.

    Parameters
    ----------
    session : MeasurementSession
        The lab session.
    span, points, centres, paths, ports, frequency_offset
        See :func:`make_plan`.

    Returns
    -------
    delta : numpy.ndarray
        Offset from each input mode's band centre, Hz, shape (points,).
    S : numpy.ndarray
        Complex, shape (points, nout, nin) over ``meta.ports`` (``S[:, o, i]``:
        out ``ports[o]``, in ``ports[i]``); NaN for elements not measured.
    meta : SMatrixMeta
        Band centres, receiver offsets and the plan.
    """
    meta = make_plan(
        session, span=span, points=points, centres=centres, paths=paths, ports=ports,
        frequency_offset=frequency_offset,
    )  # fmt: skip
    data = execute_plan(session.vna, meta)
    n = len(meta.ports)
    S = np.full((meta.plan.points, n, n), np.nan + 0j, dtype=np.complex128)
    index = {p: k for k, p in enumerate(meta.ports)}
    for (o, i), trace in data.items():
        S[:, index[o], index[i]] = trace
    return offset_axis(meta.plan), S, meta
