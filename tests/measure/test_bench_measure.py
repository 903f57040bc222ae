"""Short version of benchmarks/bench_measure_overhead.py (target 5 ms per point; loose bound)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from labnr.session import LabSession

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_measure_overhead.py"


def test_sweep_loop_overhead_is_small(jpc: LabSession) -> None:
    spec = importlib.util.spec_from_file_location("bench_measure_overhead", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up
    try:
        spec.loader.exec_module(bench)
        results = bench.run(points=401, n=8, blocks=2, session=jpc)  # alternating: load-robust
    finally:
        del sys.modules[spec.name]
    assert [r.variant for r in results] == ["offset", "plain"]
    assert [r.acquisitions for r in results] == [9, 1]
    for r in results:
        assert r.direct > 0 and r.sweep > 0
        assert r.overhead < 0.015, r  # target 5 ms; CI machines are noisy
