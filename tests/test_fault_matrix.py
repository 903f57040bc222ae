"""Short version of benchmarks/bench_faults.py: no "lost data", no "unsafe stop" cell.

A subset of the matrix on the embedded virtual lab: the pump-phase sweep with
every fault kind on the VNA, transient and persistent; a flux sweep with the
GS200's connection dropped (once, and for good) inside a ramp; two faults
during a calibration (a transient drop, a persistent NaN trace). The whole
matrix, with the lock, is the benchmark (about 25 s here on an idle machine).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_faults.py"
#: The driver's fault kinds each injected fault may end as (a reply corrupted for
#: good makes the analyzer refuse the garbled commands it causes).
KIND_WORDS = {
    "timeout": ("timeout",),
    "drop": ("connection",),
    "malformed": ("malformed", "instrument error"),
    "nan": ("nan",),
    "error": ("instrument error",),
}


@pytest.fixture
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_faults", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_fault_matrix_subset(bench: ModuleType) -> None:
    t0 = time.monotonic()
    cells = bench.run_matrix(("sweep",), bench.KINDS, bench.SEVERITIES)
    cells += bench.run_matrix(("calibrate",), ("drop",), ("transient",))
    cells += bench.run_matrix(("calibrate",), ("nan",), ("persistent",))
    cells += bench.run_matrix(("flux",), ("drop",), bench.SEVERITIES)  # faults on the GS200
    elapsed = time.monotonic() - t0
    table = bench.table(cells)
    assert len(cells) == 14
    for c in cells:
        assert c.fired, table  # every fault was really injected
        assert "lost data" not in c.outcomes and "unsafe stop" not in c.outcomes, table
        if c.severity == "transient":
            assert c.outcomes == {"recovered"}, table
            assert c.error == "", table
        else:
            assert c.outcomes == {"stopped safely"}, table
            # a clear error: the instrument, the fault, the attempts
            if c.phase == "calibrate":  # the failed node's report quotes the fault
                assert c.error.startswith("node ") and "InstrumentFault: vna: " in c.error, table
            elif c.phase == "flux":  # the ramp that could not go on, held where it was
                assert c.error.startswith("InstrumentFault: flux_source: ramping to "), table
            else:
                assert c.error.startswith("InstrumentFault: vna: "), table
            kind = KIND_WORDS[c.kind]
            assert any(f"attempt(s): {k} (" in c.error for k in kind), table
        if c.phase in ("sweep", "flux"):
            assert c.measured == c.stored, table  # every measured point stored ...
            expected = 6 if c.severity == "transient" else 2
            assert c.stored == expected, table  # ... none twice, none missing
    print(table)
    # bounded retries: no fault makes anything wait long (about 25 s on an idle machine;
    # this bound only catches unbounded waits on a loaded one)
    assert elapsed < 240, f"{elapsed:.0f} s"
