"""PNA-X emulator: SCPI over TCP with pyvisa-py, acquisition semantics, QCoDeS driver."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import pyvisa

from labnr.sim.clock import VirtualClock
from labnr.sim.instruments.backend import VNARequest
from labnr.sim.instruments.pna import PNAXEmulator
from labnr.sim.instruments.server import SCPIServer

PORTS = (1, 2, 3)


def true_s(out_port: int, in_port: int, freqs: np.ndarray) -> np.ndarray:
    """The fake device: a known complex function of frequency per (out, in)."""
    delay = (out_port + 2 * in_port) * 1e-10
    return (0.1 * out_port + 0.01 * in_port + 0.3j) * np.exp(-2j * np.pi * freqs * delay)


class FakeBackend:
    """Minimal LabBackend: answers ``true_s`` at the receiver frequencies, records requests."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.requests: list[VNARequest] = []
        self.notifications: list[str] = []
        self.offset = 0.0  # added to every answer, to tell sweeps apart

    def vna_acquire(self, request: VNARequest) -> dict[tuple[int, int], np.ndarray]:
        self.requests.append(request)
        self.clock.advance(request.sweep_time)
        f = request.receiver_frequencies
        return {p: true_s(*p, f) + self.offset for p in request.parameters}

    def notify(self, instrument: str) -> None:
        self.notifications.append(instrument)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def emulator(backend: FakeBackend) -> PNAXEmulator:
    return PNAXEmulator("pna", backend)


@pytest.fixture
def server(emulator: PNAXEmulator) -> Iterator[SCPIServer]:
    with SCPIServer(emulator) as srv:
        yield srv


@pytest.fixture
def vna(server: SCPIServer, raw_visa) -> pyvisa.resources.MessageBasedResource:
    return raw_visa(server.address)


def setup_3x3(vna: pyvisa.resources.MessageBasedResource, points: int = 1601) -> np.ndarray:
    vna.write("CALC:PAR:DEL:ALL")
    for o in PORTS:
        for i in PORTS:
            vna.write(f'CALCulate1:PARameter:DEFine:EXTended "m{o}{i}","S{o}{i}"')
    vna.write(f"SENS:FREQ:STAR 4e9;STOP 6e9;:SENS:SWE:POIN {points};:SENS:SWE:MODE HOLD")
    return np.linspace(4e9, 6e9, points)


def read_sdata(vna: pyvisa.resources.MessageBasedResource, name: str, **kwargs) -> np.ndarray:
    vna.write(f"CALC:PAR:SEL '{name}'")
    values = vna.query_binary_values("CALC:DATA? SDATA", container=np.array, **kwargs)
    return values[0::2] + 1j * values[1::2]


def pop_errors(vna: pyvisa.resources.MessageBasedResource) -> list[int]:
    codes = []
    while (code := int(vna.query("SYST:ERR?").split(",")[0])) != 0:
        codes.append(code)
    return codes


def test_three_port_sweep_is_one_request_and_data_read_back_exactly(
    vna: pyvisa.resources.MessageBasedResource, backend: FakeBackend
) -> None:
    freqs = setup_3x3(vna)
    vna.write("SOUR:POW -20;:SENS:BAND 1e3;:FORM REAL,64")
    vna.write("INIT1:IMM")
    assert vna.query("*OPC?") == "1"
    assert len(backend.requests) == 1
    req = backend.requests[0]
    assert req.parameters == tuple((o, i) for o in PORTS for i in PORTS)
    np.testing.assert_array_equal(req.stimulus_frequencies, freqs)
    np.testing.assert_array_equal(req.receiver_frequencies, freqs)
    assert req.if_bandwidth == 1e3 and req.averages == 1
    assert req.port_power_dbm == {1: -20.0, 2: -20.0, 3: -20.0, 4: -20.0}
    for o in PORTS:  # REAL,64 big-endian (FORMat:BORDer NORMal is the default)
        for i in PORTS:
            data = read_sdata(vna, f"m{o}{i}", datatype="d", is_big_endian=True)
            np.testing.assert_array_equal(data, true_s(o, i, freqs))
    vna.write("FORM ASCii,0")
    for o in PORTS:
        for i in PORTS:
            vna.write(f"CALC:PAR:SEL 'm{o}{i}'")
            text = np.array(vna.query("CALC:DATA? SDATA").split(","), dtype=float)
            np.testing.assert_array_equal(text[0::2] + 1j * text[1::2], true_s(o, i, freqs))
    assert len(backend.requests) == 1 and pop_errors(vna) == []


def test_byte_order_swapped_real32_and_x_values(vna: pyvisa.resources.MessageBasedResource) -> None:
    freqs = setup_3x3(vna, points=11)
    vna.write("INIT;:FORM REAL,64;:FORM:BORD SWAP")
    assert vna.query("FORM?;:FORM:BORD?") == "REAL,64;SWAP"
    data = read_sdata(vna, "m21", datatype="d", is_big_endian=False)
    np.testing.assert_array_equal(data, true_s(2, 1, freqs))
    x = vna.query_binary_values("CALC:X?", datatype="d", is_big_endian=False, container=np.array)
    np.testing.assert_array_equal(x, freqs)
    vna.write("FORM REAL,32;:FORM:BORD NORM")
    data32 = read_sdata(vna, "m21", datatype="f", is_big_endian=True)
    np.testing.assert_array_equal(data32, true_s(2, 1, freqs).astype(np.complex64))


def test_fdata_formats_and_electrical_delay(vna: pyvisa.resources.MessageBasedResource) -> None:
    freqs = setup_3x3(vna, points=201)
    vna.write("INIT;:FORM REAL,64;:CALC:PAR:SEL 'm31'")
    s31 = true_s(3, 1, freqs)
    assert vna.query("CALC:FORM?") == "MLOG"
    mlog = vna.query_binary_values("CALC:DATA? FDATA", datatype="d", is_big_endian=True)
    np.testing.assert_allclose(mlog, 20 * np.log10(np.abs(s31)), rtol=1e-13)
    vna.write("CALCulate:FORMat PHASe;:CALC:CORR:EDEL:TIME 5e-10")
    phase = np.array(vna.query_binary_values("CALC:DATA? FDATA", datatype="d", is_big_endian=True))
    # S31 has a delay of 5e-10 s: the electrical delay flattens its phase ...
    np.testing.assert_allclose(phase, np.degrees(np.angle(0.31 + 0.3j)), atol=1e-9)
    # ... but SDATA is read before the delay block, as on the real PNA.
    sdata = vna.query_binary_values(
        "CALC:DATA? SDATA", datatype="d", is_big_endian=True, container=np.array
    )
    np.testing.assert_array_equal(sdata[0::2] + 1j * sdata[1::2], s31)
    vna.write("CALC:MEAS3:FORM MLIN")
    mlin = vna.query_binary_values("CALC:MEAS3:DATA:FDATA?", datatype="d", is_big_endian=True)
    np.testing.assert_allclose(mlin, np.abs(true_s(1, 3, freqs)), rtol=1e-13)  # meas 3 = m13


def test_frequency_offset_sets_receiver_frequencies(
    vna: pyvisa.resources.MessageBasedResource, backend: FakeBackend
) -> None:
    freqs = setup_3x3(vna, points=101)
    vna.write("SENS:FOM:RANG3:FREQ:MULT 2;DIV 1;OFFS -1e9")
    assert vna.query('SENS:FOM:RNUM? "receivers";:SENS:FOM:RANG3:NAME?') == '3;"Receivers"'
    vna.write("SENS:FOM:STATe ON;:INIT;:FORM REAL,64")
    assert vna.query("*OPC?") == "1"
    req = backend.requests[-1]
    np.testing.assert_array_equal(req.stimulus_frequencies, freqs)
    np.testing.assert_allclose(req.receiver_frequencies, 2 * freqs - 1e9, rtol=1e-15)
    data = read_sdata(vna, "m22", datatype="d", is_big_endian=True)
    np.testing.assert_array_equal(data, true_s(2, 2, req.receiver_frequencies))
    x = vna.query_binary_values("SENS:X?", datatype="d", is_big_endian=True, container=np.array)
    np.testing.assert_allclose(x, 2 * freqs - 1e9)  # the x axis shows the receivers by default
    vna.write('SENS:FOM:DISP:SEL "primary"')
    x = vna.query_binary_values("SENS:X?", datatype="d", is_big_endian=True, container=np.array)
    np.testing.assert_array_equal(x, freqs)
    vna.write("SENS:FOM:RANG3:FREQ:OFFS 20e9")  # receivers would reach 32 GHz
    assert pop_errors(vna) == []
    vna.write("INIT")
    assert pop_errors(vna) == [-221] and len(backend.requests) == 1


def test_sweep_time_model_and_clock(
    vna: pyvisa.resources.MessageBasedResource, emulator: PNAXEmulator, backend: FakeBackend
) -> None:
    setup_3x3(vna, points=1601)
    vna.write("SENS:BAND 1234")  # rounded up to the next valid IF bandwidth
    assert float(vna.query("SENS:BAND?")) == 1.5e3
    timing = emulator.timing
    one_pass = 1601 * (timing.settling_factor / 1.5e3 + timing.point_overhead) + timing.retrace
    assert float(vna.query("SENS:SWE:TIME?")) == pytest.approx(one_pass, rel=1e-12)
    before = backend.clock.now
    vna.write("INIT")
    vna.query("*OPC?")
    req = backend.requests[-1]
    assert req.sweep_time == pytest.approx(3 * one_pass + timing.trigger_latency, rel=1e-12)
    assert backend.clock.now - before >= req.sweep_time
    vna.write("SENS:AVER ON;:SENS:AVER:COUN 4;:SENS:AVER:CLE;:SENS:SWE:GRO:COUN 4")
    vna.write("SENS:SWE:MODE GRO")
    assert vna.query("SENS:SWE:MODE?") == "HOLD"
    req = backend.requests[-1]
    assert req.averages == 4
    assert req.sweep_time == pytest.approx(4 * 3 * one_pass + timing.trigger_latency, rel=1e-12)


def test_averaging_mixes_batches_and_modes(emulator: PNAXEmulator, backend: FakeBackend) -> None:
    emulator.write("SENS:SWE:POIN 5;:SENS:SWE:MODE HOLD;:SENS:AVER ON;:SENS:AVER:COUN 2")
    backend.offset = 1.0
    emulator.write("INIT")
    backend.offset = 3.0
    emulator.write("INIT")  # average of the two sweeps
    backend.offset = 5.0
    emulator.write("INIT")  # PNA formula past the count: new/n + old (n - 1)/n
    s11 = emulator.state.measurements["CH1_S11_1"].data
    f = emulator.state.channels[1].primary_frequencies()
    np.testing.assert_allclose(s11, true_s(1, 1, f) + 3.5, rtol=1e-14)
    emulator.write("SENS:AVER:CLE;:SENS:SWE:MODE SING")
    np.testing.assert_allclose(
        emulator.state.measurements["CH1_S11_1"].data, true_s(1, 1, f) + 5.0, rtol=1e-14
    )
    # CW sweep: every point at the CW frequency, x axis is time.
    emulator.write("SENS:AVER OFF;:SENS:SWE:TYPE CW;:SENS:FREQ:CW 5.5e9;:INIT")
    np.testing.assert_array_equal(backend.requests[-1].stimulus_frequencies, np.full(5, 5.5e9))
    x = np.array(emulator.ask("CALC:X?").split(","), dtype=float)
    np.testing.assert_allclose(x, np.linspace(0, float(emulator.ask("SENS:SWE:TIME?")), 5))
    # CONTinuous: a data query takes a new sweep once a sweep time has passed.
    emulator.write("SENS:SWE:MODE CONT")
    n = len(backend.requests)
    emulator.ask("CALC:DATA? SDATA")
    assert len(backend.requests) == n + 1
    emulator.ask("CALC:DATA? SDATA")
    assert len(backend.requests) == n + 1
    backend.clock.advance(1.0)
    emulator.ask("CALC:DATA? SDATA")
    assert len(backend.requests) == n + 2
    assert emulator.errors == []


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("SENS:FREQ:STAR 1e6", -222),
        ("SENS:FREQ:STOP 27e9", -222),
        ("SENS:SWE:POIN 0", -222),
        ("SENS:SWE:POIN 100002", -222),
        ("SENS:BAND 20e6", -222),
        ("SOUR:POW 25", -222),
        ("SENS:AVER:COUN 70000", -222),
        ("SENS2:FREQ:STAR 5e9", -114),
        ("CALC:PAR:SEL 'nope'", -224),
        ('CALC:PAR:DEF:EXT "x","S55"', -114),
        ('CALC:PAR:DEF:EXT "y","A/R1,1"', -224),
        ('CALC:PAR:DEF:EXT "CH1_S11_1","S21"', -224),
        ("CALC:FORM BOGUS", -224),
        ("SENS:FOM:RANG1:FREQ:MULT 2", -221),
        ("SENS:FOM:RANG3:FREQ:STAR 5e9", -221),
        ("FORM REAL,16", -224),
        ("SENS:SWE:TYPE SEGM", -224),
    ],
)
def test_invalid_values_raise_errors(
    vna: pyvisa.resources.MessageBasedResource, command: str, code: int
) -> None:
    vna.write(command)
    assert pop_errors(vna) == [code]
    assert float(vna.query("SENS:FREQ:STAR?")) == 10e6  # nothing was changed


def test_data_query_without_data_and_nan_fault(
    vna: pyvisa.resources.MessageBasedResource, server: SCPIServer
) -> None:
    freqs = setup_3x3(vna, points=21)
    assert vna.query("CALC:DATA? SDATA;*OPC?") == "1"  # the failed query sends nothing
    assert pop_errors(vna) == [-230]
    vna.write("INIT;:FORM REAL,64")
    server.faults.nan_data(1)
    bad = read_sdata(vna, "m12", datatype="d", is_big_endian=True)
    assert np.isnan(bad).any()
    good = read_sdata(vna, "m12", datatype="d", is_big_endian=True)
    np.testing.assert_array_equal(good, true_s(1, 2, freqs))
    vna.write("SENS:FREQ:STAR 4.5e9")  # a new stimulus grid discards the old data
    assert vna.query("CALC:DATA? SDATA;*OPC?") == "1" and pop_errors(vna) == [-230]


def test_catalog_selection_and_display(vna: pyvisa.resources.MessageBasedResource) -> None:
    assert vna.query("CALC:PAR:CAT:EXT?") == '"CH1_S11_1,S11"'
    vna.write('CALC2:PAR:DEF:EXT "t21","S21";:DISP:WIND2:STAT ON;:DISP:WIND2:TRAC3:FEED "t21"')
    assert vna.query("SYST:CHAN:CAT?") == '"1,2"'
    assert vna.query("CALC2:PAR:CAT:EXT?") == '"t21,S21"'
    assert vna.query("CALC2:PAR:MNUM?;WNUM?;TNUM?") == "2;2;3"
    assert vna.query("DISP:WIND2:CAT?;:DISP:CAT?") == '"3";"1,2"'
    vna.write('CALC:PAR:DEL "CH1_S11_1"')
    assert vna.query("CALC1:PAR:CAT?") == '"NO CATALOG"'
    vna.write("SYST:PRES")
    assert vna.query("CALC:PAR:CAT:EXT?;:CALC:PAR:SEL?") == '"CH1_S11_1,S11";"CH1_S11_1"'
    assert pop_errors(vna) == []


def test_qcodes_keysight_pnax_driver(server: SCPIServer, emulator: PNAXEmulator) -> None:
    from qcodes.instrument_drivers.Keysight import KeysightN5245A

    pna = KeysightN5245A("pna_under_test", server.address, timeout=5)
    try:
        pna.start(4e9)
        pna.stop(6e9)
        pna.points(101)
        pna.power(-10)
        assert pna.trace() == "S11" and pna.points() == 101
        mag = pna.magnitude()
        freqs = pna.frequency_axis()
        np.testing.assert_allclose(freqs, np.linspace(4e9, 6e9, 101))
        expected = 20 * np.log10(np.abs(true_s(1, 1, freqs)))
        np.testing.assert_allclose(mag, expected, rtol=1e-6)  # REAL,32 transfer
        polar = pna.polar()
        np.testing.assert_allclose(polar, true_s(1, 1, freqs), rtol=1e-6)
        assert pna.sweep_mode() == "CONT"  # the driver restores the mode after its sweep
        assert pna.aux_frequency() == pytest.approx(1e9)  # option 080: FOM range 4
        assert emulator.errors == []
    finally:
        pna.close()
