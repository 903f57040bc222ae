"""The sweep loop shared by every labnr measurement: knobs, checks, storage, Ctrl-C.

One call of :func:`run_sweep` is one QCoDeS dataset. Before the first point
every requested knob value is checked with the instruments' own validators
(nothing is sent), and the S-matrix plan of every point (receiver and
stimulus frequencies) against the VNA's range. Each point then sets the knobs
that changed, acquires the whole S-matrix and stores it with one
``add_result``: a point is stored completely or not at all.

Ctrl-C: a first Ctrl-C lets the point being measured finish and be stored
(:class:`~labnr.measure.progress.FinishPoint`); a second one, or a
``KeyboardInterrupt`` raised from an instrument call, abandons it. Either
way the dataset is completed with every stored point, ``labnr_status`` is
``"interrupted"``, the pump outputs are switched off, the flux is left where
it is, and ``KeyboardInterrupt`` is re-raised.

Any other exception ends the run the same way (the point being measured is
abandoned, every stored point kept, the dataset completed, the lab put in
:func:`labnr.safety.safe_state`) and is re-raised; the drivers have already
retried transient instrument faults, so what arrives here is persistent
(:class:`~labnr.drivers.resilience.InstrumentFault` names the instrument and
the fault). ``labnr_outcome`` says how the run ended: ``"completed"``,
``"interrupted (Ctrl-C)"``, ``"terminated (SIGTERM)"`` or ``"stopped: <error>"``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labnr.measure.acquire import (
    MeasurementSession,
    SMatrixMeta,
    execute_plan,
    make_plan,
    offset_axis,
    pump_frequencies,
)
from labnr.measure.dataset import (
    EXPORT_KEY,
    FREQUENCY,
    Knob,
    element_name,
    metadata,
    new_measurement,
)
from labnr.measure.progress import FinishPoint, progress_bar
from labnr.safety import InterruptHold, Terminated
from labnr.safety import safe_state as lab_safe_state

__all__ = [
    "KNOB_UNITS",
    "export_run",
    "export_wanted",
    "flux_knob",
    "pump_knob",
    "run_sweep",
    "safe_state",
]

log = logging.getLogger(__name__)

#: Unit of each pump-tone knob.
KNOB_UNITS = {"phase": "rad", "amplitude": "V", "frequency": "Hz"}


def pump_knob(session: MeasurementSession, tone: str, parameter: str) -> Knob:
    """The knob ``pump_<tone>_<parameter>`` (phase, amplitude or frequency of a tone).

    Parameters
    ----------
    session : MeasurementSession
        Lab session with a pump.
    tone : str
        Tone name (``config.pumps.tones``).
    parameter : {"phase", "amplitude", "frequency"}
        Which setting.
    """
    if parameter not in KNOB_UNITS:
        raise ValueError(f"pump knob {parameter!r}; allowed {sorted(KNOB_UNITS)}")
    if session.pump is None:
        raise ValueError(f"pump knob {tone}.{parameter}: this session has no pump")
    param = session.pump.tone(tone).parameters[parameter]
    return Knob(
        f"pump_{tone}_{parameter}",
        f"pump {tone} {parameter}",
        KNOB_UNITS[parameter],
        param.set,
        param.validate,
        tone,
        parameter,
    )


def flux_knob(session: MeasurementSession) -> Knob:
    """The knob ``flux`` (Phi0) of the session's flux bias (it ramps; output must be on)."""
    flux = session.flux
    if flux is None:
        raise ValueError("flux knob: this session has no flux bias (config instruments.flux)")
    if not flux.output():
        raise RuntimeError(
            f"flux knob: the output of {flux.name!r} is off; switch it on deliberately "
            f"({flux.name}.output(True) switches on at 0 A) before sweeping the flux"
        )
    return Knob("flux", "flux", "Phi0", flux.flux.set, flux.flux.validate, None, "flux")


def _check_values(kind: str, knobs: Sequence[Knob], axes: Sequence[Sequence[float]]) -> None:
    """Validate every requested value before anything is set; name the first bad one."""
    if len(knobs) != len(axes):
        raise ValueError(f"{kind}: {len(knobs)} knobs but {len(axes)} value lists")
    for knob, values in zip(knobs, axes, strict=True):
        if len(values) == 0:
            raise ValueError(f"{kind}: no values given for {knob.name}")
        for k, value in enumerate(values):
            try:
                knob.validate(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"{kind}: {knob.name}[{k}] = {value!r} {knob.unit} is not allowed, nothing "
                    f"was set: {exc}"
                ) from exc


def _plans(
    session: MeasurementSession,
    knobs: Sequence[Knob],
    grid: Sequence[tuple[float, ...]],
    plan_kwargs: Mapping[str, Any],
) -> tuple[SMatrixMeta, bool]:
    """The first point's plan; with swept pump frequencies, check every point's plan too."""
    swept = [(k, knob.tone) for k, knob in enumerate(knobs) if knob.parameter == "frequency"]
    if not swept:
        return make_plan(session, **plan_kwargs), False
    present = pump_frequencies(session.pump)
    first = None
    for point in dict.fromkeys(tuple(point[k] for k, _ in swept) for point in grid):
        freqs = present | {tone: float(v) for (_, tone), v in zip(swept, point, strict=True)}
        meta = make_plan(session, frequencies=freqs, **plan_kwargs)
        if first is None:
            first = meta
    assert first is not None
    return first, True


def safe_state(session: MeasurementSession) -> None:
    """After an interrupt or error: :func:`labnr.safety.safe_state`, shielded from Ctrl-C."""
    if session.pump is None:
        return
    try:
        with FinishPoint("switching the pump outputs off"):
            problems = lab_safe_state(session)
        if problems:
            log.error("stopped: NOT SAFE, check the pumps: %s", "; ".join(problems))
    except KeyboardInterrupt:  # a Ctrl-C during off(): it finished first, we re-raise anyway
        pass


def run_sweep(
    session: MeasurementSession,
    kind: str,
    knobs: Sequence[Knob],
    axes: Sequence[Sequence[float]],
    *,
    plan_kwargs: Mapping[str, Any] | None = None,
    database: str | Path | None = None,
    progress: bool | None = None,
) -> Any:
    """Sweep ``knobs`` over the grid of ``axes`` (outer first), one S-matrix per point.

    Parameters
    ----------
    session : MeasurementSession
        Lab session.
    kind : str
        Measurement kind (dataset name and ``labnr_kind``).
    knobs : sequence of Knob
        Swept settings, outer first (none: one point).
    axes : sequence of sequence of float
        Values of each knob.
    plan_kwargs : mapping, optional
        Passed to :func:`~labnr.measure.acquire.make_plan` (span, points, centres, ...).
    database : str or Path, optional
        Database path (default: the config's).
    progress : bool, optional
        Progress bar on/off; None: only on a terminal.

    Returns
    -------
    qcodes.dataset.DataSetProtocol
        The completed dataset.
    """
    kwargs = dict(plan_kwargs or {})
    axes = [np.asarray(a, dtype=float).reshape(-1).tolist() for a in axes]
    _check_values(kind, knobs, axes)
    grid = list(itertools.product(*axes))
    meta, replan = _plans(session, knobs, grid, kwargs)
    meas = new_measurement(session, kind, knobs, meta, [len(a) for a in axes], database)
    loop = _Loop(session, kind, knobs, meta, kwargs if replan else None)
    ds = None
    # an exception is held until the QCoDeS run has closed normally (the dataset is
    # completed either way; QCoDeS would otherwise log its traceback to stderr)
    pending: BaseException | None = None
    hold = InterruptHold("starting the run")  # SIGINT/SIGTERM wait until the run is open
    try:
        with hold.start(), meas.run() as saver:
            try:
                ds = saver.dataset
                for key, value in metadata(session, kind, knobs, meta).items():
                    ds.add_metadata(key, value)
                if export_wanted(session) is not None:
                    ds.add_metadata(EXPORT_KEY, "pending")
                status = outcome = "interrupted"
                try:
                    hold.stop()  # a signal held while the run started is raised here
                    loop.run(saver, grid, progress)
                    status = outcome = "completed"
                except KeyboardInterrupt as exc:
                    terminated = isinstance(exc, Terminated)
                    outcome = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
                    pending = exc
                except Exception as exc:
                    outcome = f"stopped: {type(exc).__name__}: {exc}"
                    pending = exc
                finally:
                    ds.add_metadata("labnr_status", status)
                    ds.add_metadata("labnr_points", loop.stored)
                    ds.add_metadata("labnr_points_planned", len(grid))
                    ds.add_metadata("labnr_outcome", outcome)
            except BaseException as exc:  # e.g. SIGTERM while the metadata was written
                pending = pending or exc
        if pending is not None:
            raise pending
    except KeyboardInterrupt:
        log.warning("%s interrupted after %d of %d points", kind, loop.stored, len(grid))
        safe_state(session)
        export_run(session, ds)
        raise
    except Exception as exc:
        log.error("%s stopped after %d of %d points: %s", kind, loop.stored, len(grid), exc)
        safe_state(session)
        export_run(session, ds)
        raise
    log.info("%s: run %s, %d points (%s)", kind, ds.run_id, loop.stored, status)
    export_run(session, ds)
    return ds


def export_wanted(session: MeasurementSession) -> Path | None:
    """The folder a finished run is exported to, or None (``storage.export_hdf5`` off)."""
    storage = getattr(getattr(session, "config", None), "storage", None)
    data_dir = getattr(session, "data_dir", None)
    if storage is None or data_dir is None or not storage.export_hdf5:
        return None
    return Path(data_dir)


def export_run(session: MeasurementSession, ds: Any) -> Path | None:
    """Export a finished run to ``<data_dir>/run_<id>_<guid>.h5`` if the config asks for it.

    The run's metadata ``labnr_export`` says ``"pending"`` from its start
    (see :func:`run_sweep`) and the file name once written, so that
    :func:`labnr.measure.recovery.recover` finishes an export a crash
    prevented. A failed export is logged, never raised: the run is safe in
    the database. Returns the file, or None.
    """
    folder = export_wanted(session)
    if ds is None or folder is None:
        return None
    from labnr.measure.export import export_to_folder

    try:
        path = export_to_folder(ds, folder)
        ds.add_metadata(EXPORT_KEY, path.name)
    except Exception as exc:  # noqa: BLE001 - the data are in the database
        log.error(
            "run %s: HDF5 export to %s failed (the data are in the database; the next "
            "session retries): %s: %s", ds.run_id, folder, type(exc).__name__, exc,
        )  # fmt: skip
        log.debug("export failure", exc_info=True)
        return None
    return path


class _Loop:
    """The point loop of one run: knobs that changed, one S-matrix, one ``add_result``."""

    def __init__(
        self,
        session: MeasurementSession,
        kind: str,
        knobs: Sequence[Knob],
        meta: SMatrixMeta,
        replan: Mapping[str, Any] | None,
    ) -> None:
        self.session, self.kind, self.knobs = session, kind, list(knobs)
        self.meta, self.replan = meta, replan
        self.delta = offset_axis(meta.plan)
        self.names = [element_name(o, i) for o, i in meta.plan.elements]
        self.last: list[float | None] = [None] * len(knobs)
        self.stored = 0

    def _set(self, point: tuple[float, ...]) -> None:
        for k, (knob, value) in enumerate(zip(self.knobs, point, strict=True)):
            if value != self.last[k]:
                self.last[k] = None  # unknown until the set returns
                knob.set(value)
                self.last[k] = value

    def run(self, saver: Any, grid: Sequence[tuple[float, ...]], progress: bool | None) -> None:
        """Measure and store every point of ``grid`` (stops on any exception)."""
        total = len(grid)
        with progress_bar(total, self.kind, progress) as bar:
            for point in grid:
                with FinishPoint(f"point {self.stored + 1} of {total}"):
                    self._set(point)
                    now = (
                        self.meta if self.replan is None else make_plan(self.session, **self.replan)
                    )
                    data = execute_plan(self.session.vna, now)
                    saver.add_result(
                        *[(k.name, v) for k, v in zip(self.knobs, point, strict=True)],
                        (FREQUENCY, self.delta),
                        *[(n, data[e]) for n, e in zip(self.names, now.plan.elements, strict=True)],
                    )
                    self.stored += 1
                bar.update()
                log.debug("%s: point %d of %d stored", self.kind, self.stored, total)
