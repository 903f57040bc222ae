"""labnr's measurements: an S-matrix, pump sweeps, 2D pump maps, flux spectroscopy.

Each function takes a lab session (:func:`labnr.session.open_lab`), stores the
full S-matrix of every point in one QCoDeS dataset (layout:
:mod:`labnr.measure.dataset`) and returns that dataset. Common keyword
arguments:

span, points : float, int, optional
    Offset axis (default: the config's ``vna.span`` / ``vna.points``).
centres : mapping, optional
    Band centre per mode, Hz (default: the config's mode frequencies).
paths : sequence of (str, str), optional
    Only these (out, in) elements (default: all).
ports : sequence of str, optional
    Only these port modes (default: every mode with a ``vna_port``).
frequency_offset : bool
    False: one ordinary sweep for all elements (non-converting devices).
database : str or Path, optional
    QCoDeS database (default: ``config.storage.database``).
progress : bool, optional
    Progress bar on/off (default: only when stderr is a terminal).

Ctrl-C and safety: see :mod:`labnr.measure.runner`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt

from labnr.measure.acquire import MeasurementSession, port_modes
from labnr.measure.runner import flux_knob, pump_knob, run_sweep

__all__ = [
    "map_pumps",
    "measure_smatrix",
    "sweep_flux",
    "sweep_pump",
    "sweep_pump_amplitude",
    "sweep_pump_phase",
]

Values = Sequence[float] | npt.NDArray[Any]

#: Default flux-spectroscopy span, in units of the config's ``vna.span``.
FLUX_SPAN_FACTOR = 10.0


def _plan_kwargs(
    span: float | None,
    points: int | None,
    centres: Mapping[str, float] | None,
    paths: Sequence[tuple[str, str]] | None,
    ports: Sequence[str] | None,
    frequency_offset: bool,
) -> dict[str, Any]:
    return {
        "span": span,
        "points": points,
        "centres": centres,
        "paths": paths,
        "ports": ports,
        "frequency_offset": frequency_offset,
    }


def measure_smatrix(
    session: MeasurementSession,
    *,
    span: float | None = None,
    points: int | None = None,
    centres: Mapping[str, float] | None = None,
    paths: Sequence[tuple[str, str]] | None = None,
    ports: Sequence[str] | None = None,
    frequency_offset: bool = True,
    database: str | Path | None = None,
    progress: bool | None = None,
) -> Any:
    """One full S-matrix of the device's ports at the present settings, stored.

    Reflections are swept around each port mode's band centre; transmissions
    between modes that pumps connect are measured in frequency-offset mode
    with the receivers following the pumps (see :mod:`labnr.measure.plan`).
    For the arrays without storing use :func:`labnr.measure.acquire_smatrix`.

    Parameters
    ----------
    session : MeasurementSession
        Lab session.
    span, points, centres, paths, ports, frequency_offset, database, progress
        See the module docstring.

    Returns
    -------
    qcodes.dataset.DataSetProtocol
        Kind ``"measure_smatrix"``: no knobs, one point.
    """
    kwargs = _plan_kwargs(span, points, centres, paths, ports, frequency_offset)
    return run_sweep(
        session, "measure_smatrix", [], [], plan_kwargs=kwargs, database=database,
        progress=progress,
    )  # fmt: skip


def sweep_pump(
    session: MeasurementSession,
    tone: str,
    parameter: str,
    values: Values,
    *,
    kind: str | None = None,
    span: float | None = None,
    points: int | None = None,
    centres: Mapping[str, float] | None = None,
    paths: Sequence[tuple[str, str]] | None = None,
    ports: Sequence[str] | None = None,
    frequency_offset: bool = True,
    database: str | Path | None = None,
    progress: bool | None = None,
) -> Any:
    """Sweep one setting of one pump tone; the full S-matrix at every value.

    Parameters
    ----------
    session : MeasurementSession
        Lab session.
    tone : str
        Tone name.
    parameter : {"phase", "amplitude", "frequency"}
        The knob (rad, V at the instrument output, Hz).
    values : sequence of float
        Values in sweep order; all are validated before the first is set.
    kind : str, optional
        Dataset kind (default ``"sweep_pump_<parameter>"``).
    span, points, centres, paths, ports, frequency_offset, database, progress
        See the module docstring.

    Returns
    -------
    qcodes.dataset.DataSetProtocol
    """
    knob = pump_knob(session, tone, parameter)
    kwargs = _plan_kwargs(span, points, centres, paths, ports, frequency_offset)
    return run_sweep(
        session, kind or f"sweep_pump_{parameter}", [knob], [values], plan_kwargs=kwargs,
        database=database, progress=progress,
    )  # fmt: skip


def sweep_pump_phase(session: MeasurementSession, tone: str, phases: Values, **kwargs: Any) -> Any:
    """Sweep a pump tone's phase (rad); the full S-matrix at every phase.

    Parameters
    ----------
    session : MeasurementSession
        Lab session.
    tone : str
        Tone name.
    phases : sequence of float
        Phases, rad.
    **kwargs
        As :func:`sweep_pump` (span, points, centres, paths, database, progress, ...).

    Returns
    -------
    qcodes.dataset.DataSetProtocol
        Kind ``"sweep_pump_phase"``, knob ``pump_<tone>_phase``.
    """
    return sweep_pump(session, tone, "phase", phases, **kwargs)


def sweep_pump_amplitude(
    session: MeasurementSession, tone: str, amplitudes: Values, **kwargs: Any
) -> Any:
    """Sweep a pump tone's amplitude (V at the instrument output); S-matrix at every value.

    Every amplitude is checked against the tone's limit before the first is set.

    Parameters
    ----------
    session : MeasurementSession
        Lab session.
    tone : str
        Tone name.
    amplitudes : sequence of float
        Amplitudes, V.
    **kwargs
        As :func:`sweep_pump`.

    Returns
    -------
    qcodes.dataset.DataSetProtocol
        Kind ``"sweep_pump_amplitude"``, knob ``pump_<tone>_amplitude``.
    """
    return sweep_pump(session, tone, "amplitude", amplitudes, **kwargs)


def map_pumps(
    session: MeasurementSession,
    knob_a: tuple[str, str],
    values_a: Values,
    knob_b: tuple[str, str],
    values_b: Values,
    *,
    span: float | None = None,
    points: int | None = None,
    centres: Mapping[str, float] | None = None,
    paths: Sequence[tuple[str, str]] | None = None,
    ports: Sequence[str] | None = None,
    frequency_offset: bool = True,
    database: str | Path | None = None,
    progress: bool | None = None,
) -> Any:
    """2D map over two pump knobs (``knob_a`` outer, ``knob_b`` inner).

    Parameters
    ----------
    session : MeasurementSession
        Lab session.
    knob_a, knob_b : (str, str)
        ``(tone, parameter)`` with parameter ``"amplitude"``, ``"phase"`` or
        ``"frequency"``, e.g. ``("bc", "phase")``; two different knobs.
    values_a, values_b : sequence of float
        Values of each knob; ``knob_a`` is set once per row.
    span, points, centres, paths, ports, frequency_offset, database, progress
        See the module docstring.

    Returns
    -------
    qcodes.dataset.DataSetProtocol
        Kind ``"map_pumps"``, knobs ``pump_<tone_a>_<parameter_a>`` and
        ``pump_<tone_b>_<parameter_b>``.
    """
    if tuple(knob_a) == tuple(knob_b):
        raise ValueError(f"map_pumps: both axes are the same knob {tuple(knob_a)}")
    knobs = [pump_knob(session, *knob_a), pump_knob(session, *knob_b)]
    kwargs = _plan_kwargs(span, points, centres, paths, ports, frequency_offset)
    return run_sweep(
        session, "map_pumps", knobs, [values_a, values_b], plan_kwargs=kwargs,
        database=database, progress=progress,
    )  # fmt: skip


def sweep_flux(
    session: MeasurementSession,
    values: Values,
    *,
    span: float | None = None,
    points: int | None = None,
    centres: Mapping[str, float] | None = None,
    ports: Sequence[str] | None = None,
    database: str | Path | None = None,
    progress: bool | None = None,
) -> Any:
    """Flux spectroscopy: the reflection of every port mode at each flux (Phi0).

    The modes move with flux, so each reflection is swept over a wide band
    around the mode's expected frequency. The flux bias ramps between points
    at its configured rate; its output must already be on.

    Parameters
    ----------
    session : MeasurementSession
        Lab session with a flux bias.
    values : sequence of float
        Flux values, Phi0, in sweep order (all checked against the bias's
        limits before the first ramp).
    span : float, optional
        Hz; default ``FLUX_SPAN_FACTOR`` times the config's ``vna.span``.
    points, centres, ports, database, progress
        See the module docstring.

    Returns
    -------
    qcodes.dataset.DataSetProtocol
        Kind ``"sweep_flux"``, knob ``flux``, elements ``S_<m>_<m>``.
    """
    knob = flux_knob(session)
    chosen = list(port_modes(session.config)) if ports is None else list(ports)
    wide = FLUX_SPAN_FACTOR * session.config.vna.span if span is None else span
    reflections = [(m, m) for m in chosen]
    kwargs = _plan_kwargs(wide, points, centres, reflections, chosen, True)
    return run_sweep(
        session, "sweep_flux", [knob], [values], plan_kwargs=kwargs, database=database,
        progress=progress,
    )  # fmt: skip
