"""Benchmark: one 3x3, 1601-point S-matrix acquisition from the virtual lab over pyvisa.

Run: ``python benchmarks/bench_sim_acquisition.py``. A raw pyvisa-py session
(no labnr driver) on the JPC preset with its three pumps on: ``INIT``,
``*OPC?``, then nine ``CALC:PAR:SEL`` + ``CALC:DATA? SDATA`` REAL,64 reads.
Prints the median and worst wall time of the whole acquisition (target
issue #3: <= 20 ms), and, measured in the same run, its parts: the device
physics alone (in-process ``SimDevice.measure`` for the same request) and a
bare ``*IDN?`` round trip (the loopback/pyvisa floor).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyvisa

from labnr.sim import VirtualLab
from labnr.sim.instruments.backend import VNARequest

FA, FB, FC = 5.310e9, 6.470e9, 7.905e9
NAMES = [f"S{o}{i}" for o in (1, 2, 3) for i in (1, 2, 3)]


def open_session(rm: pyvisa.ResourceManager, address: str):
    """A raw pyvisa-py socket session with newline termination."""
    return rm.open_resource(address, read_termination="\n", write_termination="\n", timeout=5000)


def setup(lab: VirtualLab, rm: pyvisa.ResourceManager, points: int):
    """Bias at the sweet spot, pumps on, one channel with all nine S-parameters."""
    flux = open_session(rm, lab.addresses["flux"])
    flux.write(":SOUR:FUNC CURR;:SOUR:RANG 10e-3;:SOUR:LEV 0.137e-3;:OUTP ON")
    for name, f in (("pump_ab", FB - FA), ("pump_bc", FC - FB), ("pump_ca", FC - FA)):
        open_session(rm, lab.addresses[name]).write(f"SOUR:FREQ {f};:SOUR:POW -10;:OUTP ON")
    vna = open_session(rm, lab.addresses["vna"])
    vna.write("SYST:FPR")
    for name in NAMES:
        vna.write(f"CALC1:PAR:DEF:EXT '{name}','{name}'")
    vna.write(f"SENS1:FREQ:STAR {FA - 60e6};:SENS1:FREQ:STOP {FA + 60e6};:SENS1:SWE:POIN {points}")
    vna.write("SENS1:BAND 1e3;:SENS1:SWE:MODE HOLD;:FORM REAL,64;:FORM:BORD SWAP")
    assert vna.query("SYST:ERR?").startswith("0,")
    return vna


def acquire(vna) -> np.ndarray:
    """INIT, *OPC?, nine SDATA reads -> (9, points) complex."""
    vna.write("INIT1")
    vna.query("*OPC?")
    out = []
    for name in NAMES:
        vna.write(f"CALC1:PAR:SEL '{name}'")
        d = vna.query_binary_values(
            "CALC1:DATA? SDATA", datatype="d", is_big_endian=False, container=np.array
        )
        out.append(d[0::2] + 1j * d[1::2])
    return np.array(out)


def run(points: int = 1601, repeats: int = 30, seed: int = 1) -> dict[str, np.ndarray]:
    """Wall times (s) of: full acquisition, physics alone, *IDN? round trip."""
    with VirtualLab("jpc_circulator", seed=seed) as lab:
        rm = pyvisa.ResourceManager("@py")
        try:
            vna = setup(lab, rm, points)
            acquire(vna)  # warm up
            full = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                acquire(vna)
                full.append(time.perf_counter() - t0)
            f = np.linspace(FA - 60e6, FA + 60e6, points)
            params = tuple((int(n[1]), int(n[2])) for n in NAMES)
            req = VNARequest("vna", f, f, params, {1: 0.0, 2: 0.0, 3: 0.0}, 1e3, 1, 0.0)
            tones, current = lab.source_tones(), lab.flux_current()
            physics = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                lab.device.measure(req, tones, current)
                physics.append(time.perf_counter() - t0)
            idn = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                vna.query("*IDN?")
                idn.append(time.perf_counter() - t0)
        finally:
            rm.close()
    return {"full": np.array(full), "physics": np.array(physics), "idn": np.array(idn)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1601)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    t = run(args.points, args.repeats)
    ms = {k: v * 1e3 for k, v in t.items()}
    print(f"3x3 S-matrix, {args.points} points, raw pyvisa over loopback ({args.repeats} runs)")
    print(
        f"  full acquisition : median {np.median(ms['full']):6.2f} ms, "
        f"worst {ms['full'].max():6.2f} ms"
    )
    print(
        f"  device physics   : median {np.median(ms['physics']):6.2f} ms (in-process, same request)"
    )
    print(
        f"  *IDN? round trip : median {np.median(ms['idn']):6.3f} ms (x19 messages per acquisition)"
    )
    ok = np.median(ms["full"]) <= 20.0
    print(f"target: <= 20 ms per acquisition -> {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
