"""The calibration benchmark's logic on one seed with small baselines."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_calibrate.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_calibrate", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.fixture(scope="module")
def result() -> dict:
    return _bench().run_seed(1, grid=5, nm_reads=20)


def test_labnr_meets_its_targets(result: dict) -> None:
    r = result
    assert r["ok"]
    assert r["isolation_db"] >= 40.0 and r["insertion_loss_db"] <= 0.5
    assert 0 < r["acquisitions"] <= 60 and r["virtual_time_s"] > 0
    assert r["to_target"] == r["acquisitions"]


def test_baselines_start_from_a_fresh_lab_after_the_prerequisites(result: dict) -> None:
    g, nm = result["grid"], result["nelder_mead"]
    # flux, modes and one pump node per tone, nothing of loop_phase/operating_point
    assert 0 < g["prereq"] == nm["prereq"] < result["acquisitions"]
    assert g["acquisitions"] == 5 * 5 * 6  # 3 reverse + 3 forward point reads per point
    assert nm["reads"] == 20 and nm["acquisitions"] >= 3 * 20
    for b in (g, nm):
        assert b["to_target"] is None or b["to_target"] > b["prereq"]


def test_baseline_final_is_its_best_seen_remeasured(result: dict) -> None:
    """The best settings set again measure what they measured during the scan."""
    for b in (result["grid"], result["nelder_mead"]):
        assert abs(b["final_db"] - b["best_db"]) < 3.0, b


def test_labnr_beats_the_grid_with_far_fewer_acquisitions(result: dict) -> None:
    g = result["grid"]
    assert result["isolation_db"] >= g["best_db"] - 1.0
    assert result["acquisitions"] * 2 < g["acquisitions"] + g["prereq"]


def test_summary_table_has_every_method(result: dict) -> None:
    text = _bench().summary_table([result])
    for name in ("labnr", "grid", "nelder_mead"):
        assert name in text
    assert "acq->40" in text
