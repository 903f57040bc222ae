"""The virtual lab end to end, through raw pyvisa sessions (no labnr driver)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pyvisa
import yaml

from labnr.sim.lab import VirtualLab, sgs_amplitude

FA, FB, FC = 5.310e9, 6.470e9, 7.905e9  # preset sweet-spot frequencies (truth, test side)


@pytest.fixture
def rm():
    manager = pyvisa.ResourceManager("@py")
    yield manager
    manager.close()


def session(rm, lab: VirtualLab, name: str):
    return rm.open_resource(
        lab.addresses[name], read_termination="\n", write_termination="\n", timeout=5000
    )


def errors(res) -> str:
    return res.query("SYST:ERR?")


def setup_jpc(rm, lab: VirtualLab, power_dbm: float = -10.0) -> dict:
    flux = session(rm, lab, "flux")
    flux.write(":SOUR:FUNC CURR;:SOUR:RANG 10e-3;:SOUR:LEV 0.137e-3;:OUTP ON")
    assert errors(flux).startswith("0,")
    pumps = {"pump_ab": FB - FA, "pump_bc": FC - FB, "pump_ca": FC - FA}
    srcs = {}
    for name, f in pumps.items():
        s = session(rm, lab, name)
        s.write(f"SOUR:FREQ {f};:SOUR:POW {power_dbm};:SOUR:PHAS 0;:OUTP ON")
        assert errors(s).startswith("0,")
        srcs[name] = s
    return srcs


def fom_transmission(
    vna, f_centre: float, offset: float, points: int = 401
) -> tuple[np.ndarray, np.ndarray]:
    """S21 with the receivers offset by ``offset`` (frequency conversion a -> b)."""
    vna.write("SYST:FPR")
    vna.write("CALC1:PAR:DEF:EXT 'T21','S21'")
    vna.write(f"SENS1:FREQ:STAR {f_centre - 60e6};:SENS1:FREQ:STOP {f_centre + 60e6}")
    vna.write(f"SENS1:SWE:POIN {points};:SENS1:BAND 1e3;:SOUR1:POW1 -30;:SENS1:SWE:MODE HOLD")
    # receivers coupled to the primary range: f_rx = f_in * 1/1 + offset
    vna.write(f"SENS1:FOM:RANG3:COUP ON;:SENS1:FOM:RANG3:FREQ:OFFS {offset};:SENS1:FOM ON")
    vna.write("FORM REAL,64;:FORM:BORD SWAP")
    assert errors(vna).startswith("0,")
    freqs = np.linspace(f_centre - 60e6, f_centre + 60e6, points)
    return freqs, acquire(vna, "T21")


def acquire(vna, name: str) -> np.ndarray:
    vna.write("INIT1")
    assert vna.query("*OPC?").strip() == "1"
    vna.write(f"CALC1:PAR:SEL '{name}';:FORM REAL,64;:FORM:BORD SWAP")
    d = vna.query_binary_values(
        "CALC1:DATA? SDATA", datatype="d", is_big_endian=False, container=np.array
    )
    return d[0::2] + 1j * d[1::2]


def expected_transmission(lab: VirtualLab, truth, f_in: np.ndarray, offset: float) -> np.ndarray:
    cfg = truth.configuration
    S = cfg.network.scattering(f_in - cfg.frames["a"], nambu=False)[:, 1, 0]
    chain = lab.spec.chain
    li, lo = chain.input_lines[1], chain.output_lines[2]
    f_rx = f_in + offset
    line = 10 ** ((li.gain_db + lo.gain_db) / 20) * np.exp(
        1j * (li.phase + lo.phase - 2 * np.pi * (f_in * li.delay + f_rx * lo.delay))
    )
    return np.conj(S) * line  # the VNA reports the engineering convention


def test_raw_pyvisa_trace_matches_model_within_noise(rm, virtual_lab: VirtualLab) -> None:
    lab = virtual_lab
    setup_jpc(rm, lab)
    vna = session(rm, lab, "vna")
    truth = lab.truth()  # state right before the sweep (drift during it is ~1e-3 rad)
    f_in, data = fom_transmission(vna, FA, FB - FA)
    expected = expected_transmission(lab, truth, f_in, FB - FA)
    assert np.max(np.abs(expected)) > 0.05  # a real converted signal, not just noise
    sigma = 10 ** (lab.spec.chain.noise_db / 20) * 10 ** (30 / 20)  # -30 dBm, 1 kHz, 1 avg
    resid = data - expected
    rms = np.sqrt(np.mean(np.abs(resid) ** 2))
    assert 0.8 * sigma < rms < 1.3 * sigma
    # phase agrees point by point where the signal is well above the noise
    strong = np.abs(expected) > 30 * sigma
    assert np.max(np.abs(np.angle(data[strong] / expected[strong]))) < 0.05


def test_pump_phase_rotates_the_coupling_phase(rm, virtual_lab: VirtualLab) -> None:
    lab = virtual_lab
    srcs = setup_jpc(rm, lab)
    before = lab.truth().configuration.network.coupling("a", "b").phase
    srcs["pump_ab"].write("SOUR:PHAS 40")
    srcs["pump_ab"].query("*OPC?")
    after = lab.truth().configuration.network.coupling("a", "b").phase
    assert np.angle(np.exp(1j * (after - before))) == pytest.approx(np.deg2rad(40), abs=2e-3)
    # the amplitude follows the source power: g scales with sqrt(P)
    g0 = lab.truth().configuration.network.coupling("a", "b").g
    srcs["pump_ab"].write("SOUR:POW -16")
    srcs["pump_ab"].query("*OPC?")
    g1 = lab.truth().configuration.network.coupling("a", "b").g
    assert g1 / g0 == pytest.approx(sgs_amplitude(-16) / sgs_amplitude(-10), rel=1e-3)


def test_flux_current_moves_the_modes(rm, virtual_lab: VirtualLab) -> None:
    lab = virtual_lab
    flux = session(rm, lab, "flux")
    flux.write(":SOUR:FUNC CURR;:SOUR:RANG 10e-3;:SOUR:LEV 0.437e-3;:OUTP ON")
    flux.query("*OPC?")
    truth = lab.truth()
    expected_phi = 0.3e-3 / 1.2e-3
    assert truth.flux == pytest.approx(expected_phi, abs=1e-3)
    assert truth.configuration.frequencies["a"] == pytest.approx(
        FA * np.sqrt(np.cos(np.pi * truth.flux)), rel=1e-9
    )
    # reflection dip of mode a follows it
    vna = session(rm, lab, "vna")
    f_a = truth.configuration.frequencies["a"]
    vna.write("SYST:FPR")
    vna.write("CALC1:PAR:DEF:EXT 'R11','S11'")
    vna.write(f"SENS1:FREQ:STAR {f_a - 100e6};:SENS1:FREQ:STOP {f_a + 100e6};:SENS1:SWE:POIN 2001")
    vna.write("SENS1:BAND 1e3;:SOUR1:POW1 -30;:SENS1:SWE:MODE HOLD;:FORM REAL,64")
    data = acquire(vna, "R11")
    # |S11| of an overcoupled mode has no dip; its phase winds by 2 pi across resonance.
    f = np.linspace(f_a - 100e6, f_a + 100e6, 2001)
    delay = lab.spec.chain.input_lines[1].delay + lab.spec.chain.output_lines[1].delay
    phase = np.unwrap(np.angle(data * np.exp(2j * np.pi * f * delay)))
    # the resonance is half way through the 2 pi winding of the (delay-free) phase
    mid = 0.5 * (np.median(phase[:100]) + np.median(phase[-100:]))
    assert abs(np.median(phase[:100]) - np.median(phase[-100:])) > 5  # ~2 pi winds across
    assert f[np.argmin(np.abs(phase - mid))] == pytest.approx(f_a, abs=1e6)


@pytest.mark.parametrize("virtual_lab", ["em_circulator"], indirect=True)
def test_em_preset_iq_pumps_through_the_awg(rm, virtual_lab: VirtualLab) -> None:
    # Single-sideband IQ tone: I = A cos(w t), Q = A sin(w t) -> one RF tone at LO + f
    # (plus the image at LO - f that the mixer's imbalance leaves, ~-35 dB).
    lab = virtual_lab
    awg = session(rm, lab, "awg")
    lo = session(rm, lab, "lo1")
    n, rate = 2500, 2.5e9
    f_if = 250 * rate / n  # exactly on the record's grid: 250 MHz
    t = np.arange(n) / rate
    for ch, wave in ((1, np.cos(2 * np.pi * f_if * t)), (2, np.sin(2 * np.pi * f_if * t))):
        awg.write(f'WLIS:WAV:NEW "w{ch}",{n}')
        awg.write_binary_values(
            f'WLIS:WAV:DATA "w{ch}",0,{n},',
            (0.8 * wave).astype("<f4"),
            datatype="f",
            is_big_endian=False,
        )
        awg.write(f'SOUR{ch}:CASS:WAV "w{ch}";:SOUR{ch}:VOLT 0.5;:OUTP{ch} ON')
    awg.write("AWGC:RUN")
    lo.write("SOUR:FREQ 4.95e9;:SOUR:POW 13;:OUTP ON")
    assert errors(awg).startswith("0,") and errors(lo).startswith("0,")
    tones = sorted(lab.source_tones(), key=lambda t: -t.amplitude)
    assert tones[0].frequency == pytest.approx(4.95e9 + f_if)
    assert tones[0].amplitude == pytest.approx(0.8 * 0.25 * 0.5, rel=0.05)  # 0.2 V * mixer gain
    image = [t for t in tones if t.frequency == pytest.approx(4.95e9 - f_if)]
    assert image and 20 * np.log10(image[0].amplitude / tones[0].amplitude) < -30


def test_station_yaml_points_at_served_instruments(tmp_path: Path, virtual_lab: VirtualLab) -> None:
    path = virtual_lab.write_station_yaml(tmp_path / "station.yaml")
    conf = yaml.safe_load(path.read_text())
    assert set(conf["instruments"]) == set(virtual_lab.addresses)
    assert conf["instruments"]["vna"]["address"] == virtual_lab.addresses["vna"]
    import qcodes as qc

    station = qc.Station(config_file=str(path))
    flux = station.load_instrument("flux")
    try:
        assert flux.source.instrument.IDN()["vendor"].upper().startswith("YOKOGAWA")
    finally:
        qc.Instrument.close_all()


def test_truth_is_explicit_and_complete(virtual_lab: VirtualLab) -> None:
    truth = virtual_lab.truth()
    assert set(truth.line_phase) == {"ab", "bc", "ca"}
    assert truth.configuration.links == []  # nothing pumped at start
    assert truth.time == virtual_lab.clock.now


def test_cli_serve_and_fault(tmp_path: Path) -> None:
    station = tmp_path / "station.yaml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labnr",
            "sim",
            "serve",
            "em_circulator",
            "--seed",
            "3",
            "--station",
            str(station),
            "--duration",
            "20",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        while station.name not in "".join(lines):
            line = proc.stdout.readline()
            assert line, "server exited early"
            lines.append(line)
        vna_line = next(ln for ln in lines if ln.strip().startswith("vna"))
        address = vna_line.split()[1]
        assert address.startswith("TCPIP::127.0.0.1::")
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "labnr",
                "sim",
                "fault",
                address,
                "error",
                "-222",
                "Data out of range",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "injected error" in out.stdout
        rm = pyvisa.ResourceManager("@py")
        vna = rm.open_resource(address, read_termination="\n", write_termination="\n", timeout=3000)
        assert vna.query("SYST:ERR?").startswith("-222")
        vna.close()
        rm.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_unknown_device_is_a_clear_error() -> None:
    from labnr.sim.spec import SpecError

    with pytest.raises(SpecError, match="not found"):
        VirtualLab("no_such_device")


def test_acquisition_speed_short(rm, virtual_lab: VirtualLab) -> None:
    """Short version of benchmarks/bench_sim_acquisition.py (budget 20 ms; CI margin 2x)."""
    lab = virtual_lab
    setup_jpc(rm, lab)
    vna = session(rm, lab, "vna")
    vna.write("SYST:FPR")
    names = [f"S{o}{i}" for o in (1, 2, 3) for i in (1, 2, 3)]
    for name in names:
        vna.write(f"CALC1:PAR:DEF:EXT '{name}','{name}'")
    vna.write(f"SENS1:FREQ:STAR {FA - 60e6};:SENS1:FREQ:STOP {FA + 60e6};:SENS1:SWE:POIN 1601")
    vna.write("SENS1:BAND 1e3;:SENS1:SWE:MODE HOLD;:FORM REAL,64")
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        for k, name in enumerate(names):
            if k == 0:
                vna.write("INIT1")
                vna.query("*OPC?")
            vna.write(f"CALC1:PAR:SEL '{name}'")
            vna.query_binary_values("CALC1:DATA? SDATA", datatype="d", is_big_endian=True)
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.040
