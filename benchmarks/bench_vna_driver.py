"""Benchmark: per-acquisition overhead of the PNA-X driver over raw pyvisa transfer.

Run: ``python benchmarks/bench_vna_driver.py [--repeats 30] [--points 1601]``.

Against a virtual lab (JPC circulator, pumped), for a 3x3 S-matrix of
``points`` points at 1 kHz IF bandwidth, it measures in the same run,
interleaved (median of ``repeats`` each):

- ``raw``: a plain pyvisa session doing the bare transfer: ``INIT1``,
  ``*OPC?`` and nine ``CALC1:MEAS<m>:DATA:SDATA?`` ``REAL,64`` block reads
  (the ``CALC:PAR:SEL`` + ``CALC:DATA? SDATA`` form of
  ``test_acquisition_speed_short`` is a little slower, so this baseline is the
  stricter one);
- ``driver``: :meth:`KeysightN5242B.smatrix` on the already configured channel
  (trigger message with ``*OPC?`` and ``SYST:ERR?``, scaled visa timeout, nine
  reads, assembly of the (nfreq, 3, 3) complex array).

Both include the emulator's own work (it runs in this process), so the ratio
is the driver's overhead over everything else. Target (issue #4): <= 10 %.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pyvisa

from labnr.drivers.keysight_pna import KeysightN5242B
from labnr.sim.lab import VirtualLab

PORTS = (1, 2, 3)


@dataclass(frozen=True)
class Result:
    """Median wall times per acquisition, s, and the driver's relative overhead."""

    raw: float
    driver: float
    points: int
    repeats: int

    @property
    def overhead(self) -> float:
        """driver / raw - 1."""
        return self.driver / self.raw - 1.0


def pump(lab: VirtualLab, rm: pyvisa.ResourceManager, power_dbm: float = -10.0) -> None:
    """Bias the device at its sweet spot and switch on the three pumps (benchmark side)."""
    modes = lab.spec.modes
    fa, fb, fc = (modes[m].frequency for m in ("a", "b", "c"))
    opts = {"read_termination": "\n", "write_termination": "\n", "timeout": 5000}
    flux = rm.open_resource(lab.addresses["flux"], **opts)
    offset = lab.spec.flux.offset_current if lab.spec.flux is not None else 0.0
    flux.write(f":SOUR:FUNC CURR;:SOUR:RANG 10e-3;:SOUR:LEV {offset};:OUTP ON")
    flux.close()
    for name, f in (("pump_ab", fb - fa), ("pump_bc", fc - fb), ("pump_ca", fc - fa)):
        src = rm.open_resource(lab.addresses[name], **opts)
        src.write(f"SOUR:FREQ {f};:SOUR:POW {power_dbm};:SOUR:PHAS 0;:OUTP ON")
        src.close()


def raw_acquisition(vna: pyvisa.resources.MessageBasedResource, numbers: list[int]) -> list:
    """INIT, *OPC? and one SDATA block read per measurement, nothing else."""
    vna.write("INIT1")
    vna.query("*OPC?")
    return [
        vna.query_binary_values(
            f"CALC1:MEAS{m}:DATA:SDATA?", datatype="d", is_big_endian=False, container=np.array
        )
        for m in numbers
    ]


def measurement_numbers(vna: pyvisa.resources.MessageBasedResource) -> list[int]:
    """Numbers of the measurements of channel 1, in catalog order."""
    names = vna.query("CALC1:PAR:CAT:EXT?").strip().strip('"').split(",")[0::2]
    numbers = []
    for name in names:
        vna.write(f"CALC1:PAR:SEL '{name}'")
        numbers.append(int(vna.query("CALC1:PAR:MNUM?")))
    return numbers


def run(repeats: int = 20, points: int = 1601, lab: VirtualLab | None = None) -> Result:
    """Measure raw and driver acquisition times, interleaved.

    Parameters
    ----------
    repeats : int
        Acquisitions of each kind (median taken).
    points : int
        Points per trace.
    lab : VirtualLab, optional
        A started lab to use (a fresh one, seed 1, otherwise).

    Returns
    -------
    Result
    """
    own = lab is None
    lab = VirtualLab("jpc_circulator", seed=1).start() if lab is None else lab
    rm = pyvisa.ResourceManager("@py")
    driver = raw = None
    try:
        pump(lab, rm)
        fa = lab.spec.modes["a"].frequency
        driver = KeysightN5242B(f"bench_vna_{id(lab)}", lab.addresses["vna"])
        driver.start(fa - 60e6)
        driver.stop(fa + 60e6)
        driver.points(points)
        driver.if_bandwidth(1e3)
        _, S = driver.smatrix(PORTS)  # configures the channel (not timed)
        raw = rm.open_resource(
            lab.addresses["vna"], read_termination="\n", write_termination="\n", timeout=5000
        )
        numbers = measurement_numbers(raw)
        assert len(raw_acquisition(raw, numbers)) == S.shape[1] * S.shape[2]
        t_raw, t_drv = [], []
        for k in range(repeats):
            for kind in ("raw", "driver") if k % 2 == 0 else ("driver", "raw"):
                t0 = time.perf_counter()
                if kind == "raw":
                    raw_acquisition(raw, numbers)
                else:
                    driver.smatrix(PORTS)
                (t_raw if kind == "raw" else t_drv).append(time.perf_counter() - t0)
        return Result(float(np.median(t_raw)), float(np.median(t_drv)), points, repeats)
    finally:
        if raw is not None:
            raw.close()
        if driver is not None:
            driver.close()
        rm.close()
        if own:
            lab.stop()


def main() -> None:
    """Command-line entry: print both medians and the overhead."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--points", type=int, default=1601)
    args = parser.parse_args()
    res = run(args.repeats, args.points)
    print(f"3x3 S-matrix, {res.points} points, median of {res.repeats} (interleaved):")
    print(f"  raw pyvisa transfer : {res.raw * 1e3:8.3f} ms")
    print(f"  driver smatrix      : {res.driver * 1e3:8.3f} ms")
    print(f"  driver overhead     : {res.overhead * 100:+7.1f} %   (target <= +10 %)")


if __name__ == "__main__":
    main()
