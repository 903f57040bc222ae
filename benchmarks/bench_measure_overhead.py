"""Benchmark: per-point overhead of labnr's sweep loop over the bare driver calls.

Run: ``python benchmarks/bench_measure_overhead.py [--points 1601] [--n 25] [--blocks 3]``.

Against the embedded virtual lab (``configs/sim_jpc_circulator.yaml``, flux at
the sweet spot, three pumps on), for a 3x3 S-matrix of ``points`` points, it
measures in the same run, in alternating blocks of ``n`` points:

- ``sweep``: :func:`labnr.measure.sweep_pump_phase` over ``n`` phases of tone
  ``bc`` (progress bar off). The time of a point is the interval between
  consecutive "point stored" events of the loop (a logging hook): setting the
  knob, acquiring, assembling the results, ``add_result`` and the database
  write (labnr writes every point as it is stored), the bar;
- ``direct``: the same driver calls in a plain loop: ``tone.phase(value)``
  then the acquisitions with precomputed arguments.

Per-point overhead = median(sweep point) - median(direct point); the
amortised figure also spreads the run's setup and completion (station
snapshot, dataset creation, metadata, final flush) over its ``n`` points.
Two acquisition plans:

- ``offset``: the frequency-converting JPC as it must be measured, 3
  reflection + 6 frequency-offset acquisitions (offset channel, configured
  anew for each);
- ``plain``: ``frequency_offset=False``, one ordinary sweep of all nine
  elements (one channel, configured once).

Target (issue #5): overhead <= 5 ms per point including the database write.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labnr.measure import make_plan, sweep_pump_phase
from labnr.measure.acquire import SMatrixMeta
from labnr.session import LabSession, open_lab

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sim_jpc_circulator.yaml"
TONE = "bc"


@dataclass(frozen=True)
class Result:
    """Per-point wall times of one acquisition plan, s."""

    variant: str
    acquisitions: int
    sweep: float  # median interval between stored points
    direct: float  # median direct point
    amortised: float  # whole sweep call / points
    points: int  # VNA points per trace
    n: int  # sweep points per block
    blocks: int

    @property
    def overhead(self) -> float:
        """Median per-point overhead of the sweep loop, s."""
        return self.sweep - self.direct

    @property
    def overhead_amortised(self) -> float:
        """Per-point overhead with the run's setup and completion spread over its points, s."""
        return self.amortised - self.direct


class _PointClock(logging.Handler):
    """Timestamps the sweep loop's "point stored" debug records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "stored" in record.msg:
            self.times.append(time.perf_counter())


def operate(session: LabSession) -> None:
    """Sweet spot (flux calibrated with the truth: benchmark side) and pumps on."""
    truth = session.virtual_lab.spec.flux
    session.flux.current_per_flux_quantum(truth.current_per_flux_quantum)
    session.flux.offset_current(truth.offset_current)
    session.flux.output(True)
    session.flux.flux(0.0)
    session.pump.set_tones({t: {"amplitude": 0.1} for t in session.pump.tone_names})
    session.pump.output(True)


def direct_point(session: LabSession, meta: SMatrixMeta, phase: float) -> list[Any]:
    """One point with the drivers only: the knob, then the plan's acquisitions."""
    vna, plan, num = session.vna, meta.plan, meta.port_numbers
    session.pump.tone(TONE).phase(phase)
    if plan.groups:  # the plain variant: one sweep of every element (channel already set)
        return [vna.sweep([(num[o], num[i]) for o, i in plan.elements])]
    out = []
    for o, i in plan.elements:
        start, stop = plan.stimulus_range((o, i))
        m = plan.maps[(o, i)]
        out.append(vna.transmission_offset(num[o], num[i], start, stop, plan.points, m.offset))
    return out


def measure_variant(session: LabSession, variant: str, points: int, n: int, blocks: int) -> Result:
    """Alternate sweep and direct blocks of ``n`` points; return the medians."""
    offset = variant == "offset"
    meta = make_plan(session, points=points, frequency_offset=offset)
    clock = _PointClock()
    logger = logging.getLogger("labnr.measure.runner")
    logger.addHandler(clock)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    sweep_t: list[float] = []
    direct_t: list[float] = []
    amortised: list[float] = []
    try:
        for block in range(blocks):
            phases = np.linspace(0.0, 1.0, n) + 0.01 * block
            clock.times.clear()
            t0 = time.perf_counter()
            sweep_pump_phase(
                session, TONE, phases, points=points, frequency_offset=offset, progress=False
            )
            amortised.append((time.perf_counter() - t0) / n)
            sweep_t += list(np.diff(clock.times))
            for phase in phases[::-1]:
                t0 = time.perf_counter()
                direct_point(session, meta, float(phase))
                direct_t.append(time.perf_counter() - t0)
    finally:
        logger.removeHandler(clock)
        logger.setLevel(old_level)
    return Result(
        variant,
        1 if meta.plan.groups else len(meta.plan.elements),
        statistics.median(sweep_t),
        statistics.median(direct_t),
        statistics.median(amortised),
        points,
        n,
        blocks,
    )


def run(
    points: int = 1601,
    n: int = 25,
    blocks: int = 3,
    session: LabSession | None = None,
    database: Path | None = None,
) -> list[Result]:
    """Both variants on one lab session (opened here unless given).

    Parameters
    ----------
    points : int
        VNA points per trace.
    n : int
        Sweep points per block (the median is over ``blocks * (n - 1)`` intervals).
    blocks : int
        Alternating sweep/direct blocks per variant.
    session : LabSession, optional
        An open session of the JPC config (operated here).
    database : Path, optional
        Database for the runs (a temporary one otherwise).
    """
    with tempfile.TemporaryDirectory() as tmp:
        own = session is None
        db = database or Path(tmp) / "bench.db"
        session = open_lab(CONFIG, database=db, data_dir=Path(tmp)) if own else session
        try:
            operate(session)
            return [measure_variant(session, v, points, n, blocks) for v in ("offset", "plain")]
        finally:
            if own:
                session.close()


def main() -> None:
    """Command-line entry: print both variants."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1601)
    parser.add_argument("--n", type=int, default=25)
    parser.add_argument("--blocks", type=int, default=3)
    args = parser.parse_args()
    results = run(args.points, args.n, args.blocks)
    r0 = results[0]
    print(
        f"3x3 S-matrix, {r0.points} points, sweep_pump_phase vs direct driver calls, "
        f"{r0.blocks} x {r0.n} points per variant (medians):"
    )
    for r in results:
        print(
            f"  {r.variant:6s} ({r.acquisitions} acquisition{'s' if r.acquisitions > 1 else ''})"
            f": sweep {r.sweep * 1e3:7.2f} ms/pt, direct {r.direct * 1e3:7.2f} ms/pt, "
            f"overhead {r.overhead * 1e3:+6.2f} ms/pt "
            f"(amortised with run setup {r.overhead_amortised * 1e3:+6.2f} ms/pt)"
        )
    print("  target: overhead <= 5 ms per point, including the database write")


if __name__ == "__main__":
    main()
