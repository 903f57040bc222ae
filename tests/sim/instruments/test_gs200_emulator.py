"""The GS200 emulator: instrument rules, programs on the virtual clock, QCoDeS driver."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from qcodes.instrument import Instrument
from qcodes.instrument_drivers.yokogawa import YokogawaGS200

from labnr.sim.instruments.gs200 import GS200Emulator
from labnr.sim.instruments.gs200_program import GS200Program
from labnr.sim.instruments.server import SCPIServer


@pytest.fixture
def backend(backend):
    """The shared recording backend, with the clock started at 100 s."""
    backend.clock.advance(100.0)
    return backend


@pytest.fixture
def gs(backend) -> GS200Emulator:
    return GS200Emulator("flux", backend)  # type: ignore[arg-type]


def _codes(emulator: GS200Emulator) -> list[int]:
    return [code for code, _ in emulator.errors]


def test_identity_and_defaults(gs: GS200Emulator) -> None:
    assert gs.ask("*IDN?").startswith("YOKOGAWA,GS210,")
    assert gs.ask(":SOUR:FUNC?;:SOUR:RANG?;:SOUR:LEV?;OUTP?") == "VOLT;10;0;0"
    assert "/MON" not in gs.ask("*OPT?")
    assert gs.state.history == [(100.0, 0.0)]


def test_level_beyond_range_is_refused(gs: GS200Emulator) -> None:
    gs.write(":SOUR:FUNC CURR;:SOUR:RANG 1e-3;:SOUR:LEV 1.1e-3")
    assert gs.state.level == pytest.approx(1.1e-3)
    gs.write(":SOUR:LEV 1.3e-3")
    assert _codes(gs) == [-222] and gs.state.level == pytest.approx(1.1e-3)
    gs.write(":SOUR:RANG 0.2")  # 200 mA range has no over-range
    gs.write(":SOUR:LEV 0.21")
    assert _codes(gs) == [-222, -222]
    gs.write(":SOUR:RANG 0.5")
    assert _codes(gs)[-1] == -222 and gs.state.range == 0.2


def test_range_selection_and_auto_level(gs: GS200Emulator) -> None:
    gs.write(":SOUR:RANG 0.5")  # VOLT: smallest range >= 0.5 V
    assert gs.state.range == 1.0
    gs.write(":SOUR:RANG UP")
    assert gs.state.range == 10.0
    gs.write(":SOUR:LEV:AUTO 0.05")
    assert (gs.state.range, gs.state.level) == (100e-3, 0.05)
    gs.write(":SOUR:RANG 10e-3")  # level 50 mV does not fit the 10 mV range
    assert _codes(gs) == [-221] and gs.state.range == 100e-3
    gs.write(":SOUR:LEV 0.0123456789")
    assert gs.state.level == pytest.approx(0.012346, abs=1e-9)  # 1 uV resolution


def test_function_change_needs_output_off(gs: GS200Emulator) -> None:
    gs.write("OUTP ON;:SOUR:FUNC CURR")
    assert _codes(gs) == [-221] and gs.state.function == "VOLT"
    gs.write("OUTP OFF;:SOUR:FUNC CURRENT")
    assert gs.state.function == "CURR" and gs.state.range == 1e-3


def test_effective_current_history_and_notify(gs: GS200Emulator, backend) -> None:
    gs.write(":SOUR:FUNC CURR;:SOUR:LEV 0.5e-3")
    assert gs.current == 0.0  # output off
    gs.write("OUTPUT 1")
    t_on = backend.clock.now
    assert gs.current == pytest.approx(0.5e-3)
    gs.write(":SOUR:LEV -0.25e-3;OUTP 0")
    assert gs.current == 0.0
    assert gs.state.history[1:3] == [(t_on, 0.0), (t_on, 0.5e-3)]
    assert [v for _, v in gs.state.history][-3:] == [-0.25e-3, -0.25e-3, 0.0]
    assert backend.notified.count("flux") >= 4
    gs.write(":SOUR:FUNC VOLT")
    assert gs.voltage == 0.0 and gs.current == 0.0


def test_program_ramp_on_virtual_clock(gs: GS200Emulator, backend) -> None:
    gs.write(":SOUR:FUNC CURR;:SOUR:RANG 10e-3;:SOUR:LEV 1e-3;:OUTP 1")
    # What QCoDeS sends for a hardware ramp from 1 mA to 3 mA at 1 mA/s.
    gs.write(
        "*CLS;:PROG:REP 0;:PROG:SLOP 2.0E+00;:PROG:INT 2.0E+00;:PROG:EDIT:STAR;"
        ":SOUR:LEV 3.0E-03;:PROG:EDIT:END;:PROG:RUN"
    )
    start = backend.clock.now
    gs.write(":SOUR:LEV 0")  # refused while the program runs
    assert _codes(gs) == [-221]
    backend.clock.advance(0.5)
    assert gs.current == pytest.approx(1e-3 + 1e-3 * (backend.clock.now - start), rel=1e-9)
    polls = 0
    while not int(gs.ask(":STAT:EVEN?")) & 128:  # EOP
        polls += 1
        assert polls < 20
    assert gs.current == pytest.approx(3e-3)
    times, values = np.array(gs.state.history).T
    ramp = (times >= start - 1e-12) & (times <= start + 2.0 + 1e-12)
    rates = np.diff(values[ramp]) / np.diff(times[ramp])
    assert rates == pytest.approx(1e-3, rel=1e-6)
    assert backend.clock.now >= start + 2.0


def test_program_pause_and_repeat(gs: GS200Emulator, backend) -> None:
    gs.write(
        ":SOUR:FUNC CURR;:SOUR:RANG 1e-3;:OUTP 1;:PROG:INT 1;:PROG:SLOP 0;"
        ":PROG:REP 1;:PROG:EDIT:STAR;:SOUR:LEV 1e-4;:SOUR:LEV 2e-4;:PROG:EDIT:END;"
        ":PROG:RUN"
    )
    start = backend.clock.now
    backend.clock.advance(1.5)
    assert gs.current == pytest.approx(2e-4)
    gs.write(":PROG:PAUS")
    backend.clock.advance(10.0)
    assert gs.current == pytest.approx(2e-4)
    gs.write(":PROG:CONT")
    backend.clock.advance(0.6)
    assert gs.current == pytest.approx(1e-4)  # next cycle, shifted by the pause
    assert backend.clock.now - start > 12.0
    gs.write("*RST")
    assert gs.current == 0.0 and gs.state.function == "VOLT"


def test_missing_monitor_and_status(gs: GS200Emulator) -> None:
    gs.write(":SENS 1")
    assert gs.process(":MEAS?") is None
    assert _codes(gs) == [-241, -241]
    assert gs.ask(":SYST:LFR?;:STAT:COND?") == "50;256"
    assert gs.ask(":SENS:REM?;:ROUT:BNCO?") == "0;TRIG"


@pytest.fixture
def yoko() -> Iterator[tuple[YokogawaGS200, GS200Emulator]]:
    emulator = GS200Emulator("flux")
    with SCPIServer(emulator) as server:
        driver = YokogawaGS200("yoko_test", server.address)
        try:
            yield driver, emulator
        finally:
            Instrument.close_all()


def test_qcodes_driver(yoko: tuple[YokogawaGS200, GS200Emulator]) -> None:
    driver, emulator = yoko
    assert driver.IDN()["vendor"] == "YOKOGAWA"
    driver.source_mode("CURR")
    driver.current_range(10e-3)
    driver.current(1.5e-3)
    driver.output("on")
    assert driver.current() == pytest.approx(1.5e-3)
    assert driver.output() == "on"
    assert emulator.current == pytest.approx(1.5e-3)
    driver.voltage_limit(5)
    driver.current_limit(0.05)
    driver.snapshot(update=True)
    assert emulator.errors == []
    driver.ramp_rate(10e-3)
    driver.ramp_current(2.5e-3, ramp_mode="HARDWARE")  # a one-step program, 0.1 s virtual
    assert emulator.current == pytest.approx(2.5e-3)
    assert driver.system_errors() == '0,"No error"'
    driver.output("off")
    assert driver.ask("*OPC?") == "1"  # writes are asynchronous: synchronise first
    assert emulator.current == 0.0


def test_program_ends_exactly_on_its_last_step() -> None:
    # start + n * interval can fall an ulp short of the last slope's end
    # (0.3 + 4 * 0.1 < 0.3 + 3 * 0.1 + 0.1): the level must still be the last step.
    program = GS200Program((1e-4, 2e-4, 3e-4, 0.0), 0.3, 0.0, 0.1, 0.1, False)
    assert program.end < 0.3 + 3 * 0.1 + 0.1
    segments = list(program.segments(0.3, 10.0))
    assert segments[-1][2] == 0.0
