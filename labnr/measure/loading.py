"""Load a labnr run as an :class:`xarray.Dataset` with physical dimensions.

A run is one QCoDeS dataset written by the measurement layer (see
``docs/data_format.md`` for the database contract) or the ``.h5`` file that
:func:`labnr.measure.export.export_hdf5` made of it. :func:`load` accepts
either and returns the same thing::

    <xarray.Dataset>
    Dimensions:  (pump_ab_phase: 21, frequency: 401, out: 3, in: 3)
    Coordinates:
      * pump_ab_phase      (pump_ab_phase) float64   knob values, sorted
      * frequency          (frequency) float64       offset delta from band centre, Hz
      * out, in            (out), (in) <U1           mode names in port order
        acquisition_order  (pump_ab_phase) int64     measurement index, -1 = not measured
    Data variables:
        S                  (pump_ab_phase, frequency, out, in) complex128

Knob points that lie on a grid (every sweep and map labnr makes, including
interrupted ones) come out as a grid with one dimension per knob in sweep
order; grid cells that were not measured and S elements that were not stored
are NaN. Runs whose points do not form a grid (a knob value measured twice, a
scattered set of points) come out with one ``point`` dimension instead, the
knob values being coordinates along it. ``attrs["layout"]`` says which.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from qcodes.dataset import load_by_id
from qcodes.dataset.data_set_protocol import DataSetProtocol
from qcodes.dataset.sqlite.database import connect

__all__ = ["load", "from_qcodes", "read_hdf5", "element_frequencies", "RunRef"]

RunRef = int | str | os.PathLike[str] | DataSetProtocol
"""What :func:`load` accepts: a run id, a ``.h5`` path or a QCoDeS dataset."""

#: Root attribute ``labnr_format`` of every labnr HDF5 file, and its layout version.
HDF5_FORMAT = "labnr-run"
HDF5_FORMAT_VERSION = 1
#: Name of the root attribute listing which root attributes hold JSON text.
JSON_ATTRS = "json_attrs"

FREQUENCY = "frequency"
OUT, IN = "out", "in"
POINT = "point"
ORDER = "acquisition_order"


def load(run: RunRef, db: str | os.PathLike[str] | None = None) -> xr.Dataset:
    """Load one run as an xarray Dataset.

    Parameters
    ----------
    run
        A run id (in ``db``, or in the current QCoDeS database when ``db`` is
        None), a QCoDeS dataset, or the path of an ``.h5`` file written by
        :func:`labnr.measure.export.export_hdf5`.
    db
        Path of the QCoDeS SQLite database holding ``run`` (run ids only).

    Returns
    -------
    xarray.Dataset
        Variable ``S`` (complex128, dims ``(*knobs, "frequency", "out", "in")``
        or ``("point", "frequency", "out", "in")``) and the run's metadata in
        ``attrs``; see the module docstring and ``docs/data_format.md``.

    Raises
    ------
    FileNotFoundError
        ``run`` is a path (or ``db`` is given) and the file does not exist.
    ValueError
        The run id is not in the database, or the file is not a labnr HDF5 file.
    """
    if isinstance(run, DataSetProtocol):
        return from_qcodes(run)
    if isinstance(run, str | os.PathLike):
        return read_hdf5(run)
    if isinstance(run, bool) or not isinstance(run, int | np.integer):
        raise TypeError(
            f"load(run={run!r}): expected a run id (int), a QCoDeS dataset or an .h5 path"
        )
    if db is None:
        dataset = load_by_id(int(run))
        try:
            return from_qcodes(dataset)
        finally:
            dataset.conn.close()
    db_path = Path(db)
    if not db_path.is_file():
        raise FileNotFoundError(f"load(db={str(db)!r}): no such database file")
    conn = connect(str(db_path))
    try:
        try:
            dataset = load_by_id(int(run), conn=conn)
        except ValueError as exc:
            raise ValueError(f"load: run id {run} is not in the database {db_path}") from exc
        return from_qcodes(dataset)
    finally:
        conn.close()


# --------------------------------------------------------------------------- QCoDeS side


def _meta(meta: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A ``labnr_*`` metadata entry, JSON-decoded when it is JSON text."""
    if key not in meta:
        return default
    value = meta[key]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _meta_str(meta: Mapping[str, Any], key: str) -> str | None:
    """A text metadata entry (kind, status, version), plain or JSON-quoted; never a number."""
    if key not in meta:
        return None
    value = meta[key]
    if isinstance(value, str) and value.startswith('"'):
        return str(json.loads(value))
    return str(value)


def _elements(dataset: DataSetProtocol, ports: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Map each stored ``S_<out>_<in>`` parameter to its (out, in) mode names."""
    names = {f"S_{o}_{i}": (o, i) for o in ports for i in ports}
    found = {}
    for name, spec in dataset.paramspecs.items():
        if not spec.depends_on:
            continue
        if name not in names:
            raise ValueError(
                f"run {dataset.run_id}: dependent parameter {name!r} is not S_<out>_<in> "
                f"for the ports {list(ports)} (metadata labnr_ports)"
            )
        found[name] = names[name]
    return found


def _ports_from_names(dataset: DataSetProtocol) -> list[str]:
    """Port names in order of first appearance, for runs without ``labnr_ports``."""
    ports: list[str] = []
    for name, spec in dataset.paramspecs.items():
        parts = name.split("_")
        if spec.depends_on and len(parts) == 3 and parts[0] == "S":
            ports += [p for p in (parts[2], parts[1]) if p not in ports]
    return ports


def _knob_names(dataset: DataSetProtocol, meta: Mapping[str, Any]) -> list[str]:
    knobs = _meta(meta, "labnr_knobs")
    if knobs is not None:
        return [str(k) for k in knobs]
    deps = [s for s in dataset.paramspecs.values() if s.depends_on]
    return [k for k in (deps[0].depends_on_ if deps else []) if k != FREQUENCY]


def _grid(points: np.ndarray) -> tuple[list[np.ndarray], tuple[np.ndarray, ...]] | None:
    """Unique sorted values per knob and each point's grid index, or None if not a grid.

    ``points`` is (rows, knobs). A grid is used when no knob tuple repeats and the
    grid has at most twice as many cells as points (true for any interrupted
    nested sweep: only the last outer row can be incomplete).
    """
    rows, nknobs = points.shape
    if nknobs == 0:
        return ([], ()) if rows <= 1 else None
    axes, index = [], []
    for k in range(nknobs):
        uniq, inv = np.unique(points[:, k], return_inverse=True)
        axes.append(uniq)
        index.append(inv.reshape(-1))
    size = int(np.prod([len(a) for a in axes]))
    flat = np.ravel_multi_index(index, [len(a) for a in axes]) if rows else np.array([], int)
    if len(np.unique(flat)) != rows or size > max(2 * rows, 1):
        return None
    return axes, tuple(index)


def _knob_rows(block: Mapping[str, np.ndarray], knobs: Sequence[str], rows: int) -> np.ndarray:
    """The (rows, knobs) knob values of one element's data block."""
    cols = []
    for k in knobs:
        v = np.asarray(block[k], dtype=float)
        cols.append(v.reshape(rows, -1)[:, 0] if v.size else np.zeros(rows))
    return np.stack(cols, axis=1) if cols else np.zeros((rows, 0))


def _frequency(data: Mapping[str, Mapping[str, np.ndarray]], run_id: int) -> np.ndarray:
    """The common offset axis; every row of every element must use the same one."""
    freq: np.ndarray | None = None
    for name, block in data.items():
        f = np.asarray(block[FREQUENCY], dtype=float)
        if f.size == 0:
            continue
        f = f.reshape(-1, f.shape[-1])  # (rows, F); QCoDeS gives (*shape, F) for complete runs
        if freq is None:
            freq = f[0]
        if f.shape[-1] != freq.size or not np.array_equal(f, np.broadcast_to(freq, f.shape)):
            raise ValueError(
                f"run {run_id}: {name} does not use one common frequency axis for all "
                "points and elements; labnr runs always do"
            )
    return np.array([], dtype=float) if freq is None else freq.copy()


#: labnr metadata entries with their own attrs; every other ``labnr_<x>`` becomes attr ``<x>``.
_NAMED_META = {
    "labnr_kind",
    "labnr_status",
    "labnr_version",
    "labnr_ports",
    "labnr_knobs",
    "labnr_band_centres",
    "labnr_receiver_offsets",
    "labnr_config",
    # bookkeeping of the run's writer and export, not data (labnr.measure.recovery)
    "labnr_holder",
    "labnr_export",
}


def _attrs(dataset: DataSetProtocol, ports: list[str], knobs: list[str]) -> dict[str, Any]:
    meta = dataset.metadata
    status = _meta_str(meta, "labnr_status")
    if status is None:
        status = "completed" if dataset.completed else "running"
    extra = {
        key[len("labnr_") :]: _meta(meta, key)
        for key in meta
        if key.startswith("labnr_") and key not in _NAMED_META
    }
    return {
        "run_id": int(dataset.run_id),
        "captured_run_id": int(dataset.captured_run_id),
        "guid": str(dataset.guid),
        "name": str(dataset.name),
        "exp_name": str(dataset.exp_name),
        "sample_name": str(dataset.sample_name),
        "kind": _meta_str(meta, "labnr_kind"),
        "status": status,
        "labnr_version": _meta_str(meta, "labnr_version"),
        "run_timestamp": dataset.run_timestamp(),
        "completed_timestamp": dataset.completed_timestamp(),
        "run_timestamp_raw": dataset.run_timestamp_raw,
        "completed_timestamp_raw": dataset.completed_timestamp_raw,
        "ports": ports,
        "knobs": knobs,
        "band_centres": {
            str(k): float(v) for k, v in _meta(meta, "labnr_band_centres", {}).items()
        },
        "receiver_offsets": {
            str(k): float(v) for k, v in _meta(meta, "labnr_receiver_offsets", {}).items()
        },
        "config": _meta(meta, "labnr_config", {}),
        "snapshot": dataset.snapshot,
        "database": str(dataset.path_to_db),
    } | extra


def _read_elements(
    dataset: DataSetProtocol, elements: Mapping[str, tuple[str, str]], knobs: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, dict[str, int]]:
    """Frequency axis, S rows per element, acquisition points and rows per element."""
    data = dataset.get_parameter_data(*elements)
    freq = _frequency(data, dataset.run_id)
    values, rows, points = {}, {}, {}
    for name in elements:
        block = data.get(name, {})
        raw = np.asarray(block.get(name, np.zeros((0,))), dtype=np.complex128)
        values[name] = raw.reshape(-1, freq.size) if raw.size else np.zeros((0, freq.size))
        rows[name] = values[name].shape[0]
        points[name] = _knob_rows(block, knobs, rows[name])
    ref = max(points, key=lambda n: rows[n])
    for name in elements:
        if not np.array_equal(points[name], points[ref][: rows[name]]):
            raise ValueError(
                f"run {dataset.run_id}: {name} was stored at other knob points than {ref}; "
                "labnr runs store every element at every point"
            )
    return freq, values, points[ref], rows


def from_qcodes(dataset: DataSetProtocol) -> xr.Dataset:
    """Convert a QCoDeS dataset in the labnr layout to an xarray Dataset.

    Parameters
    ----------
    dataset
        A QCoDeS dataset written by ``labnr.measure`` (the contract is in
        ``docs/data_format.md``).

    Returns
    -------
    xarray.Dataset
        As :func:`load`.

    Raises
    ------
    ValueError
        The dataset does not follow the labnr layout (no ``S_<out>_<in>``
        parameters, elements at different points or frequency axes).
    """
    meta = dataset.metadata
    ports = [str(p) for p in _meta(meta, "labnr_ports", None) or _ports_from_names(dataset)]
    knobs = _knob_names(dataset, meta)
    elements = _elements(dataset, ports)
    if not elements:
        raise ValueError(f"run {dataset.run_id}: no S_<out>_<in> parameters; not a labnr run")
    freq, values, points, rows = _read_elements(dataset, elements, knobs)
    specs = dataset.paramspecs
    grid = _grid(points)
    coords: dict[str, Any] = {}
    if grid is not None:
        dims, index = list(knobs), grid[1]
        shape = [len(a) for a in grid[0]]
        for k, axis in zip(knobs, grid[0], strict=True):
            coords[k] = (k, axis, _var_attrs(specs.get(k), k))
        order = np.full(shape, -1, dtype=np.int64)
        if knobs:
            order[index] = np.arange(len(points))
        elif len(points):
            order[()] = 0
        coords[ORDER] = (dims, order, {"long_name": "acquisition order (-1: not measured)"})
    else:
        dims, shape, index = [POINT], [len(points)], (np.arange(len(points)),)
        coords[POINT] = (POINT, np.arange(len(points)))
        for j, k in enumerate(knobs):
            coords[k] = (POINT, points[:, j], _var_attrs(specs.get(k), k))
    n, pos = len(ports), {p: j for j, p in enumerate(ports)}
    s = np.full((*shape, freq.size, n, n), np.nan + 1j * np.nan, dtype=np.complex128)
    for name, (o, i) in elements.items():
        rows_idx = tuple(ix[: rows[name]] for ix in index)
        s[(*rows_idx, slice(None), pos[o], pos[i])] = values[name]
    coords[FREQUENCY] = (FREQUENCY, freq, _var_attrs(specs.get(FREQUENCY), FREQUENCY, "Hz"))
    coords[OUT] = (OUT, np.asarray(ports, dtype=str), {"long_name": "output port (mode)"})
    coords[IN] = (IN, np.asarray(ports, dtype=str), {"long_name": "input port (mode)"})
    attrs = _attrs(dataset, ports, knobs)
    attrs["layout"] = "grid" if grid is not None else "points"
    attrs["points_measured"] = len(points)
    s_attrs = {"units": "", "long_name": "S(out←in)"}
    return xr.Dataset({"S": ([*dims, FREQUENCY, OUT, IN], s, s_attrs)}, coords=coords, attrs=attrs)


def _var_attrs(spec: Any, name: str, units: str = "") -> dict[str, str]:
    if spec is None:
        return {"units": units, "long_name": name}
    return {"units": str(spec.unit), "long_name": str(spec.label or name)}


# --------------------------------------------------------------------------- HDF5 side


def _decode_attr(value: Any, is_json: bool) -> Any:
    """One root attribute of a labnr HDF5 file as the Python value it was written from."""
    if isinstance(value, bytes):
        value = value.decode()
    if is_json:
        return json.loads(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _strings(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def _read_var(node: h5py.Dataset) -> tuple[list[str], np.ndarray, dict[str, str]]:
    dims = _strings(node.attrs["dims"]) if node.attrs["dims"].size else []
    if h5py.check_string_dtype(node.dtype) is not None:
        data = np.asarray(node.asstr()[()], dtype=str)
    else:
        data = node[()]
    attrs = {}
    if "units" in node.attrs:
        attrs["units"] = str(_decode_attr(node.attrs["units"], False))
    if "label" in node.attrs:
        attrs["long_name"] = str(_decode_attr(node.attrs["label"], False))
    return dims, data, attrs


def read_hdf5(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a file written by :func:`labnr.measure.export.export_hdf5`.

    Parameters
    ----------
    path
        The ``.h5`` file.

    Returns
    -------
    xarray.Dataset
        Identical (values, dims, coordinates, attrs) to the dataset that was written.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not a labnr HDF5 file, or has a newer layout version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load({str(path)!r}): no such file")
    if not h5py.is_hdf5(path):
        raise ValueError(f"load({str(path)!r}): not an HDF5 file (expected a labnr .h5 export)")
    with h5py.File(path, "r") as f:
        fmt = _decode_attr(f.attrs.get("labnr_format", ""), False)
        version = int(_decode_attr(f.attrs.get("format_version", 0), False))
        if fmt != HDF5_FORMAT or not 1 <= version <= HDF5_FORMAT_VERSION:
            raise ValueError(
                f"load({str(path)!r}): root attrs labnr_format={fmt!r}, format_version="
                f"{version}; expected {HDF5_FORMAT!r} with version 1..{HDF5_FORMAT_VERSION}"
            )
        json_names = set(_strings(f.attrs[JSON_ATTRS])) if JSON_ATTRS in f.attrs else set()
        skip = {"labnr_format", "format_version", JSON_ATTRS}
        attrs = {k: _decode_attr(v, k in json_names) for k, v in f.attrs.items() if k not in skip}
        coords = {name: _read_var(node) for name, node in f["coords"].items()}
        dims, s, s_attrs = _read_var(f["S"])
    return xr.Dataset(
        {"S": (dims, s, s_attrs)},
        coords={k: (d, v, a) for k, (d, v, a) in coords.items()},
        attrs=attrs,
    )


# --------------------------------------------------------------------------- helpers


def element_frequencies(ds: xr.Dataset, out: str, in_: str) -> tuple[np.ndarray, np.ndarray]:
    """Absolute stimulus and receiver frequencies of element S(out←in).

    Parameters
    ----------
    ds
        A dataset from :func:`load` (uses ``attrs["band_centres"]`` and
        ``attrs["receiver_offsets"]``).
    out, in_
        Mode names of the element.

    Returns
    -------
    stimulus, receiver : numpy.ndarray
        ``f_in + delta`` and ``m * (f_in + delta) + offset(out, in)`` in Hz,
        one value per ``frequency`` offset delta; ``m`` is the receiver
        multiplier (``attrs["receiver_multipliers"]``, -1 after a gain
        process, default +1). A missing receiver offset means 0 (no
        frequency conversion).

    Raises
    ------
    KeyError
        The input mode has no band centre in the run's metadata.
    """
    centres = ds.attrs.get("band_centres", {})
    if in_ not in centres:
        raise KeyError(
            f"run {ds.attrs.get('run_id')}: no band centre for mode {in_!r} "
            f"(metadata labnr_band_centres has {sorted(centres)})"
        )
    delta = np.asarray(ds[FREQUENCY].values, dtype=float)
    stimulus = centres[in_] + delta
    key = f"{out},{in_}"
    offset = ds.attrs.get("receiver_offsets", {}).get(key, 0.0)
    multiplier = (ds.attrs.get("receiver_multipliers") or {}).get(key, 1)
    return stimulus, multiplier * stimulus + offset
