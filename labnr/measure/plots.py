"""Plots of labnr runs: S-matrix grid, 2D pump maps, flux spectroscopy.

Every function takes a dataset from :func:`labnr.measure.loading.load` (or
anything ``load`` accepts: a run id, a QCoDeS dataset, an ``.h5`` path),
returns a :class:`matplotlib.figure.Figure` and, given ``path``, saves it as a
PNG. Figures are built without ``pyplot`` (no global state, no GUI backend;
rendering is Agg), so they are safe in scripts, tests and threads; in Jupyter
they display as the cell's result.

``path`` may be a ``.png`` file, a directory (the file is then
``run<id>_<plot>.png`` in it), or the data file the plot belongs to
(``run7.h5`` gives ``run7_<plot>.png`` beside it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .loading import FREQUENCY, IN, OUT, POINT, RunRef, load

__all__ = ["plot_smatrix", "plot_map", "plot_flux_map", "phase_deg"]

MHZ = 1e6
AngleUnit = Literal["deg", "rad"]
PhaseMode = Literal["detrended", "wrapped", "none"]


def _as_dataset(data: xr.Dataset | RunRef) -> xr.Dataset:
    return data if isinstance(data, xr.Dataset) else load(data)


def _png_path(path: str | os.PathLike[str], ds: xr.Dataset, what: str) -> Path:
    target = Path(path)
    if target.suffix.lower() == ".png":
        return target
    if target.is_dir() or not target.suffix:
        return target / f"run{ds.attrs.get('run_id', 0)}_{what}.png"
    return target.with_name(f"{target.stem}_{what}.png")


def _finish(fig: Figure, path: str | os.PathLike[str] | None, ds: xr.Dataset, what: str) -> Figure:
    if path is not None:
        target = _png_path(path, ds, what)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=120)
    return fig


def _title(ds: xr.Dataset, extra: str = "") -> str:
    a = ds.attrs
    status = "" if a.get("status") in (None, "completed") else f" [{a.get('status')}]"
    return f"run {a.get('run_id', '?')} · {a.get('kind', '')}{status}{extra}"


def _db(s: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 20 * np.log10(np.abs(s))


def _knob_axis(ds: xr.Dataset, name: str, angle_unit: AngleUnit) -> tuple[np.ndarray, str]:
    """Knob values for display and the axis label with units (rad shown in ``angle_unit``)."""
    coord = ds[name]
    values = np.asarray(coord.values, dtype=float)
    units = str(coord.attrs.get("units", ""))
    if units == "rad" and angle_unit == "deg":
        values, units = np.degrees(values), "deg"
    return values, f"{name} ({units})" if units else name


# --------------------------------------------------------------------------- S-matrix


def _single_point(ds: xr.Dataset, select: Mapping[str, float] | None) -> tuple[xr.DataArray, str]:
    s = ds["S"]
    if select:
        s = s.sel(dict(select), method="nearest")
    extra = [d for d in s.dims if d not in (FREQUENCY, OUT, IN)]
    big = [d for d in extra if s.sizes[d] != 1]
    if big:
        raise ValueError(
            f"plot_smatrix: S has sweep dimensions {big}; choose one point with "
            f"select={{{big[0]!r}: value}} (nearest value is used)"
        )
    s = s.squeeze(extra)
    knobs = [k for k in ds.attrs.get("knobs", []) if k in s.coords and s[k].ndim == 0]
    where = ", ".join(f"{k} = {float(s[k]):.4g} {ds[k].attrs.get('units', '')}" for k in knobs)
    return s.transpose(FREQUENCY, OUT, IN), (f" · {where}" if where else "")


def plot_smatrix(
    data: xr.Dataset | RunRef,
    *,
    select: Mapping[str, float] | None = None,
    ports: Sequence[str] | None = None,
    phase: PhaseMode = "detrended",
    db_floor: float = -80.0,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Grid of |S(out←in)| (dB, solid) and phase (deg, dotted) vs frequency offset.

    Parameters
    ----------
    data
        A dataset from :func:`~labnr.measure.loading.load`, or what ``load`` accepts.
    select
        Knob values of the point to show, e.g. ``{"pump_ab_phase": 1.57}``
        (nearest measured value; ``{"point": 3}`` for point-layout runs).
        Not needed for a single S-matrix.
    ports
        Mode names to show, in order (default: all ports).
    phase
        ``"detrended"`` (default): phase with its straight-line fit removed
        (arg S + 2π δ τ), so cable delay does not hide the device's phase
        response; the fitted τ (cable delay plus whatever slope the device
        adds) is written in each cell. ``"wrapped"``: raw phase in
        (-180, 180]. ``"none"``: magnitude only.
    db_floor
        Lowest |S| shown (dB): deeper notches are clipped so that they do
        not squeeze every other trace (all cells share the dB axis).
    path
        Save the figure as PNG there (see the module docstring).

    Returns
    -------
    matplotlib.figure.Figure
        Row = output port, column = input port; cells of elements that were
        not measured say so.
    """
    ds = _as_dataset(data)
    s, where = _single_point(ds, select)
    names = list(ports) if ports is not None else [str(p) for p in s[IN].values]
    s = s.sel({OUT: names, IN: names})
    n = len(names)
    delta = np.asarray(s[FREQUENCY].values, dtype=float)
    values = np.asarray(s.values)
    fig = Figure(figsize=(3.3 * n + 0.8, 2.5 * n + 0.6), layout="constrained")
    axes = fig.subplots(n, n, sharex=True, sharey=True, squeeze=False)
    twins = []
    for r in range(n):
        for c in range(n):
            twin = _smatrix_cell(axes[r, c], delta, values[:, r, c], (names[r], names[c]), phase)
            axes[r, c].tick_params(labelleft=c == 0, labelbottom=r == n - 1)
            twins.append(twin)
        axes[r, 0].set_ylabel("|S| (dB)")
    _share_phase_axes([t for t in twins if t is not None], phase)
    mag = _db(values)
    if np.isfinite(mag).any():
        lo, hi = float(np.nanmin(mag[np.isfinite(mag)])), float(np.nanmax(mag))
        axes[0, 0].set_ylim(max(lo, db_floor) - 2, max(hi, 0.0) + 2)
    for c in range(n):
        axes[n - 1, c].set_xlabel("offset δ (MHz)")
    legend = {"detrended": "phase + 2πδτ", "wrapped": "phase", "none": ""}[phase]
    key = f"   — |S| (dB, solid), {legend} (deg, dotted)" if legend else "   — |S| (dB)"
    fig.suptitle(_title(ds, where) + key)
    return _finish(fig, path, ds, "smatrix")


def _smatrix_cell(
    ax: Axes, delta: np.ndarray, s: np.ndarray, element: tuple[str, str], phase: PhaseMode
) -> Axes | None:
    """Draw one element; return its phase axis (None without phase)."""
    title = f"S({element[0]}←{element[1]})"
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if np.all(np.isnan(s)):
        ax.text(
            0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="0.5"
        )
        return None
    ax.plot(delta / MHZ, _db(s), color="C0", lw=1.4)
    if phase == "none":
        return None
    deg, delay = phase_deg(s, delta, phase)
    if delay is not None:
        ax.text(0.98, 0.04, f"τ = {delay * 1e9:.1f} ns", transform=ax.transAxes, ha="right",
                va="bottom", color="C1", fontsize=8)  # fmt: skip
    twin = ax.twinx()
    twin.plot(delta / MHZ, deg, color="C1", lw=0.9, ls=":")
    twin.tick_params(axis="y", colors="C1", labelsize=8)
    return twin


def _share_phase_axes(twins: list[Axes], phase: PhaseMode) -> None:
    """One phase scale for every cell; tick labels only in the right-hand column."""
    if not twins:
        return
    if phase == "wrapped":
        lo, hi = -180.0, 180.0
    else:
        lo = min(t.get_ylim()[0] for t in twins)
        hi = max(t.get_ylim()[1] for t in twins)
    for t in twins:
        t.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        if phase == "wrapped":
            t.set_yticks([-180, -90, 0, 90, 180])


def phase_deg(
    s: np.ndarray, delta: np.ndarray, mode: PhaseMode = "detrended"
) -> tuple[np.ndarray, float | None]:
    """Phase of ``s`` along its last (frequency) axis, in degrees, for display.

    Parameters
    ----------
    s
        Complex values, frequency last (1-D trace or (rows, F)).
    delta
        The frequency offsets (Hz).
    mode
        ``"detrended"``: minus one straight line (a slope common to all
        rows, the line delay; each row's own offset), unwrapped for 1-D
        input, wrapped for 2-D input (colour maps); ``"wrapped"``: the raw
        angle, with NaN at jumps for 1-D input so lines draw no vertical strokes.

    Returns
    -------
    degrees : numpy.ndarray
        Same shape as ``s``.
    delay : float or None
        The fitted delay ``-slope / 2 pi`` (s) for ``"detrended"``.
    """
    s = np.asarray(s)
    if mode == "wrapped":
        deg = np.degrees(np.angle(s))
        if deg.ndim == 1:
            deg = deg.copy()
            deg[1:][np.abs(np.diff(deg)) > 180] = np.nan
        return deg, None
    rows = np.atleast_2d(s)
    ok = np.isfinite(rows).all(axis=-1)
    out = np.full(rows.shape, np.nan)
    if not ok.any() or rows.shape[-1] < 3:
        return out.reshape(s.shape), None
    good = rows[ok]
    # coarse slope from the mean phase step (unit phasors): robust to noise and to steps
    # near pi that defeat np.unwrap; then refine with a straight-line fit
    step = np.median(np.diff(delta))
    prod = good[:, 1:] * np.conj(good[:, :-1])
    slope = float(np.angle(np.sum(prod / np.maximum(np.abs(prod), 1e-300)))) / step
    resid = np.unwrap(np.angle(good * np.exp(-1j * slope * delta)), axis=-1)
    fine = float(np.median([np.polyfit(delta, u, 1)[0] for u in resid]))
    slope += fine
    resid -= fine * delta
    resid -= np.median(resid, axis=-1, keepdims=True)
    if s.ndim > 1:
        resid = np.angle(np.exp(1j * resid))  # a colour map wraps anyway
    out[ok] = np.degrees(resid)
    return out.reshape(s.shape), -slope / (2 * np.pi)


# --------------------------------------------------------------------------- 2D maps


def _quantity(
    ds: xr.Dataset, quantity: str, fwd: tuple[str, str] | None, rev: tuple[str, str] | None
) -> tuple[xr.DataArray, str]:
    """The dB quantity (knobs..., frequency) and its colour-bar label."""
    ports = [str(p) for p in ds[IN].values]
    fwd = fwd or (ports[1], ports[0])
    rev = rev or (fwd[1], fwd[0])

    def element(oi: tuple[str, str]) -> xr.DataArray:
        return ds["S"].sel({OUT: oi[0], IN: oi[1]}, drop=True)

    if quantity == "isolation":
        values = _db(element(fwd)) - _db(element(rev))
        label = f"isolation |S({fwd[0]}←{fwd[1]})| / |S({rev[0]}←{rev[1]})| (dB)"
    elif quantity == "forward":
        values, label = _db(element(fwd)), f"forward |S({fwd[0]}←{fwd[1]})| (dB)"
    elif quantity == "reverse":
        values, label = _db(element(rev)), f"reverse |S({rev[0]}←{rev[1]})| (dB)"
    else:
        parts = quantity.split("_")
        if len(parts) != 3 or parts[0] != "S" or parts[1] not in ports or parts[2] not in ports:
            raise ValueError(
                f"plot_map: quantity={quantity!r}; expected 'isolation', 'forward', "
                f"'reverse' or an element S_<out>_<in> with ports {ports}"
            )
        oi = (parts[1], parts[2])
        values, label = _db(element(oi)), f"|S({oi[0]}←{oi[1]})| (dB)"
    return values, label


def _at_frequency(
    values: xr.DataArray, frequency: float | tuple[float, float]
) -> tuple[xr.DataArray, str]:
    if isinstance(frequency, tuple):
        lo, hi = sorted(frequency)
        band = values.sel({FREQUENCY: slice(lo, hi)})
        if band.sizes[FREQUENCY] == 0:
            raise ValueError(f"plot_map: no frequency offsets in the band {frequency} Hz")
        return band.min(FREQUENCY), f"worst over δ ∈ [{lo / MHZ:.3g}, {hi / MHZ:.3g}] MHz"
    at = values.sel({FREQUENCY: frequency}, method="nearest")
    return at, f"δ = {float(at[FREQUENCY]) / MHZ:.3g} MHz"


def plot_map(
    data: xr.Dataset | RunRef,
    quantity: str = "isolation",
    *,
    fwd: tuple[str, str] | None = None,
    rev: tuple[str, str] | None = None,
    frequency: float | tuple[float, float] = 0.0,
    angle_unit: AngleUnit = "deg",
    cmap: str = "viridis",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """A dB quantity vs the two knobs of a 2D map (``map_pumps``).

    Parameters
    ----------
    data
        A two-knob grid dataset from :func:`~labnr.measure.loading.load`, or what
        ``load`` accepts.
    quantity
        ``"isolation"`` (|S_fwd|/|S_rev| in dB), ``"forward"`` (|S_fwd|),
        ``"reverse"`` (|S_rev|) or an element name such as ``"S_b_a"``.
    fwd, rev
        (out, in) mode names of the forward and reverse elements. Default
        forward = port 2 ← port 1, reverse = its transpose.
    frequency
        Offset delta (Hz) at which to evaluate (nearest point), or an
        ``(lo, hi)`` band: the map then shows the worst (lowest) dB value in it.
    angle_unit
        Show knobs whose unit is rad in degrees (``"deg"``) or radians.
    cmap
        Colour map; the default ``viridis`` is perceptually uniform and
        readable in greyscale and with colour-vision deficiencies.
    path
        Save the figure as PNG there (see the module docstring).

    Returns
    -------
    matplotlib.figure.Figure
        Knob 1 on x, knob 2 on y; unmeasured cells (interrupted map) grey;
        the best (highest) value is marked and annotated.

    Raises
    ------
    ValueError
        The data is not a two-knob grid, or ``quantity`` is unknown.
    """
    ds = _as_dataset(data)
    knobs = list(ds.attrs.get("knobs", []))
    if len(knobs) != 2 or ds.attrs.get("layout") != "grid":
        raise ValueError(
            f"plot_map: needs a two-knob grid, got knobs {knobs} with layout "
            f"{ds.attrs.get('layout')!r} (run {ds.attrs.get('run_id')})"
        )
    values, label = _quantity(ds, quantity, fwd, rev)
    values, where = _at_frequency(values, frequency)
    z = np.asarray(values.transpose(*knobs).values, dtype=float)
    x, xlabel = _knob_axis(ds, knobs[0], angle_unit)
    y, ylabel = _knob_axis(ds, knobs[1], angle_unit)
    fig = Figure(figsize=(6.4, 5.0), layout="constrained")
    ax = fig.add_subplot()
    ax.set_facecolor("0.85")  # unmeasured cells
    mesh = ax.pcolormesh(x, y, np.ma.masked_invalid(z).T, shading="nearest", cmap=cmap)
    fig.colorbar(mesh, ax=ax, label=label)
    if np.isfinite(z).any():
        i, j = np.unravel_index(np.nanargmax(z), z.shape)
        ax.plot(x[i], y[j], marker="x", color="white", ms=10, mew=2.5)
        ax.plot(x[i], y[j], marker="x", color="black", ms=8, mew=1.2)
        ax.annotate(
            f"{z[i, j]:.1f} dB",
            (x[i], y[j]),
            xytext=(6, 6),
            textcoords="offset points",
            color="black",
            fontsize=9,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8, "lw": 0},
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    grey = " · grey: not measured" if np.isnan(z).any() else ""
    ax.set_title(f"{_title(ds)} · {where}{grey}", fontsize=10)
    return _finish(fig, path, ds, f"map_{quantity}")


# --------------------------------------------------------------------------- flux


def plot_flux_map(
    data: xr.Dataset | RunRef,
    *,
    ports: Sequence[str] | None = None,
    phase: Literal["detrended", "wrapped"] = "detrended",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Reflection magnitude (dB) and phase (deg) vs flux and frequency offset, per port.

    Parameters
    ----------
    data
        A one-knob dataset (``sweep_flux``: knob ``flux``) from
        :func:`~labnr.measure.loading.load`, or what ``load`` accepts.
    ports
        Mode names whose reflection S(p←p) to show (default: every port with
        a measured reflection).
    phase
        ``"detrended"`` (default): one straight-line phase slope fitted over
        the whole sweep (the line delay τ, given in the colour-bar label) is
        removed so the resonance shows;
        ``"wrapped"``: the raw phase.
    path
        Save the figure as PNG there (see the module docstring).

    Returns
    -------
    matplotlib.figure.Figure
        One row per port: magnitude (``viridis``) and phase (cyclic
        ``twilight``), each with a labelled colour bar. Point-layout runs
        (a flux value measured twice, e.g. up and down) are drawn against the
        point index.

    Raises
    ------
    ValueError
        The data does not have exactly one knob, or no reflection was measured.
    """
    ds = _as_dataset(data)
    knobs = list(ds.attrs.get("knobs", []))
    if len(knobs) != 1:
        raise ValueError(f"plot_flux_map: needs a one-knob sweep, got knobs {knobs}")
    all_ports = [str(p) for p in ds[IN].values]
    refl = {p: ds["S"].sel({OUT: p, IN: p}, drop=True) for p in (ports or all_ports)}
    refl = {p: r for p, r in refl.items() if not bool(np.isnan(r).all())}
    if not refl:
        raise ValueError(f"plot_flux_map: no measured reflection among ports {ports or all_ports}")
    if ds.attrs.get("layout") == "grid":
        x, xlabel = _knob_axis(ds, knobs[0], "deg")
        dim = knobs[0]
    else:
        x, xlabel, dim = np.asarray(ds[POINT].values, float), f"point ({knobs[0]} repeats)", POINT
    delta = np.asarray(ds[FREQUENCY].values, dtype=float)
    fig = Figure(figsize=(10.5, 3.0 * len(refl) + 0.6), layout="constrained")
    axes = fig.subplots(len(refl), 2, sharex=True, sharey=True, squeeze=False)
    for row, (p, r) in enumerate(refl.items()):
        _flux_row(
            fig, axes[row], x, delta, np.asarray(r.transpose(dim, FREQUENCY).values), p, phase
        )
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    fig.suptitle(_title(ds) + " · reflection vs flux")
    return _finish(fig, path, ds, "flux")


def _flux_row(
    fig: Figure,
    axes: Sequence[Axes],
    x: np.ndarray,
    delta: np.ndarray,
    r: np.ndarray,
    port: str,
    phase: Literal["detrended", "wrapped"],
) -> None:
    """Magnitude and phase images of one reflection, r: (knob, frequency)."""
    deg, delay = phase_deg(r, delta, phase)
    name = f"S({port}←{port})"
    phase_label = f"arg {name} (deg)"
    if delay is not None:
        phase_label = f"arg {name} + 2πδτ, τ = {delay * 1e9:.1f} ns (deg)"
    panels = (
        (_db(r), "viridis", f"|{name}| (dB)", (None, None)),
        (deg, "twilight", phase_label, (-180, 180)),
    )
    for ax, (z, cmap, label, (vmin, vmax)) in zip(axes, panels, strict=True):
        ax.set_facecolor("0.85")
        mesh = ax.pcolormesh(
            x, delta / MHZ, np.ma.masked_invalid(z).T, shading="nearest", cmap=cmap,
            vmin=vmin, vmax=vmax,
        )  # fmt: skip
        fig.colorbar(mesh, ax=ax, label=label)
        ax.set_ylabel(f"offset δ from {port} band (MHz)")


def plot_sweep(
    data: xr.Dataset | RunRef,
    elements: Sequence[str] | None = None,
    *,
    frequency: float = 0.0,
    angle_unit: AngleUnit = "deg",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """|S| (dB) of chosen elements at one offset vs the single knob of a 1D sweep.

    Parameters
    ----------
    data
        A one-knob dataset from :func:`~labnr.measure.loading.load`, or what
        ``load`` accepts (e.g. ``sweep_pump_phase``).
    elements
        Element names such as ``"S_b_a"``; default every measured element.
    frequency
        Offset delta (Hz) at which to read each element (nearest point).
    angle_unit
        Unit of a phase knob on the x axis.
    path
        Where to save the PNG (see :func:`plot_smatrix`).
    """
    ds = _as_dataset(data)
    knobs = [d for d in ds["S"].dims if d not in (FREQUENCY, OUT, IN)]
    if len(knobs) != 1:
        raise ValueError(f"plot_sweep needs a one-knob sweep; this run has knobs {knobs}")
    x, xlabel = _knob_axis(ds, knobs[0], angle_unit)
    at = ds["S"].sel({FREQUENCY: frequency}, method="nearest")
    names = (
        list(elements)
        if elements
        else [
            f"S_{o}_{i}"
            for o in ds[OUT].values
            for i in ds[IN].values
            if np.isfinite(at.sel({OUT: o, IN: i}).values).any()
        ]
    )
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for name in names:
        _, o, i = name.split("_", 2)
        ax.plot(x, _db(at.sel({OUT: o, IN: i}).values), marker=".", label=f"S({o}←{i})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("|S| (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    ax.set_title(f"{_title(ds)} · δ = {float(at[FREQUENCY]) / MHZ:.3g} MHz", fontsize=9)
    fig.tight_layout()
    return _finish(fig, path, ds, "sweep")
