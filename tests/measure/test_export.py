"""labnr.measure.export: HDF5 round trip, NetCDF via QCoDeS, Touchstone via scikit-rf."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import skrf
import xarray as xr
from synthetic_runs import SyntheticRun

from labnr.measure.export import export_hdf5, export_netcdf, to_touchstone
from labnr.measure.loading import load

RUNS = ["smatrix_run", "phase_run", "map_run", "interrupted_map_run", "flux_run"]
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_export.py"


# --------------------------------------------------------------------------- HDF5


@pytest.mark.parametrize("fixture", RUNS)
def test_hdf5_round_trip_is_identical(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    run: SyntheticRun = request.getfixturevalue(fixture)
    path = export_hdf5(run.run_id, tmp_path / "run.h5")
    assert path == tmp_path / "run.h5"
    original = load(run.run_id)
    back = load(path)
    xr.testing.assert_identical(back, original)  # values, dims, coords, all attrs
    assert back.attrs == original.attrs
    for name in original.variables:
        assert back[name].dtype == original[name].dtype
        assert back[name].attrs == original[name].attrs
    # and what was measured is all there
    assert back.attrs["points_measured"] == len(run.points)


def test_hdf5_layout_is_the_documented_one(map_run: SyntheticRun, tmp_path: Path) -> None:
    path = export_hdf5(map_run.run_id, tmp_path / "map.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["labnr_format"] == "labnr-run" and f.attrs["format_version"] == 1
        s = f["S"]
        assert s.dtype == np.complex128 and s.shape == (10, 10, 401, 3, 3)
        assert list(s.attrs["dims"]) == [
            "pump_ab_phase", "pump_ab_amplitude", "frequency", "out", "in"
        ]  # fmt: skip
        assert s.attrs["units"] == "" and s.attrs["label"] == "S(out←in)"
        freq = f["coords/frequency"]
        assert freq.attrs["units"] == "Hz" and list(freq.attrs["dims"]) == ["frequency"]
        np.testing.assert_array_equal(freq[()], map_run.frequency)
        assert f["coords/pump_ab_phase"].attrs["units"] == "rad"
        assert list(f["coords/out"].asstr()[()]) == ["a", "b", "c"]
        assert f["coords/acquisition_order"].dtype == np.int64
        # dimension scales: generic HDF5 tools see the axes of /S
        assert s.dims[2][0].name == "/coords/frequency"
        root = f.attrs
        assert int(root["run_id"]) == map_run.run_id and root["kind"] == "map_pumps"
        assert root["status"] == "completed" and isinstance(root["guid"], str)
        assert root["labnr_version"] == "0.1.0"
        assert json.loads(root["snapshot"])["station"]["parameters"]["vna_power"]["value"] == -30
        assert json.loads(root["config"])["device"] == "jpc_circulator"
        assert json.loads(root["band_centres"])["b"] == 6.47e9
        assert "b,a" in json.loads(root["receiver_offsets"])
        assert root["run_timestamp"] and root["completed_timestamp"]
        assert {"snapshot", "config", "band_centres", "ports"} <= set(root["json_attrs"])


def test_hdf5_from_dataset_into_directory_with_compression(
    phase_run: SyntheticRun, tmp_path: Path
) -> None:
    ds = load(phase_run.run_id)
    out = tmp_path / "exports"  # no suffix: a directory, created
    path = export_hdf5(ds, out, compression="gzip")
    assert path.parent == out and path.name == f"run_{phase_run.run_id}_{ds.attrs['guid']}.h5"
    assert [p.name for p in out.iterdir()] == [path.name]  # no temporary file left
    with h5py.File(path, "r") as f:
        assert f["S"].compression == "gzip"
    xr.testing.assert_identical(load(path), ds)


def test_hdf5_from_db_argument(smatrix_run: SyntheticRun, tmp_path: Path) -> None:
    path = export_hdf5(smatrix_run.run_id, tmp_path / "x.h5", db=smatrix_run.db)
    assert load(path).attrs["guid"] == load(smatrix_run.run_id).attrs["guid"]


def test_not_a_labnr_file_is_refused(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="labnr_format"):
        load(tmp_path / "other.h5")


# --------------------------------------------------------------------------- NetCDF


def test_netcdf_through_qcodes(smatrix_run: SyntheticRun, tmp_path: Path) -> None:
    path = export_netcdf(smatrix_run.run_id, tmp_path / "nc")
    assert path.suffix == ".nc" and path.is_file()
    with xr.open_dataset(path, engine="h5netcdf") as nc:
        expected = load(smatrix_run.run_id)["S"].sel(out="b", **{"in": "a"}).values
        np.testing.assert_array_equal(nc["S_b_a"].values.ravel(), expected)


# --------------------------------------------------------------------------- Touchstone


def test_touchstone_s3p_reads_back_with_skrf(smatrix_run: SyntheticRun, tmp_path: Path) -> None:
    ds = load(smatrix_run.run_id)
    path = to_touchstone(ds, tmp_path / "circulator")
    assert path == tmp_path / "circulator.s3p"
    net = skrf.Network(str(path))
    np.testing.assert_array_equal(net.s, ds["S"].values)
    np.testing.assert_array_equal(net.f, smatrix_run.frequency + 5.310e9)  # delta + f_a
    assert list(net.port_names) == ["a", "b", "c"]
    assert np.all(net.z0 == 50)
    assert "band centre of port 1, mode a" in net.comments
    assert "offset(b,a) = 1.16e+09 Hz" in net.comments


def test_touchstone_port_subset_and_map_slice(map_run: SyntheticRun, tmp_path: Path) -> None:
    ds = load(map_run.run_id)
    with pytest.raises(ValueError, match="select one point first"):
        to_touchstone(ds, tmp_path / "x")
    point = ds.sel(pump_ab_phase=np.pi / 2, pump_ab_amplitude=0.1, method="nearest")
    path = to_touchstone(point, tmp_path / "ba.s2p", ports=["b", "a"])
    assert path.name == "ba.s2p"
    net = skrf.Network(str(path))
    expected = point["S"].sel(out=["b", "a"], **{"in": ["b", "a"]}).values
    np.testing.assert_array_equal(net.s, expected)
    np.testing.assert_array_equal(net.f, map_run.frequency + 6.470e9)  # port 1 is mode b


def test_touchstone_needs_every_element_or_a_fill(flux_run: SyntheticRun, tmp_path: Path) -> None:
    point = load(flux_run.run_id).isel(flux=0)
    with pytest.raises(ValueError, match=r"S\(a<-b\).*not measured"):
        to_touchstone(point, tmp_path / "x")
    s1p = skrf.Network(str(to_touchstone(point, tmp_path / "a", ports=["a"])))
    np.testing.assert_array_equal(s1p.s[:, 0, 0], point["S"].sel(out="a", **{"in": "a"}).values)
    s3p = skrf.Network(str(to_touchstone(point, tmp_path / "all", fill=0)))
    assert np.all(s3p.s[:, 0, 1] == 0)


def test_touchstone_from_plain_array(tmp_path: Path) -> None:
    s = np.zeros((5, 2, 2), complex)
    s[:, 1, 0] = 0.5j
    delta = np.linspace(-1e6, 1e6, 5)
    with pytest.raises(ValueError, match="pass band_centre"):
        to_touchstone(s, tmp_path / "x", frequency=delta)
    path = to_touchstone(s, tmp_path / "x", frequency=delta, band_centre=5e9, ports=["in", "out"])
    net = skrf.Network(str(path))
    np.testing.assert_array_equal(net.s, s)
    np.testing.assert_array_equal(net.f, delta + 5e9)
    with pytest.raises(ValueError, match="must be positive"):
        to_touchstone(s, tmp_path / "y", frequency=delta, band_centre=0.0)


# --------------------------------------------------------------------------- benchmark


def test_export_benchmark_runs(tmp_path: Path) -> None:
    """Short version of benchmarks/bench_export.py (the full one: 10 x 10 x 1601 x 3 x 3)."""
    spec = importlib.util.spec_from_file_location("bench_export", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.run(tmp_path, shape=(3, 4), nfreq=101, repeats=1)
    assert result["points"] == 12
    assert result["export_s"] > 0 and result["load_h5_s"] > 0 and result["load_db_s"] > 0
    assert result["file_bytes"] > 12 * 101 * 9 * 16


def test_touchstone_from_data_array_needs_band_centre(
    smatrix_run: SyntheticRun, tmp_path: Path
) -> None:
    s = load(smatrix_run.run_id)["S"]  # a DataArray carries no band centres
    with pytest.raises(ValueError, match="pass band_centre"):
        to_touchstone(s, tmp_path / "x")
    net = skrf.Network(str(to_touchstone(s, tmp_path / "x", band_centre=5e9)))
    np.testing.assert_array_equal(net.s, s.values)
