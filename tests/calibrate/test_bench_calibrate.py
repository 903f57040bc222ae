"""The calibration benchmark's logic on one seed with tiny baselines."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_calibrate.py"


def test_one_seed_and_tiny_baselines() -> None:
    spec = importlib.util.spec_from_file_location("bench_calibrate", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.run_seed(1, grid=3, nm_reads=12)
    assert r["ok"]
    assert r["isolation_db"] >= 40.0 and r["insertion_loss_db"] <= 0.5
    assert 0 < r["acquisitions"] <= 60 and r["virtual_time_s"] > 0
    assert r["grid"]["acquisitions"] == 3 * 3 * 6
    assert r["nelder_mead"]["reads"] == 12 and r["nelder_mead"]["acquisitions"] >= 36
    assert all(k in r[b] for b in ("grid", "nelder_mead") for k in ("to_target", "final_db"))
