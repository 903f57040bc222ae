"""The QCoDeS dataset layout of labnr measurements (the contract with export and loading).

Every measurement is one QCoDeS run, ``Measurement(exp, station, name=<kind>)``
in experiment ``config.name`` with sample name the device (``virtual_lab.device``
or ``config.name``), in the database ``config.storage.database``.

Parameters
----------
knobs (independent, numeric scalars)
    ``pump_<tone>_phase`` (rad), ``pump_<tone>_amplitude`` (V),
    ``pump_<tone>_frequency`` (Hz), ``flux`` (Phi0), in sweep order.
``frequency`` (independent, array, Hz, "offset from band centre")
    The common offset axis δ: element ``S_<out>_<in>`` was driven at
    ``band_centre[in] + δ``.
``S_<out>_<in>`` (dependent, array, complex, unitless, label ``S(out←in)``)
    One per measured element, setpoints ``(knobs..., frequency)``.

Metadata (JSON strings)
-----------------------
``labnr_kind``, ``labnr_ports`` (port modes in port order),
``labnr_band_centres`` (``{mode: Hz}``), ``labnr_receiver_offsets``
(``{"<out>,<in>": Hz}``: receivers at ``m * (centre_in + δ) + offset``),
``labnr_receiver_multipliers`` (``{"<out>,<in>": ±1}``, -1 after a gain
process), ``labnr_conversion_paths`` (``{"<out>,<in>": [[tone, ±1], ...]}``:
the offset is the sum of these tones' frequencies times the coefficients, so
it follows a swept pump frequency; offsets above are those of the first
point), ``labnr_span`` (Hz), ``labnr_config`` (the config), ``labnr_version``,
``labnr_knobs`` (knob names in sweep order), ``labnr_status`` (``"completed"``
or ``"interrupted"``), ``labnr_outcome`` (how it ended) and ``labnr_points``
(points stored). The station snapshot is QCoDeS's own.

Durability (see :mod:`labnr.measure.recovery`): ``labnr_holder`` (JSON
``{"host", "pid", "start"}``: the process writing the run, written first) and
``labnr_export`` (``"pending"`` while an HDF5 export is due, then the file
name). A run found unfinished (``is_completed = 0``) whose holder is gone
was killed: recovery completes it with ``labnr_status = "interrupted"``,
``labnr_interrupted = 1`` and ``labnr_outcome = "killed: ..."``, and
finishes its export.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qcodes.dataset import Measurement, initialise_or_create_database_at, load_or_create_experiment

import labnr
from labnr.fileio import holder
from labnr.measure.acquire import MeasurementSession, SMatrixMeta

__all__ = [
    "EXPORT_KEY",
    "FREQUENCY",
    "HOLDER_KEY",
    "Knob",
    "element_name",
    "metadata",
    "new_measurement",
]

#: Metadata key of the process writing a run (JSON of :func:`labnr.fileio.holder`).
HOLDER_KEY = "labnr_holder"
#: Metadata key of a run's HDF5 export: ``"pending"``, then the file name.
EXPORT_KEY = "labnr_export"

#: Name of the offset axis δ.
FREQUENCY = "frequency"

#: Seconds between database writes (QCoDeS's minimum): every point is written
#: as soon as it is stored, so a crash loses at most the point being measured.
WRITE_PERIOD = 1e-3


@dataclass(frozen=True)
class Knob:
    """A swept setting: its dataset name, unit, and how to set and check it.

    Attributes
    ----------
    name : str
        Dataset parameter name (``pump_bc_phase``, ``flux``).
    label : str
        Axis label.
    unit : str
        SI unit.
    set : callable
        Sets a value on the instrument.
    validate : callable
        Raises (naming the value and the limit) if a value is not allowed; sends nothing.
    tone : str or None
        The pump tone it acts on (None for flux).
    parameter : str
        ``"phase"``, ``"amplitude"``, ``"frequency"`` or ``"flux"``.
    """

    name: str
    label: str
    unit: str
    set: Callable[[float], Any]
    validate: Callable[[float], None]
    tone: str | None = None
    parameter: str = ""


def element_name(out_mode: str, in_mode: str) -> str:
    """Dataset name of an S-matrix element: ``S_b_a`` is out ``b``, in ``a``."""
    return f"S_{out_mode}_{in_mode}"


def device_name(config: Any) -> str:
    """Sample name of the datasets: the virtual lab's device or the config's name."""
    if config.virtual_lab is not None:
        return Path(str(config.virtual_lab.device)).stem
    return str(config.name)


def new_measurement(
    session: MeasurementSession,
    kind: str,
    knobs: Sequence[Knob],
    meta: SMatrixMeta,
    shape: Sequence[int],
    database: str | Path | None = None,
) -> Measurement:
    """A QCoDeS Measurement with labnr's layout, in the session's database.

    Parameters
    ----------
    session : MeasurementSession
        Lab session (config, station).
    kind : str
        Measurement kind, the run's name (``"sweep_pump_phase"``).
    knobs : sequence of Knob
        Swept settings in sweep order (outer first).
    meta : SMatrixMeta
        The S-matrix plan (elements, ports).
    shape : sequence of int
        Number of values of each knob (the expected grid; QCoDeS shapes).
    database : str or Path, optional
        Database path (default ``config.storage.database``).
    """
    cfg = session.config
    path = Path(database) if database is not None else cfg.path(cfg.storage.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    initialise_or_create_database_at(str(path))
    exp = load_or_create_experiment(cfg.name, sample_name=device_name(cfg))
    meas = Measurement(exp=exp, station=session.station, name=kind)
    meas.write_period = WRITE_PERIOD
    for k in knobs:
        meas.register_custom_parameter(k.name, label=k.label, unit=k.unit)
    meas.register_custom_parameter(
        FREQUENCY, label="offset from band centre", unit="Hz", paramtype="array"
    )
    setpoints = [k.name for k in knobs] + [FREQUENCY]
    names = []
    for o, i in meta.plan.elements:
        name = element_name(o, i)
        names.append(name)
        meas.register_custom_parameter(
            name, label=f"S({o}←{i})", unit="", setpoints=setpoints, paramtype="array"
        )
    full = (*tuple(int(n) for n in shape), meta.plan.points)
    meas.set_shapes({name: full for name in names})
    return meas


def metadata(
    session: MeasurementSession, kind: str, knobs: Sequence[Knob], meta: SMatrixMeta
) -> dict[str, str]:
    """labnr's metadata of a run (all but status and point count), as JSON strings."""
    cfg = session.config
    out = {
        HOLDER_KEY: json.dumps(holder()),
        "labnr_kind": kind,
        "labnr_version": labnr.__version__,
        "labnr_config": json.dumps(cfg.model_dump(mode="json")),
        "labnr_knobs": json.dumps([k.name for k in knobs]),
    }
    out.update(meta.as_json())
    return out
