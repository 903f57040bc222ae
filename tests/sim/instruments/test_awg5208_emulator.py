"""AWG5208 emulator: waveform upload over TCP, tone demodulation, QCoDeS driver."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import pyvisa

from labnr.sim.instruments.awg5208 import AWG5208Emulator
from labnr.sim.instruments.scpi import encode_block
from labnr.sim.instruments.server import SCPIServer

FS = 2.5e9
N = 2400  # samples per record: frequencies on the grid are k * FS / N


@pytest.fixture
def emulator(backend) -> AWG5208Emulator:
    return AWG5208Emulator("awg", backend)


@pytest.fixture
def server(emulator: AWG5208Emulator) -> Iterator[SCPIServer]:
    with SCPIServer(emulator) as srv:
        yield srv


@pytest.fixture
def awg(server: SCPIServer, raw_visa) -> pyvisa.resources.MessageBasedResource:
    return raw_visa(server.address)


def tones_record(
    cycles: list[float], amps: list[float], phases: list[float], n: int = N
) -> np.ndarray:
    t = np.arange(n)
    terms = zip(cycles, amps, phases, strict=True)
    x = sum(a * np.cos(2 * np.pi * c * t / n + p) for c, a, p in terms)
    return np.asarray(x, dtype=np.float32)


def upload(awg: pyvisa.resources.MessageBasedResource, name: str, samples: np.ndarray) -> None:
    awg.write(f'WLISt:WAVeform:NEW "{name}",{samples.size}')
    awg.write_binary_values(
        f'WLISt:WAVeform:DATA "{name}",0,{samples.size},',
        samples,
        datatype="f",
        is_big_endian=False,
    )
    assert awg.query("*OPC?") == "1"


def play(awg: pyvisa.resources.MessageBasedResource, name: str, vpp: float = 0.5) -> None:
    awg.write(f'SOURce1:CASSet:WAVeform "{name}";:SOUR1:VOLT {vpp};:OUTPut1:STATe ON')
    awg.write("AWGControl:RUN:IMMediate")
    assert awg.query("AWGControl:RSTate?") == "2"


def pop_errors(awg: pyvisa.resources.MessageBasedResource) -> list[int]:
    codes = []
    while (code := int(awg.query("SYST:ERR?").split(",")[0])) != 0:
        codes.append(code)
    return codes


def test_two_tone_waveform_is_recovered(
    awg: pyvisa.resources.MessageBasedResource, emulator: AWG5208Emulator, backend
) -> None:
    samples = tones_record([12, 100], [0.6, 0.3], [0.4, -2.0])
    upload(awg, "two_tone", samples)
    assert emulator.tones(1) == []  # nothing assigned, output off, stopped
    awg.write("CLOCk:SRATe 2.5e9")
    play(awg, "two_tone", vpp=0.5)
    found = emulator.tones(1, max_tones=2)
    assert [t.frequency_hz for t in found] == pytest.approx([12 * FS / N, 100 * FS / N], rel=1e-15)
    np.testing.assert_allclose([t.amplitude_v for t in found], [0.6 * 0.25, 0.3 * 0.25], rtol=1e-6)
    np.testing.assert_allclose([t.phase_rad for t in found], [0.4, -2.0], atol=1e-6)
    assert emulator.periodicity_error(1) < 1e-6
    assert emulator.tones(2) == []
    assert "awg" in backend.notified
    awg.write("OUTPut1:STATe OFF")
    assert awg.query("OUTP1?") == "0" and emulator.tones(1) == []
    assert pop_errors(awg) == []


def test_non_periodic_record_leaks_and_jumps(
    awg: pyvisa.resources.MessageBasedResource, emulator: AWG5208Emulator
) -> None:
    samples = tones_record([20.5], [0.8], [0.0])  # half a cycle short of periodic
    upload(awg, "leaky", samples)
    play(awg, "leaky", vpp=0.5)
    found = emulator.tones(1, min_amplitude=1e-4, max_tones=None)
    grid = FS / N
    assert {round(t.frequency_hz / grid) for t in found[:2]} == {20, 21}
    assert max(t.amplitude_v for t in found) < 0.7 * 0.8 * 0.25  # leakage, not one clean line
    assert len(found) > 10  # sidelobes fall like 1/distance
    jump = emulator.periodicity_error(1)
    assert jump > 0.1 * 0.8 * 0.25  # a visible step at the loop boundary, V


def test_waveform_list_blocks_and_limits(
    awg: pyvisa.resources.MessageBasedResource, emulator: AWG5208Emulator
) -> None:
    rng = np.random.default_rng(1)
    big = rng.uniform(-1, 1, 1_000_000).astype(np.float32)  # arbitrary bytes, '\n' included
    assert b"\n" in big.tobytes()
    upload(awg, "big", big)
    upload(awg, "small", np.zeros(2400, np.float32))
    assert awg.query("WLISt:LIST?;SIZE?") == '"big,small";2'
    assert awg.query('WLISt:WAVeform:LENGth? "big"') == "1000000"
    back = awg.query_binary_values(
        'WLIS:WAV:DATA? "big"', datatype="f", is_big_endian=False, container=np.array
    )
    np.testing.assert_array_equal(back, big)
    part = np.array([0.25, -0.5], np.float32)  # partial write at an offset
    awg.write_binary_values('WLIS:WAV:DATA "small",100,2,', part, datatype="f", is_big_endian=False)
    back = awg.query_binary_values(
        'WLIS:WAV:DATA? "small",99,4', datatype="f", is_big_endian=False, container=np.array
    )
    np.testing.assert_array_equal(back, [0.0, 0.25, -0.5, 0.0])
    awg.write("SOUR1:VOLT 1.0")  # DC High BW path without the DC option: 0.75 Vpp max
    awg.write("CLOC:SRAT 3e9")
    awg.write('WLIS:WAV:DATA "small",2399,2,#18' + "\x00" * 8)
    awg.write('SOUR1:CASS:WAV "nope"')
    awg.write('WLIS:WAV:NEW "small",10')
    assert pop_errors(awg) == [-222, -222, -222, -224, -224]
    awg.write('SOUR3:CASS:WAV "small";:WLIS:WAV:DEL "small"')
    assert awg.query("WLIS:LIST?;:SOUR3:CASS?") == '"big";""'
    awg.write("WLIS:WAV:DEL ALL")
    assert awg.query("WLIS:SIZE?") == "0"


def test_wfmx_file_through_mass_memory(emulator: AWG5208Emulator) -> None:
    from qcodes.instrument_drivers.tektronix.AWG70000A import TektronixAWG70000Base

    volts = 0.1 * np.cos(2 * np.pi * 7 * np.arange(N) / N)
    wfmx = TektronixAWG70000Base.makeWFMXFile(volts, 0.5)  # samples scaled to 2 V / 0.5 Vpp
    emulator.process(b'MMEMory:DATA "sine7.wfmx",' + encode_block(wfmx) + b"\n")
    emulator.write('MMEMory:OPEN "C:\\Users\\OEM\\Documents\\sine7.wfmx"')
    assert emulator.ask("WLIS:LIST?") == '"sine7"' and emulator.errors == []
    emulator.write('SOUR1:CASS:WAV "sine7";:SOUR1:VOLT 0.5;:OUTP1 ON;:AWGC:RUN')
    (tone,) = emulator.tones(1, max_tones=1)
    assert tone.frequency_hz == pytest.approx(7 * FS / N)
    assert tone.amplitude_v == pytest.approx(0.1, rel=1e-6)


def test_qcodes_awg5208_driver(server: SCPIServer, emulator: AWG5208Emulator) -> None:
    from qcodes.instrument_drivers.tektronix import TektronixAWG5208

    driver = TektronixAWG5208("awg_under_test", server.address, timeout=5)
    try:
        driver.sample_rate(1.2e9)
        assert driver.sample_rate() == 1.2e9
        driver.ch2.awg_amplitude(0.3)
        assert driver.ch2.awg_amplitude() == 0.3
        driver.ch2.state(1)
        assert driver.ch2.state() == 1 and driver.run_state() == "Stopped"
        emulator.write('WLIS:WAV:NEW "w",2400')
        assert driver.waveformList == ["w"]
        driver.ch2.setWaveform("w")
        driver.play(wait_for_running=False)
        assert driver.run_state() == "Running"
        assert driver.ch2.assigned_asset() == "w"
        driver.snapshot(update=True)
        assert emulator.errors == []
    finally:
        driver.close()


def test_qcodes_wfmx_upload_over_the_wire(server: SCPIServer, emulator: AWG5208Emulator) -> None:
    from qcodes.instrument_drivers.tektronix import TektronixAWG5208

    driver = TektronixAWG5208("awg_wfmx", server.address, timeout=2)
    try:
        wfmx = driver.makeWFMXFile(0.1 * np.sin(2 * np.pi * 5 * np.arange(N) / N), 0.5)
        driver.sendWFMXFile(wfmx, "five.wfmx")
        driver.loadWFMXFile("five.wfmx")
        assert driver.waveformList == ["five"]
    finally:
        driver.close()
