"""Benchmark: HDF5 export and loading of a 100-point 2D pump map (issue #5).

Run: ``python benchmarks/bench_export.py``. Writes a 10 x 10 map of a 3 x 3,
1601-point S-matrix to a temporary QCoDeS database, in the measurement core's
layout (docs/data_format.md; synthetic values, no instruments), then times

- ``export_hdf5(run_id, path)``: database -> xarray -> ``.h5`` (the figure the
  issue asks for),
- ``load(path)``: ``.h5`` -> xarray,
- ``load(run_id)``: database -> xarray (included in the export time),

and prints the medians, the file size and the database write time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import qcodes as qc
from qcodes.dataset import (
    Measurement,
    initialise_or_create_database_at,
    load_or_create_experiment,
)

from labnr.measure.export import export_hdf5
from labnr.measure.loading import load

PORTS = ["a", "b", "c"]
CENTRES = {"a": 5.310e9, "b": 6.470e9, "c": 7.905e9}


def write_map(shape: tuple[int, int], nfreq: int, seed: int = 0) -> int:
    """Write a synthetic 2-knob map to the current QCoDeS database; return its run id."""
    rng = np.random.default_rng(seed)
    knobs = {"pump_ab_phase": ("rad", np.linspace(0, np.pi, shape[0])),
             "pump_bc_amplitude": ("V", np.linspace(0.05, 0.15, shape[1]))}  # fmt: skip
    exp = load_or_create_experiment("bench_export", sample_name="synthetic")
    meas = Measurement(exp=exp, name="map_pumps")
    for name, (unit, _) in knobs.items():
        meas.register_custom_parameter(name, unit=unit, label=name)
    meas.register_custom_parameter("frequency", unit="Hz", paramtype="array",
                                   label="offset from band centre")  # fmt: skip
    names = [f"S_{o}_{i}" for o in PORTS for i in PORTS]
    for name in names:
        meas.register_custom_parameter(name, paramtype="array", setpoints=(*knobs, "frequency"))
    meas.set_shapes({name: (*shape, nfreq) for name in names})
    delta = np.linspace(-40e6, 40e6, nfreq)
    with meas.run() as saver:
        ds = saver.dataset
        ds.add_metadata("labnr_kind", "map_pumps")
        ds.add_metadata("labnr_ports", json.dumps(PORTS))
        ds.add_metadata("labnr_knobs", json.dumps(list(knobs)))
        ds.add_metadata("labnr_band_centres", json.dumps(CENTRES))
        offsets = {f"{o},{i}": CENTRES[o] - CENTRES[i] for o in PORTS for i in PORTS}
        ds.add_metadata("labnr_receiver_offsets", json.dumps(offsets))
        for point in itertools.product(*(v for _, v in knobs.values())):
            s = rng.normal(size=(9, nfreq)) + 1j * rng.normal(size=(9, nfreq))
            saver.add_result(
                *zip(knobs, point, strict=True),
                ("frequency", delta),
                *zip(names, s, strict=True),
            )
        ds.add_metadata("labnr_status", "completed")
    ds.conn.close()
    return ds.run_id


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(
    workdir: Path, shape: tuple[int, int] = (10, 10), nfreq: int = 1601, repeats: int = 5
) -> dict[str, float]:
    """Time DB write, HDF5 export, and both loads in ``workdir``; QCoDeS's DB is restored."""
    old = qc.config["core"]["db_location"]
    initialise_or_create_database_at(workdir / "bench.db")
    try:
        t0 = time.perf_counter()
        run_id = write_map(shape, nfreq)
        write_s = time.perf_counter() - t0
        path = workdir / "map.h5"
        export_s = _median_time(lambda: export_hdf5(run_id, path), repeats)
        load_h5_s = _median_time(lambda: load(path), repeats)
        load_db_s = _median_time(lambda: load(run_id), repeats)
        ds = load(path)
        assert int((ds["acquisition_order"] >= 0).sum()) == shape[0] * shape[1]
    finally:
        qc.config["core"]["db_location"] = old
    return {
        "points": shape[0] * shape[1],
        "write_db_s": write_s,
        "export_s": export_s,
        "load_h5_s": load_h5_s,
        "load_db_s": load_db_s,
        "file_bytes": path.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--points", type=int, default=1601)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = run(Path(tmp), nfreq=args.points, repeats=args.repeats)
    mb = r["file_bytes"] / 1e6
    print(f"2D map: {r['points']} points x {args.points} offsets x 3x3, {mb:.1f} MB HDF5")
    print(f"  write to QCoDeS DB (whole sweep's storage): {r['write_db_s'] * 1e3:8.1f} ms")
    print(f"  export_hdf5(run_id) (DB -> .h5), median:    {r['export_s'] * 1e3:8.1f} ms")
    print(f"    of which load(run_id) (DB -> xarray):     {r['load_db_s'] * 1e3:8.1f} ms")
    print(f"  load(.h5) (-> xarray), median:              {r['load_h5_s'] * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
