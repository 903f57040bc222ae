"""labnr.measure.plots: figures that show the data, labelled, and saved as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from synthetic_runs import SyntheticRun

from labnr.measure.export import export_hdf5
from labnr.measure.loading import load
from labnr.measure.plots import phase_deg, plot_flux_map, plot_map, plot_smatrix


def _png_ok(path: Path) -> None:
    assert path.is_file()
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 400
    assert image[..., :3].std() > 0.05  # not blank


def _mesh(ax) -> QuadMesh:
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    return mesh


def test_smatrix_grid(smatrix_run: SyntheticRun, tmp_path: Path) -> None:
    fig = plot_smatrix(smatrix_run.run_id, path=tmp_path)
    assert isinstance(fig, Figure)
    _png_ok(tmp_path / f"run{smatrix_run.run_id}_smatrix.png")
    main = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in main[:3]] == ["S(a←a)", "S(a←b)", "S(a←c)"]
    assert len(main) == 9
    assert all(ax.get_xlabel() == "offset δ (MHz)" for ax in main[6:])
    assert main[0].get_ylabel() == "|S| (dB)"
    # the plotted S(b<-a) magnitude is the data, in dB, against MHz offsets
    x, y = main[3].lines[0].get_data()
    s_ba = load(smatrix_run.run_id)["S"].sel(out="b", **{"in": "a"}).values
    np.testing.assert_allclose(x, smatrix_run.frequency / 1e6)
    np.testing.assert_allclose(y, 20 * np.log10(np.abs(s_ba)))


def test_smatrix_of_one_map_point_needs_select(map_run: SyntheticRun, tmp_path: Path) -> None:
    ds = load(map_run.run_id)
    with pytest.raises(ValueError, match="select="):
        plot_smatrix(ds)
    fig = plot_smatrix(ds, select={"pump_ab_phase": 1.6, "pump_ab_amplitude": 0.1},
                       ports=["a", "b"], path=tmp_path / "point.png")  # fmt: skip
    _png_ok(tmp_path / "point.png")
    assert "pump_ab_phase = 1.637 rad" in fig.get_suptitle()
    assert len([ax for ax in fig.axes if ax.get_title()]) == 4


def test_unmeasured_elements_are_marked(flux_run: SyntheticRun) -> None:
    fig = plot_smatrix(flux_run.run_id, select={"flux": 0.0})
    main = [ax for ax in fig.axes if ax.get_title()]
    assert [t.get_text() for t in main[1].texts] == ["not measured"]
    assert main[0].lines  # S(a<-a) is drawn


def test_isolation_map_finds_the_circulator_point(map_run: SyntheticRun, tmp_path: Path) -> None:
    """The ideal circulator sits at loop phase pi/2 and |g| = kappa/2 (amplitude 0.1 V)."""
    fig = plot_map(map_run.run_id, path=tmp_path)
    _png_ok(tmp_path / f"run{map_run.run_id}_map_isolation.png")
    ax, cbar = fig.axes
    assert ax.get_xlabel() == "pump_ab_phase (deg)" and ax.get_ylabel() == "pump_ab_amplitude (V)"
    assert cbar.get_ylabel() == "isolation |S(b←a)| / |S(a←b)| (dB)"
    assert "δ = 0" in ax.get_title()
    z = _mesh(ax).get_array().reshape(10, 10)  # (amplitude, phase)
    ds = load(map_run.run_id).sel(frequency=0.0, method="nearest")
    s = ds["S"]
    iso = 20 * np.log10(
        np.abs(s.sel(out="b", **{"in": "a"})) / np.abs(s.sel(out="a", **{"in": "b"}))
    )
    np.testing.assert_allclose(z, iso.values.T)
    j, i = np.unravel_index(np.argmax(z), z.shape)
    assert abs(ds["pump_ab_phase"].values[i] - np.pi / 2) < 0.14  # one grid step
    assert abs(ds["pump_ab_amplitude"].values[j] - 0.1) < 0.009
    assert z.max() > 20 and z.min() < 10


def test_map_quantities_band_and_units(map_run: SyntheticRun, tmp_path: Path) -> None:
    ds = load(map_run.run_id)
    fig = plot_map(ds, "forward", frequency=(-5e6, 5e6), angle_unit="rad")
    ax, cbar = fig.axes
    assert ax.get_xlabel() == "pump_ab_phase (rad)"
    assert cbar.get_ylabel() == "forward |S(b←a)| (dB)"
    assert "worst over δ ∈ [-5, 5] MHz" in ax.get_title()
    band = ds["S"].sel(out="b", **{"in": "a"}).sel(frequency=slice(-5e6, 5e6))
    worst = (20 * np.log10(np.abs(band))).min("frequency")
    np.testing.assert_allclose(_mesh(ax).get_array().reshape(10, 10), worst.values.T)
    fig = plot_map(ds, "S_c_b", fwd=("c", "b"))
    assert fig.axes[1].get_ylabel() == "|S(c←b)| (dB)"
    with pytest.raises(ValueError, match="quantity='S_x_a'"):
        plot_map(ds, "S_x_a")


def test_interrupted_map_shows_unmeasured_cells(
    interrupted_map_run: SyntheticRun, tmp_path: Path
) -> None:
    h5 = export_hdf5(interrupted_map_run.run_id, tmp_path / "run.h5")
    fig = plot_map(h5, path=h5)  # PNG next to the data file
    _png_ok(tmp_path / "run_map_isolation.png")
    z = _mesh(fig.axes[0]).get_array()
    assert np.ma.count_masked(z) == 3 and z.count() == 47
    assert (
        "interrupted" in fig.axes[0].get_title() and "grey: not measured" in fig.axes[0].get_title()
    )


def test_map_needs_two_knobs(phase_run: SyntheticRun) -> None:
    with pytest.raises(ValueError, match="two-knob grid"):
        plot_map(phase_run.run_id)


def test_flux_map(flux_run: SyntheticRun, tmp_path: Path) -> None:
    fig = plot_flux_map(flux_run.run_id, path=tmp_path / "flux.png")
    _png_ok(tmp_path / "flux.png")
    panels, cbars = fig.axes[:6], fig.axes[6:]  # 3 ports x (magnitude, phase), colour bars
    assert len(cbars) == 6
    assert panels[-1].get_xlabel() == "flux (Phi0)"
    assert panels[0].get_ylabel() == "offset δ from a band (MHz)"
    labels = [ax.get_ylabel() for ax in cbars]
    assert labels[0] == "|S(a←a)| (dB)"
    assert labels[1].startswith("arg S(a←a) + 2πδτ, τ = ") and labels[1].endswith(" ns (deg)")
    # the resonance (reflection dip) follows the flux: deepest near delta = 10 MHz at zero flux
    z = _mesh(panels[0]).get_array().reshape(301, 41)  # (frequency, flux)
    dip = flux_run.frequency[np.argmin(z[:, 20])]
    assert abs(dip - 10e6) < 1e6
    with pytest.raises(ValueError, match="one-knob sweep"):
        plot_flux_map(load(flux_run.run_id).isel(flux=0).assign_attrs(knobs=[]))


def test_phase_detrending_recovers_the_line_delay() -> None:
    """95 ns of cable over 5 MHz steps (3 rad per step, where np.unwrap fails with noise)."""
    rng = np.random.default_rng(7)
    delta = np.linspace(-750e6, 750e6, 301)
    s = np.exp(-2j * np.pi * delta * 95e-9 + 0.4j)
    noisy = s * np.exp(1j * rng.normal(0, 0.15, (5, delta.size)))
    deg, delay = phase_deg(noisy, delta)
    assert delay == pytest.approx(95e-9, abs=0.5e-9)
    assert np.sqrt(np.mean(deg**2)) < 15  # only the noise is left
    deg1, delay1 = phase_deg(s, delta)
    assert delay1 == pytest.approx(95e-9, rel=1e-9) and np.abs(deg1).max() < 1e-6
    wrapped, none = phase_deg(s, delta, "wrapped")
    assert none is None and np.isnan(wrapped).any()  # broken at the jumps
