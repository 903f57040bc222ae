"""Every finished run is also an HDF5 file next to the data, identical to the database's."""

from __future__ import annotations

import numpy as np
import skrf
import xarray as xr
from lab_sessions import jpc, restore_db  # noqa: F401

from labnr.measure import load, measure_smatrix, to_touchstone
from labnr.session import LabSession


def test_completed_run_is_exported_and_round_trips(jpc: LabSession, tmp_path) -> None:  # noqa: F811
    ds = measure_smatrix(jpc, points=101, progress=False)
    path = jpc.data_dir / f"run_{ds.run_id}_{ds.guid}.h5"
    assert path.is_file()
    assert ds.metadata["labnr_export"] == path.name  # recovery has nothing left to do
    from_db, from_file = load(ds.run_id), load(path)
    xr.testing.assert_identical(from_db, from_file)
    assert from_file.attrs["status"] == "completed"
    # the reflections (measured around each band) open in scikit-rf as a Touchstone file
    S = from_file["S"].isel(point=0) if "point" in from_file["S"].dims else from_file["S"]
    out = to_touchstone(from_file, tmp_path / "refl_a.s1p", ports=["a"])
    net = skrf.Network(str(out))
    np.testing.assert_allclose(net.s[:, 0, 0], S.sel(out="a", **{"in": "a"}).values, rtol=1e-6)
