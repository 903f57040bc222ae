"""The SGS100A emulator: limits, header forms, notification, QCoDeS driver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from qcodes.instrument import Instrument
from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A

from labnr.sim.instruments.server import SCPIServer
from labnr.sim.instruments.sgs100a import SGS100AEmulator


@pytest.fixture
def sgs(backend) -> SGS100AEmulator:
    return SGS100AEmulator("pump_ab", backend)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "attr", "value"),
    [
        ("SOUR:FREQ 5.5e9", "frequency", 5.5e9),
        (":SOURCE:FREQUENCY:CW 6 GHz", "frequency", 6e9),
        ("FREQ:FIX 1e6", "frequency", 1e6),
        ("POW -42.5", "power", -42.5),
        ("SOUR:POW:LEV:IMM:AMPL 25", "power", 25.0),
        ("PHAS -720", "phase", -720.0),
        (":OUTP:STAT ON", "output", True),
        (":IQ:STAT 1", "iq_state", True),
        ("SOUR:IQ:IMP:LEAK:I -2.5", "i_offset", -2.5),
        ("IQ:IMP:IQR:MAGN 0.5", "iq_gain_imbalance", 0.5),
        ("SOUR:PULM:MODE double", "pulse_mode", "DOUB"),
        ("CONN:REFL:OUTP off", "ref_lo_output", "OFF"),
        ("SOUR:ROSC:OUTP:FREQ 100MHz", "ref_output_frequency", "100MHZ"),
        ("SOUR:OPMode BBBYpass", "operation_mode", "BBBY"),
    ],
)
def test_header_forms_set_state(
    sgs: SGS100AEmulator, command: str, attr: str, value: object
) -> None:
    sgs.write(command)
    assert sgs.errors == []
    assert getattr(sgs.state, attr) == value


@pytest.mark.parametrize(
    "command", ["SOUR:FREQ 12.76e9", "SOUR:FREQ 0.9e6", "POW 25.1", "POW -121", "PHAS 721"]
)
def test_out_of_range_is_refused(sgs: SGS100AEmulator, command: str) -> None:
    before = (sgs.state.frequency, sgs.state.power, sgs.state.phase)
    sgs.write(command)
    code, message = sgs.pop_error()
    assert code == -222 and "outside" in message
    assert (sgs.state.frequency, sgs.state.power, sgs.state.phase) == before


def test_bad_enum_and_queries(sgs: SGS100AEmulator) -> None:
    sgs.write("ROSC:SOUR SIDEWAYS")
    assert sgs.pop_error()[0] == -224
    sgs.write("SOUR:FREQ 4.2e9;POW -10;PHAS 45;:OUTP 1")
    assert sgs.ask("FREQ?;POW?;PHAS?;OUTP?;ROSC:SOUR?") == "4200000000;-10;45;1;INT"


def test_notify_only_on_change_and_reset(sgs: SGS100AEmulator, backend) -> None:
    sgs.write("SOUR:FREQ 7e9")
    sgs.write("SOUR:FREQ 7e9")
    sgs.write("OUTP ON")
    assert backend.notified == ["pump_ab", "pump_ab"]
    sgs.write("*RST")
    assert sgs.state.output is False and sgs.state.frequency == 1e9
    assert backend.clock.now == pytest.approx(4e-3)


@pytest.fixture
def source() -> Iterator[tuple[RohdeSchwarzSGS100A, SGS100AEmulator]]:
    emulator = SGS100AEmulator("pump")
    with SCPIServer(emulator) as server:
        driver = RohdeSchwarzSGS100A("sgs_test", server.address)
        try:
            yield driver, emulator
        finally:
            Instrument.close_all()


def test_qcodes_driver(source: tuple[RohdeSchwarzSGS100A, SGS100AEmulator]) -> None:
    driver, emulator = source
    assert driver.IDN()["model"] == "SGS100A"
    driver.frequency(5.123456789e9)
    driver.power(-12.5)
    driver.phase(90.0)
    driver.status("on")
    assert driver.frequency() == pytest.approx(5.12345679e9)  # driver sends {:.2f}
    assert driver.power() == -12.5
    assert driver.phase() == 90.0
    assert driver.status() is True
    driver.IQ_state("on")
    driver.pulsemod_mode("double")
    driver.ref_LO_out("Off")
    driver.trigger_connector_mode("pems")
    driver.operation_mode("BBBYpass")
    driver.I_offset(1.5)
    driver.snapshot(update=True)
    assert emulator.errors == []
    state = emulator.state
    assert (state.iq_state, state.pulse_mode, state.ref_lo_output) == (True, "DOUB", "OFF")
    assert (state.trigger_connector_mode, state.operation_mode, state.i_offset) == (
        "PEMS",
        "BBBY",
        1.5,
    )
    driver.off()
    assert driver.status() is False and emulator.state.output is False
