"""Short version of benchmarks/bench_fit_smatrix.py (target 1 s; loose bound for CI)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fit_smatrix.py"


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location("bench_fit_smatrix", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_global_fit_is_fast(bench) -> None:
    (fast,) = bench.run(n=3, points=401, baseline=False)
    assert fast.variant == "labnr"
    assert fast.seconds < 3.0, fast  # target 1 s; CI machines are noisy
    for tone, eta in fast.etas.items():
        assert eta == pytest.approx(bench.make_truth(3).eta[tone], rel=0.01)


def test_baselines_reach_the_same_minimum(bench) -> None:
    timings = bench.run(n=1, points=61, baseline=True)
    assert [t.variant for t in timings] == ["labnr", "optimiser only", "batched + FD", "naive"]
    for t in timings[1:]:
        for tone, eta in t.etas.items():
            assert eta == pytest.approx(timings[0].etas[tone], rel=1e-4), t
    assert timings[1].nfev < timings[2].nfev  # the analytic Jacobian: no evaluation per parameter
