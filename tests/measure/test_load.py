"""labnr.measure.loading: QCoDeS runs in the labnr layout -> xarray with physical dims."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_runs import (
    MAP_AMPS,
    MAP_PHASES,
    PHASES,
    SyntheticRun,
    circulator_s,
    flux_s,
    write_run,
)

from labnr.measure.loading import element_frequencies, load


def _assert_points(ds, run: SyntheticRun) -> None:
    """Every measured point is in ``ds`` with the S values that were written.

    Knob values are compared to 1e-14: QCoDeS reads "numeric" parameters back
    through SQLite's 15-significant-digit text form (S arrays are exact blobs).
    """
    knobs = [k[0] for k in run.knobs]
    assert ds.attrs["points_measured"] == len(run.points)
    if knobs:
        assert int((ds["acquisition_order"] >= 0).sum()) == len(run.points)
    for n, point in enumerate(run.points):
        where = dict(zip(knobs, point, strict=True))
        s = ds["S"].sel(where, method="nearest") if where else ds["S"]
        for k, v in where.items():
            assert float(s[k]) == pytest.approx(v, rel=1e-14)
        np.testing.assert_array_equal(s.transpose("frequency", "out", "in").values, run.s_at(point))
        if where:
            assert int(ds["acquisition_order"].sel(where, method="nearest")) == n


def test_single_smatrix(smatrix_run: SyntheticRun) -> None:
    ds = load(smatrix_run.run_id)
    assert ds["S"].dims == ("frequency", "out", "in")
    assert ds["S"].shape == (401, 3, 3)
    assert ds["S"].dtype == np.complex128
    assert list(ds["out"].values) == list(ds["in"].values) == ["a", "b", "c"]
    np.testing.assert_array_equal(ds["frequency"].values, smatrix_run.frequency)
    assert ds["frequency"].attrs == {"units": "Hz", "long_name": "offset from band centre"}
    _assert_points(ds, smatrix_run)
    # the ideal circulator at delta = 0 is the permutation a -> b -> c -> a
    at0 = np.abs(ds["S"].sel(frequency=0.0, method="nearest"))
    assert float(at0.sel(out="b", **{"in": "a"})) == pytest.approx(1.0, abs=1e-9)
    assert float(at0.sel(out="a", **{"in": "b"})) == pytest.approx(0.0, abs=1e-9)


def test_attrs_carry_metadata_snapshot_and_timestamps(smatrix_run: SyntheticRun) -> None:
    a = load(smatrix_run.run_id).attrs
    assert a["run_id"] == smatrix_run.run_id
    assert a["kind"] == "measure_smatrix"
    assert a["status"] == "completed"
    assert a["labnr_version"] == "0.1.0"
    assert a["ports"] == ["a", "b", "c"] and a["knobs"] == []
    assert a["band_centres"] == {"a": 5.310e9, "b": 6.470e9, "c": 7.905e9}
    assert a["receiver_offsets"]["b,a"] == pytest.approx(6.470e9 - 5.310e9)
    assert a["config"] == {"device": "jpc_circulator", "kappa": 20e6}
    assert isinstance(a["snapshot"], dict)
    assert a["snapshot"]["station"]["parameters"]["vna_power"]["value"] == -30.0
    assert len(a["guid"]) == 36
    assert a["run_timestamp"] and a["completed_timestamp"]
    assert a["completed_timestamp_raw"] >= a["run_timestamp_raw"] > 0
    assert a["layout"] == "grid"
    assert Path(a["database"]) == smatrix_run.db


def test_phase_sweep_is_one_knob_axis(phase_run: SyntheticRun) -> None:
    ds = load(phase_run.run_id)
    assert ds["S"].dims == ("pump_ab_phase", "frequency", "out", "in")
    assert ds["S"].shape == (21, 401, 3, 3)
    np.testing.assert_allclose(ds["pump_ab_phase"].values, PHASES, rtol=1e-14)
    assert ds["pump_ab_phase"].attrs["units"] == "rad"
    assert ds.attrs["kind"] == "sweep_pump_phase"
    _assert_points(ds, phase_run)


def test_map_is_a_full_grid(map_run: SyntheticRun) -> None:
    ds = load(map_run.run_id)
    assert ds["S"].dims == ("pump_ab_phase", "pump_ab_amplitude", "frequency", "out", "in")
    assert ds["S"].shape == (10, 10, 401, 3, 3)
    np.testing.assert_allclose(ds["pump_ab_phase"].values, MAP_PHASES, rtol=1e-14)
    np.testing.assert_allclose(ds["pump_ab_amplitude"].values, MAP_AMPS, rtol=1e-14)
    assert ds["pump_ab_amplitude"].attrs["units"] == "V"
    assert not np.isnan(ds["S"].values).any()
    _assert_points(ds, map_run)
    # row-major acquisition: the first knob is the outer loop
    np.testing.assert_array_equal(ds["acquisition_order"].values, np.arange(100).reshape(10, 10))


def test_interrupted_map_has_nan_where_not_measured(interrupted_map_run: SyntheticRun) -> None:
    ds = load(interrupted_map_run.run_id)
    assert ds.attrs["status"] == "interrupted"
    assert ds.attrs["layout"] == "grid"
    assert ds["S"].shape[:2] == (5, 10)  # 47 points: 4 full rows + 7 of the fifth
    measured = ds["acquisition_order"].values >= 0
    assert measured.sum() == 47
    nan_cells = np.isnan(ds["S"].values).all(axis=(2, 3, 4))
    np.testing.assert_array_equal(nan_cells, ~measured)
    _assert_points(ds, interrupted_map_run)


def test_flux_sweep_stores_reflections_only(flux_run: SyntheticRun) -> None:
    ds = load(flux_run.run_id)
    assert ds["S"].dims == ("flux", "frequency", "out", "in")
    assert ds["flux"].attrs["units"] == "Phi0"
    s = ds["S"].values
    diag = np.eye(3, dtype=bool)
    assert not np.isnan(s[..., diag]).any()
    assert np.isnan(s[..., ~diag]).all()
    _assert_points(ds, flux_run)


def test_repeated_knob_values_give_point_layout(measure_db: Path) -> None:
    up = np.linspace(-0.2, 0.2, 5)
    points = [[v] for v in np.concatenate([up, up[::-1]])]  # hysteresis: up then down
    run = write_run("sweep_flux", [("flux", "Phi0", up)], flux_s, points=points, nfreq=51)
    ds = load(run.run_id)
    assert ds.attrs["layout"] == "points"
    assert ds["S"].dims == ("point", "frequency", "out", "in")
    assert ds.sizes["point"] == 10
    np.testing.assert_allclose(ds["flux"].values, np.ravel(points), rtol=1e-14)
    for n, point in enumerate(run.points):
        np.testing.assert_array_equal(ds["S"].isel(point=n).values, run.s_at(point))


def test_scattered_points_are_not_forced_onto_a_grid(measure_db: Path) -> None:
    rng = np.random.default_rng(3)
    points = rng.uniform(0.5, 2.5, (12, 2))
    knobs = [("pump_ab_phase", "rad", points[:, 0]), ("pump_ab_amplitude", "V", points[:, 1])]
    run = write_run("map_pumps", knobs, circulator_s, points=points, nfreq=21)
    ds = load(run.run_id)
    assert ds.attrs["layout"] == "points" and ds.sizes["point"] == 12
    np.testing.assert_allclose(ds["pump_ab_amplitude"].values, points[:, 1], rtol=1e-14)


def test_run_stopped_before_the_first_point(measure_db: Path) -> None:
    knobs = [("pump_ab_phase", "rad", PHASES)]
    run = write_run("sweep_pump_phase", knobs, circulator_s, limit=0)
    ds = load(run.run_id)
    assert ds.attrs["status"] == "interrupted" and ds.attrs["points_measured"] == 0
    assert ds["S"].size == 0


def test_db_argument_and_dataset_object(smatrix_run: SyntheticRun, tmp_path: Path) -> None:
    import qcodes as qc
    from qcodes.dataset import initialise_or_create_database_at

    initialise_or_create_database_at(tmp_path / "other.db")  # current DB is now another one
    ds = load(smatrix_run.run_id, db=smatrix_run.db)
    assert ds.attrs["run_id"] == smatrix_run.run_id and ds.attrs["kind"] == "measure_smatrix"
    assert Path(qc.config["core"]["db_location"]).name == "other.db"
    with pytest.raises(ValueError, match="run id 99 is not in the database"):
        load(99, db=smatrix_run.db)
    with pytest.raises(FileNotFoundError, match="no such database"):
        load(1, db=tmp_path / "missing.db")


def test_dataset_object_is_accepted(smatrix_run: SyntheticRun) -> None:
    from qcodes.dataset import load_by_id

    dataset = load_by_id(smatrix_run.run_id)
    try:
        ds = load(dataset)
    finally:
        dataset.conn.close()
    assert ds.attrs["run_id"] == smatrix_run.run_id


def test_json_encoded_string_metadata_is_decoded(measure_db: Path) -> None:
    from qcodes.dataset import load_by_id

    run = write_run("measure_smatrix", [], circulator_s, nfreq=11)
    dataset = load_by_id(run.run_id)
    dataset.add_metadata("labnr_kind", json.dumps("measure_smatrix"))
    dataset.conn.close()
    assert load(run.run_id).attrs["kind"] == "measure_smatrix"


def test_bad_inputs_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="expected a run id"):
        load(1.5)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "nothing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        load(tmp_path / "text.h5")


def test_element_frequencies_of_a_converting_element(smatrix_run: SyntheticRun) -> None:
    ds = load(smatrix_run.run_id)
    stim, recv = element_frequencies(ds, "b", "a")
    np.testing.assert_allclose(stim, 5.310e9 + smatrix_run.frequency)
    np.testing.assert_allclose(recv, 6.470e9 + smatrix_run.frequency)
    with pytest.raises(KeyError, match="no band centre for mode 'z'"):
        element_frequencies(ds, "a", "z")


def test_runs_of_the_measurement_core_load_export_and_plot(operating, tmp_path: Path) -> None:
    """Contract check against the real writer: a 2D pump map on the virtual lab."""
    from labnr.measure import map_pumps
    from labnr.measure.export import export_hdf5
    from labnr.measure.plots import plot_map

    phases, amps = np.linspace(0, np.pi, 3), np.array([0.05, 0.1])
    run = map_pumps(operating, ("ab", "phase"), phases, ("ab", "amplitude"), amps, points=51,
                    progress=False)  # fmt: skip
    ds = load(run.run_id)
    assert ds["S"].dims == ("pump_ab_phase", "pump_ab_amplitude", "frequency", "out", "in")
    assert ds["S"].shape == (3, 2, 51, 3, 3) and not np.isnan(ds["S"].values).any()
    assert ds.attrs["kind"] == "map_pumps" and ds.attrs["status"] == "completed"
    assert ds.attrs["points_measured"] == ds.attrs["points"] == 6
    assert ds["pump_ab_phase"].attrs["units"] == "rad"
    raw = run.get_parameter_data()["S_b_a"]["S_b_a"].reshape(6, 51)
    np.testing.assert_array_equal(ds["S"].sel(out="b", **{"in": "a"}).values.reshape(6, 51), raw)
    h5 = export_hdf5(run.run_id, tmp_path / "map.h5")
    assert load(h5).identical(ds)
    plot_map(h5, path=h5)
    assert (tmp_path / "map_map_isolation.png").is_file()
