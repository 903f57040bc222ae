"""Export labnr runs: one HDF5 file per run, NetCDF through QCoDeS, Touchstone per S-matrix.

The HDF5 layout is documented in ``docs/data_format.md``; :func:`labnr.measure.loading.load`
reads it back into the identical :class:`xarray.Dataset`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import skrf
import xarray as xr
from qcodes.dataset import load_by_id
from qcodes.dataset.data_set_protocol import DataSetProtocol
from qcodes.dataset.sqlite.database import connect

from labnr.fileio import atomic_writer, safe_target, write_atomic

from .loading import (
    FREQUENCY,
    HDF5_FORMAT,
    HDF5_FORMAT_VERSION,
    IN,
    JSON_ATTRS,
    OUT,
    RunRef,
    load,
)

__all__ = ["export_file_name", "export_hdf5", "export_netcdf", "export_to_folder", "to_touchstone"]

_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{1,12}){0,6}$")


# --------------------------------------------------------------------------- HDF5


def _as_dataset(run: RunRef | xr.Dataset, db: str | os.PathLike[str] | None) -> xr.Dataset:
    return run if isinstance(run, xr.Dataset) else load(run, db=db)


def export_file_name(run_id: int, guid: str) -> str:
    """``run_<run_id>_<guid>.h5``: the file name of a run's export, unique per run.

    The QCoDeS GUID (time in ms, sample code, work station) tells apart runs
    of different databases that share a run id, so two databases writing to
    one ``data_dir`` never meet on a name.

    Raises
    ------
    ValueError
        ``guid`` is not a QCoDeS GUID (hex groups and dashes): it would not
        give a safe file name.
    """
    guid = str(guid)
    if not _GUID.match(guid):
        raise ValueError(
            f"run {run_id}: GUID {guid!r} is not a QCoDeS GUID (hex digits and dashes); "
            "no export file name can be made from it"
        )
    return f"run_{int(run_id)}_{guid}.h5"


def _h5_path(path: str | os.PathLike[str], ds: xr.Dataset) -> tuple[Path, bool]:
    """(file, whether it is named after the run in a directory).

    ``path`` itself, or :func:`export_file_name` in ``path`` if that is a
    directory; a path without a suffix that does not exist yet is taken as a
    directory too.
    """
    target = Path(path)
    if target.is_dir() or not target.suffix:
        name = export_file_name(int(ds.attrs.get("run_id", 0)), str(ds.attrs.get("guid", "")))
        return target / name, True
    return target, False


def _same_run(path: Path, guid: str) -> bool:
    """Whether ``path`` (a regular file) is the export of the run ``guid``."""
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs.get("guid", "")) == guid
    except OSError:
        return False


def _encode_attr(value: Any) -> tuple[Any, bool]:
    """An attribute value HDF5 can hold natively, and whether it was JSON-encoded."""
    if isinstance(value, str):
        return value, False
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return value, False
    return json.dumps(value), True


def _write_var(node: h5py.Dataset, dims: Sequence[str], attrs: Mapping[str, Any]) -> None:
    node.attrs["dims"] = np.array(list(dims), dtype=h5py.string_dtype())
    if "units" in attrs:
        node.attrs["units"] = str(attrs["units"])
    if "long_name" in attrs:
        node.attrs["label"] = str(attrs["long_name"])


def _write_coords(f: h5py.File, ds: xr.Dataset) -> dict[str, h5py.Dataset]:
    group = f.create_group("coords")
    written = {}
    for name, var in ds.coords.items():
        data = np.asarray(var.values)
        if data.dtype.kind in "UO":
            node = group.create_dataset(name, data=data.astype(object), dtype=h5py.string_dtype())
        else:
            node = group.create_dataset(name, data=data)
        _write_var(node, [str(d) for d in var.dims], var.attrs)
        written[str(name)] = node
    return written


def export_hdf5(
    run: RunRef | xr.Dataset,
    path: str | os.PathLike[str],
    *,
    db: str | os.PathLike[str] | None = None,
    compression: str | None = None,
) -> Path:
    """Write one run to one HDF5 file.

    Parameters
    ----------
    run
        A run id (in ``db`` or the current QCoDeS database), a QCoDeS dataset,
        or a dataset returned by :func:`labnr.measure.loading.load`.
    path
        The ``.h5`` file to write (replaced if it exists; never written
        through a symbolic link), or a directory (existing, or any path
        without a suffix; created as needed): the file is then
        ``run_<run_id>_<guid>.h5`` in it (:func:`export_file_name`), which
        replaces only an earlier export of the same run.
    db
        QCoDeS database holding ``run`` (run ids only).
    compression
        h5py compression filter for ``/S`` (``"gzip"``, ``"lzf"``) or None
        (default: uncompressed, fastest).

    Returns
    -------
    pathlib.Path
        The file written. It is written to a new temporary file in the same
        folder, fsync'd and renamed (:func:`labnr.fileio.atomic_writer`), so a
        crash never leaves a half-written file under the final name.

    Notes
    -----
    Layout: ``/S`` complex128 (h5py's compound ``{r, i}`` of float64) with
    attrs ``dims``, ``units``, ``label``; ``/coords/<name>`` per coordinate
    with attrs ``dims``, ``units``, ``label`` (dimension coordinates are also
    attached to ``/S`` as HDF5 dimension scales); every ``attrs`` entry of the
    dataset as a root attribute (strings and numbers natively, the rest as
    JSON text, listed in the root attribute ``json_attrs``). See
    ``docs/data_format.md``.
    """
    ds = _as_dataset(run, db)
    target, named = _h5_path(path, ds)
    return _write_h5(ds, target, folder=target.parent if named else None, compression=compression)


def export_to_folder(
    run: RunRef | xr.Dataset,
    folder: str | os.PathLike[str],
    *,
    db: str | os.PathLike[str] | None = None,
    compression: str | None = None,
) -> Path:
    """Export a run to ``<folder>/run_<id>_<guid>.h5`` (:func:`export_file_name`).

    The file must resolve inside ``folder`` and is never written through a
    symbolic link; an existing file of the same name is replaced only if it is
    the export of the same run (same GUID), never another run's file.

    Parameters
    ----------
    run
        As for :func:`export_hdf5`.
    folder
        The data folder (created if needed), whatever its name looks like.
    db
        QCoDeS database holding ``run`` (run ids only).
    compression
        As for :func:`export_hdf5`.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    labnr.fileio.UnsafePathError
        The file would be a symbolic link or outside ``folder``.
    FileExistsError
        Another run's file has that name (it is kept).
    """
    ds = _as_dataset(run, db)
    name = export_file_name(int(ds.attrs.get("run_id", 0)), str(ds.attrs.get("guid", "")))
    return _write_h5(ds, Path(folder) / name, folder=folder, compression=compression)


def _write_h5(
    ds: xr.Dataset,
    path: Path,
    *,
    folder: str | os.PathLike[str] | None,
    compression: str | None,
) -> Path:
    """Write ``ds`` atomically, no-follow; a named export replaces only its own run's file."""
    target = safe_target(path, folder)
    overwrite = folder is None
    if not overwrite and target.is_file() and _same_run(target, str(ds.attrs.get("guid", ""))):
        overwrite = True  # a re-export of the same run
    with atomic_writer(target, folder=folder, overwrite=overwrite) as fileobj:
        with h5py.File(fileobj, "w") as f:
            _write_root_attrs(f, ds.attrs)
            coords = _write_coords(f, ds)
            s = ds["S"]
            node = f.create_dataset(
                "S", data=np.asarray(s.values, dtype=np.complex128), compression=compression
            )
            _write_var(node, [str(d) for d in s.dims], s.attrs)
            for axis, dim in enumerate(s.dims):
                if dim in coords and coords[dim].ndim == 1:
                    coords[dim].make_scale(str(dim))
                    node.dims[axis].attach_scale(coords[dim])
    return target


def _write_root_attrs(f: h5py.File, attrs: Mapping[str, Any]) -> None:
    f.attrs["labnr_format"] = HDF5_FORMAT
    f.attrs["format_version"] = HDF5_FORMAT_VERSION
    json_names = []
    for key, value in attrs.items():
        encoded, is_json = _encode_attr(value)
        f.attrs[key] = encoded
        if is_json:
            json_names.append(key)
    f.attrs[JSON_ATTRS] = np.array(json_names, dtype=h5py.string_dtype())


# --------------------------------------------------------------------------- NetCDF


def export_netcdf(
    run: int | DataSetProtocol,
    directory: str | os.PathLike[str],
    *,
    db: str | os.PathLike[str] | None = None,
) -> Path:
    """Export a run with QCoDeS's own NetCDF exporter (``DataSet.export("netcdf")``).

    Parameters
    ----------
    run
        A run id (in ``db`` or the current QCoDeS database) or a QCoDeS dataset.
    directory
        Folder for the file; QCoDeS names it ``labnr_<run_id>_<guid>.nc``.
    db
        QCoDeS database holding ``run`` (run ids only).

    Returns
    -------
    pathlib.Path
        The ``.nc`` file (h5netcdf engine; complex values, readable with
        ``xarray.open_dataset(path, engine="h5netcdf")``). Its layout is QCoDeS's
        (one variable per ``S_<out>_<in>``), not labnr's ``S(out, in)`` array.

    Notes
    -----
    QCoDeS records the export in the run's metadata (``export_info``). The
    file is written by QCoDeS (not through :mod:`labnr.fileio`): labnr only
    refuses a symbolic link at its name (:class:`labnr.fileio.UnsafePathError`).
    """
    Path(directory).mkdir(parents=True, exist_ok=True)
    if isinstance(run, DataSetProtocol):
        return _qcodes_netcdf(run, directory)
    conn = connect(str(db)) if db is not None else None
    dataset = load_by_id(int(run), conn=conn) if conn is not None else load_by_id(int(run))
    try:
        return _qcodes_netcdf(dataset, directory)
    finally:
        dataset.conn.close()


def _qcodes_netcdf(dataset: Any, directory: str | os.PathLike[str]) -> Path:
    from qcodes.dataset.export_config import DataExportType

    name = dataset._export_file_name("labnr_", DataExportType.NETCDF)
    safe_target(Path(directory) / name)
    dataset.export("netcdf", path=str(directory), prefix="labnr_")
    return Path(dataset.export_info.export_paths["nc"])


# --------------------------------------------------------------------------- Touchstone


def _single_matrix(data: xr.Dataset | xr.DataArray) -> xr.DataArray:
    s = data["S"] if isinstance(data, xr.Dataset) else data
    extra = [d for d in s.dims if d not in (FREQUENCY, OUT, IN)]
    big = [d for d in extra if s.sizes[d] != 1]
    if big:
        raise ValueError(
            f"to_touchstone: S has knob dimensions {big} (sizes "
            f"{[s.sizes[d] for d in big]}); select one point first, e.g. "
            f"ds.sel({big[0]}=value, method='nearest')"
        )
    return s.squeeze(extra, drop=True).transpose(FREQUENCY, OUT, IN)


def _touchstone_inputs(
    data: xr.Dataset | xr.DataArray | np.ndarray,
    frequency: np.ndarray | None,
    ports: Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray, list[str], xr.Dataset | None]:
    """(S (F, N, N), offsets (F,), port names, dataset for metadata or None)."""
    if isinstance(data, xr.Dataset | xr.DataArray):
        s = _single_matrix(data)
        names = list(ports) if ports is not None else [str(p) for p in s[IN].values]
        missing = [p for p in names if p not in s[IN].values or p not in s[OUT].values]
        if missing:
            raise ValueError(
                f"to_touchstone: ports {missing} not in the data (it has {list(s[IN].values)})"
            )
        s = s.sel({OUT: names, IN: names})
        delta = np.asarray(s[FREQUENCY].values if frequency is None else frequency, float)
        meta = data if isinstance(data, xr.Dataset) else None
        return np.asarray(s.values, dtype=np.complex128), delta, names, meta
    arr = np.asarray(data, dtype=np.complex128)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise ValueError(f"to_touchstone: S must have shape (nfreq, N, N), got {arr.shape}")
    if frequency is None:
        raise ValueError("to_touchstone: pass frequency= (Hz) with a plain S array")
    names = list(ports) if ports is not None else [str(k + 1) for k in range(arr.shape[1])]
    if len(names) != arr.shape[1]:
        raise ValueError(f"to_touchstone: {len(names)} port names for {arr.shape[1]} ports")
    return arr, np.asarray(frequency, dtype=float), names, None


def _comments(meta: xr.Dataset | None, names: Sequence[str], centre: float) -> str:
    lines = [
        f"labnr: frequency axis = offset delta + {centre:.9g} Hz "
        f"(band centre of port 1, mode {names[0]})",
    ]
    if meta is None:
        return "\n".join(lines)
    a = meta.attrs
    lines.insert(
        0,
        f"labnr run {a.get('run_id')} guid {a.get('guid')} kind {a.get('kind')} "
        f"status {a.get('status')} ({a.get('run_timestamp')})",
    )
    centres = a.get("band_centres", {})
    offsets = a.get("receiver_offsets", {})
    mult = a.get("receiver_multipliers") or {}
    for k, p in enumerate(names, start=1):
        if p in centres:
            lines.append(f"port {k} = mode {p}: band centre {centres[p]:.9g} Hz")
    lines.append(
        "element S(o<-i) at offset delta: stimulus f_i + delta, "
        "receiver m(o,i) * (f_i + delta) + offset(o,i); m = 1 unless listed"
    )
    for o in names:
        for i in names:
            key = f"{o},{i}"
            m = mult.get(key, 1)
            if offsets.get(key, 0.0) != 0.0 or m != 1:
                extra = f", m({key}) = {m}" if m != 1 else ""
                lines.append(f"offset({key}) = {offsets.get(key, 0.0):.9g} Hz{extra}")
    return "\n".join(lines)


def to_touchstone(
    data: xr.Dataset | xr.DataArray | np.ndarray,
    path: str | os.PathLike[str],
    *,
    frequency: np.ndarray | None = None,
    ports: Sequence[str] | None = None,
    band_centre: float | None = None,
    z0: float = 50.0,
    fill: complex | None = None,
) -> Path:
    """Write one S-matrix to a Touchstone file (``.s<N>p``) with scikit-rf.

    Parameters
    ----------
    data
        A single S-matrix: a dataset from :func:`~labnr.measure.loading.load`
        with no knob dimension larger than 1 (select a point first:
        ``ds.sel(pump_ab_phase=0.3, method="nearest")``), its ``S``
        DataArray, or a complex array of shape ``(nfreq, N, N)`` ([out, in]).
    path
        Output file; the ``.s<N>p`` extension is added unless already there.
    frequency
        Offsets delta (Hz). Required for a plain array; for a dataset its
        ``frequency`` coordinate is used.
    ports
        Mode names to write, in Touchstone port order (a subset of the
        dataset's ports, e.g. ``["a"]`` for a ``.s1p`` reflection). For a
        plain array: names of its ports (default ``"1"``, ``"2"``, ...).
    band_centre
        Absolute frequency (Hz) added to delta for the Touchstone frequency
        axis. Default: the band centre of port 1's mode from
        ``attrs["band_centres"]`` (required for plain arrays).
    z0
        Reference impedance (ohm).
    fill
        Value written for elements that were not measured (NaN in the data);
        by default such data raises ``ValueError``.

    Returns
    -------
    pathlib.Path
        The file written.

    Notes
    -----
    Touchstone has a single frequency axis, but a frequency-converting element
    S(o←i) is stimulated at ``f_i + delta`` and received at
    ``m * (f_i + delta) + offset(o, i)`` (``m`` = -1 after a gain process).
    labnr writes the axis as ``delta + band_centre`` with the band centre of
    **port 1**: it is the stimulus frequency of the first column (elements
    driven at port 1's mode, and any element without conversion within that
    band). Every other element shares the same delta, so its stimulus is the
    written frequency plus ``f_i - f_port1``; the header comments list every
    port's band centre and every receiver offset and multiplier, and
    :func:`~labnr.measure.loading.element_frequencies` gives both frequencies
    of any element. For a non-converting device (all band centres equal)
    the axis is simply the measured frequency.
    """
    s, delta, names, meta = _touchstone_inputs(data, frequency, ports)
    if band_centre is None:
        centres = meta.attrs.get("band_centres", {}) if meta is not None else {}
        if names[0] not in centres:
            raise ValueError(
                f"to_touchstone: no band centre for port 1 (mode {names[0]!r}); "
                "pass band_centre= (Hz)"
            )
        band_centre = float(centres[names[0]])
    f_abs = delta + band_centre
    if f_abs.size == 0 or np.any(f_abs <= 0):
        raise ValueError(
            f"to_touchstone: frequencies delta + {band_centre} Hz must be positive and "
            "non-empty; pass band_centre="
        )
    holes = np.isnan(s)
    if holes.any():
        if fill is None:
            bad = sorted(
                {f"S({names[o]}<-{names[i]})" for _, o, i in zip(*np.nonzero(holes), strict=True)}
            )
            raise ValueError(
                f"to_touchstone: {', '.join(bad)} not measured (NaN); choose ports= or fill="
            )
        s = np.where(holes, fill, s)
    net = skrf.Network(
        frequency=skrf.Frequency.from_f(f_abs, unit="Hz"),
        s=s,
        z0=z0,
        comments=_comments(meta, names, band_centre),
    )
    net.port_names = list(names)
    target = Path(path)
    suffix = f".s{len(names)}p"
    if target.suffix.lower() == suffix:
        target = target.with_suffix(suffix)
    else:
        target = target.with_name(target.name + suffix)
    text = net.write_touchstone(filename=target.stem, return_string=True)
    return write_atomic(target, str(text), encoding="ISO-8859-1")
