"""Benchmark: time to change one pump tone's phase, AWG and CW backends, through the virtual lab.

Run: ``python benchmarks/bench_pumps.py``. Wall time of ``pump.<tone>.phase(x)``
(validation, synthesis, upload or source write, and the read-back / error
check that makes the call return only once the instrument has taken it):

- AWG backend, three tones on one direct channel, 1 MHz grid (2500-sample
  record at 2.5 GS/s): one float32 block upload + ``SYSTem:ERRor?``;
- AWG backend, three IQ tones on one mixer (I and Q re-uploaded), 1 MHz grid,
  and the same with a 10 kHz grid (250 000-sample records);
- CW backend, three SGS100A sources (QCoDeS driver): one ``SOUR:PHAS`` write
  and its read-back;

and, measured in the same run, a bare ``*IDN?`` round trip (the loopback /
pyvisa floor per message).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from qcodes.instrument import Instrument
from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A

from labnr.drivers.pumps import MultiTonePump, build_pump
from labnr.drivers.tektronix_awg5208 import TektronixAWG5208Direct
from labnr.sim import VirtualLab

CONNECT = {"terminator": "\n", "visalib": "@py", "device_clear": False}


def time_calls(call: Callable[[int], None], repeats: int) -> np.ndarray:
    """Wall time (s) of ``call(k)`` for k = 0..repeats-1, after one warm-up call."""
    call(-1)
    out = []
    for k in range(repeats):
        t0 = time.perf_counter()
        call(k)
        out.append(time.perf_counter() - t0)
    return np.array(out)


def phase_stepper(pump: MultiTonePump, tone: str) -> Callable[[int], None]:
    """Set the tone's phase to a new value each call."""
    param = pump.tone(tone).phase
    return lambda k: param(0.1 + 0.01 * (k % 300))


def awg_direct(lab: VirtualLab, awg: Instrument) -> MultiTonePump:
    tones = {
        f"t{j}": {"channel": 5, "frequency": f, "amplitude": 0.1, "phase": 0.0}
        for j, f in enumerate((17e6, 120e6, 333e6))
    }
    return build_pump("pump_direct", {
        "backend": "awg", "awg": awg, "frequency_resolution": 1e6, "tones": tones,
        "limits": {n: 0.12 for n in tones},
    })


def awg_iq(lab: VirtualLab, awg: Instrument, lo: Instrument, resolution: float) -> MultiTonePump:
    tones = {
        f"t{j}": {"iq": "iq1", "sideband": "+", "frequency": 5.0e9 + f, "amplitude": 0.1}
        for j, f in enumerate((204e6, 211e6, 230e6))
    }
    return build_pump(f"pump_iq_{int(resolution)}", {
        "backend": "awg", "awg": awg, "frequency_resolution": resolution, "tones": tones,
        "mixers": {"iq1": {"i": 1, "q": 2, "lo": lo, "lo_frequency": 5.0e9, "lo_power": 13.0}},
        "limits": {n: 0.12 for n in tones},
    })


def run(repeats: int = 200, seed: int = 1) -> dict[str, np.ndarray]:
    """Phase-change wall times (s) per configuration, and the *IDN? floor."""
    out: dict[str, np.ndarray] = {}
    with VirtualLab("em_circulator", seed=seed) as lab:
        awg = TektronixAWG5208Direct("awg", lab.addresses["awg"], **CONNECT)
        lo1 = RohdeSchwarzSGS100A("lo1", lab.addresses["lo1"], **CONNECT)
        try:
            for label, pump in (
                ("awg direct, 3 tones, 1 MHz grid", awg_direct(lab, awg)),
                ("awg IQ, 3 tones, 1 MHz grid", awg_iq(lab, awg, lo1, 1e6)),
            ):
                pump.output(True)
                out[label] = time_calls(phase_stepper(pump, "t1"), repeats)
                pump.off()
                pump.close()
            pump = awg_iq(lab, awg, lo1, 10e3)
            pump.output(True)
            step = phase_stepper(pump, "t1")
            out["awg IQ, 3 tones, 10 kHz grid"] = time_calls(step, max(repeats // 4, 1))
            out["*IDN? round trip (awg)"] = time_calls(lambda k: awg.ask("*IDN?"), repeats)
        finally:
            Instrument.close_all()
    with VirtualLab("jpc_circulator", seed=seed) as lab:
        names = {"ab": "pump_ab", "bc": "pump_bc", "ca": "pump_ca"}
        try:
            srcs = {
                t: RohdeSchwarzSGS100A(n, lab.addresses[n], **CONNECT) for t, n in names.items()
            }
            freqs = {"ab": 1.16e9, "bc": 1.435e9, "ca": 2.595e9}
            pump = build_pump("pump_cw", {
                "backend": "cw",
                "tones": {t: {"source": srcs[t], "frequency": freqs[t], "amplitude": 0.1}
                          for t in names},
                "limits": {t: 0.3 for t in names},
            })
            pump.output(True)
            out["cw, 3 SGS100A sources"] = time_calls(phase_stepper(pump, "ab"), repeats)
            out["*IDN? round trip (sgs)"] = time_calls(lambda k: srcs["ab"].ask("*IDN?"), repeats)
        finally:
            Instrument.close_all()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    results = run(args.repeats)
    print("time to change one tone's phase (wall clock, virtual lab over loopback)")
    for label, t in results.items():
        ms = t * 1e3
        print(
            f"  {label:34s}: median {np.median(ms):7.3f} ms, "
            f"p95 {np.percentile(ms, 95):7.3f} ms ({ms.size} runs)"
        )


if __name__ == "__main__":
    main()
