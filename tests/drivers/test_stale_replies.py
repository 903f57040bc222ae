"""A reply that arrives after its timeout never answers a later query (visa_guard).

The virtual lab's latency fault delays every reply beyond a short VISA
timeout; the emulators answer in order, so the late reply sits in the
connection. A plain QCoDeS driver then takes it as the answer to its next
query (the control case, which shows the test can fail); labnr's drivers
flush and pair (or reconnect) first and get the right answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pyvisa.errors
from qcodes.instrument import Instrument
from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A as QCoDeSSGS100A

from labnr.drivers import InstrumentFault, RetryPolicy
from labnr.drivers.keysight_pna import KeysightN5242B
from labnr.drivers.resilience import call_with_retries
from labnr.drivers.sgs100a import RohdeSchwarzSGS100A
from labnr.drivers.visa_guard import StaleConnectionError
from labnr.drivers.yokogawa_gs200 import YokogawaGS200
from labnr.sim.faults import inject_fault

#: Short VISA timeout (s); latencies are multiples of it, so load only changes the route.
TIMEOUT = 0.3
CONNECT = {"terminator": "\n", "visalib": "@py", "device_clear": False, "timeout": TIMEOUT}


@pytest.fixture(autouse=True)
def _close_all() -> Iterator[None]:
    yield
    Instrument.close_all()


def late_reply(address: str, query: Any, latency: float = 2.5 * TIMEOUT) -> None:
    """Make ``query()`` time out, then let the instrument answer promptly again."""
    inject_fault(address, "latency", latency)
    with pytest.raises(pyvisa.errors.VisaIOError):
        query()
    inject_fault(address, "clear")


def settle(seconds: float = 2.5 * TIMEOUT) -> None:
    """Wait until the late reply has certainly arrived in the client's socket."""
    time.sleep(seconds)


@pytest.fixture
def pump(virtual_lab: Any) -> tuple[Any, str]:
    address = virtual_lab.addresses["pump_ab"]
    emulator = virtual_lab.sources["pump_ab"]
    emulator.write("SOUR:FREQ 5.5E9;:SOUR:POW -12.5")
    return emulator, address


def test_plain_qcodes_driver_takes_the_late_reply(pump: tuple[Any, str]) -> None:
    """Control: without the hygiene the frequency's late reply answers the power query."""
    _, address = pump
    sgs = QCoDeSSGS100A("plain", address, **CONNECT)
    late_reply(address, sgs.frequency)
    settle()
    assert sgs.power() == pytest.approx(5.5e9)  # the stale reply


@pytest.mark.parametrize("wait", [True, False], ids=["late reply arrived", "still in flight"])
def test_guarded_driver_discards_the_late_reply(pump: tuple[Any, str], wait: bool) -> None:
    _, address = pump
    sgs = RohdeSchwarzSGS100A("pump_ab", address, **CONNECT)
    late_reply(address, sgs.frequency)
    assert sgs.connection_dirty
    if wait:
        settle()
    assert sgs.power() == pytest.approx(-12.5)
    assert sgs.frequency() == pytest.approx(5.5e9)
    assert not sgs.connection_dirty


def test_a_lost_idn_query_forces_a_reconnection(pump: tuple[Any, str]) -> None:
    """A late ``*IDN?`` reply would pass as the pairing answer: reconnect instead."""
    _, address = pump
    sgs = RohdeSchwarzSGS100A("pump_ab", address, **CONNECT)
    first = sgs.visa_handle
    late_reply(address, lambda: sgs.ask_raw("*IDN?"))
    settle()
    assert sgs.ask("SOUR:POW?").strip() == "-12.5"
    assert sgs.visa_handle is not first
    assert sgs.ask("*IDN?").strip() == sgs.confirmed_idn["reply"]  # and not one behind


def test_persistent_latency_raises_and_stays_dirty(pump: tuple[Any, str]) -> None:
    _, address = pump
    sgs = RohdeSchwarzSGS100A("pump_ab", address, **CONNECT)
    inject_fault(address, "latency", 4 * TIMEOUT)
    with pytest.raises(pyvisa.errors.VisaIOError):
        sgs.frequency()
    with pytest.raises(StaleConnectionError, match="pump_ab.*no answer to the pairing"):
        sgs.ask_raw("SOUR:POW?")
    assert sgs.connection_dirty
    inject_fault(address, "clear")
    assert float(sgs.ask("SOUR:POW?")) == pytest.approx(-12.5)


def test_writes_wait_for_a_clean_connection(pump: tuple[Any, str]) -> None:
    """A write after a timeout goes out only after the resync (and takes effect)."""
    emulator, address = pump
    sgs = RohdeSchwarzSGS100A("pump_ab", address, **CONNECT)
    late_reply(address, sgs.frequency)
    sgs.power(-20.0)
    assert not sgs.connection_dirty
    assert sgs.power() == pytest.approx(-20.0)  # the query also waits for the write
    assert emulator.state.power == -20.0


def test_flux_source_reads_the_right_level_after_a_timeout(
    virtual_lab: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The GS200's level after a timed-out output query: the level, not '1'."""
    address = virtual_lab.addresses["flux"]
    virtual_lab.flux_source.write(":SOUR:FUNC CURR;:SOUR:RANG 1E-3;:SOUR:LEV 1.36E-4;:OUTP 1")
    gs = YokogawaGS200("flux_source", address, **CONNECT)
    late_reply(address, gs.output)
    settle()
    with caplog.at_level(logging.WARNING, logger="labnr.drivers.visa_guard"):
        level = gs.current()
    assert level == pytest.approx(1.36e-4)
    assert gs.stale_replies_discarded >= 1 and "stale reply '1'" in caplog.text


def test_retried_vna_query_pairs_after_the_retries_give_up(virtual_lab: Any) -> None:
    """The PNA retries (and reconnects); the last attempt's late reply is still flushed."""
    address = virtual_lab.addresses["vna"]
    vna = KeysightN5242B("vna", address, **CONNECT)
    vna.retry_policy = RetryPolicy(attempts=2, base_delay=0.0)
    vna.points(201)
    vna.if_bandwidth(1e3)
    inject_fault(address, "latency", 2.5 * TIMEOUT)
    with pytest.raises(InstrumentFault, match="timeout"):
        vna.ask("SENS1:SWE:POIN?")
    inject_fault(address, "clear")
    settle()
    assert float(vna.ask("SENS1:BAND?")) == pytest.approx(1e3)


def test_malformed_reply_marks_the_connection_dirty(pump: tuple[Any, str]) -> None:
    """An unparseable reply may belong to another query: resync before the retry."""
    _, address = pump
    sgs = RohdeSchwarzSGS100A("pump_ab", address, **CONNECT)
    sgs.retry_policy = RetryPolicy(attempts=3, base_delay=0.0)
    inject_fault(address, "malformed", 1)
    seen: list[bool] = []

    def read() -> float:
        seen.append(sgs.connection_dirty)
        return float(sgs.ask("SOUR:POW?"))

    assert call_with_retries(sgs, "reading the power", read, reconnect=None) == -12.5
    assert seen == [False, True] and not sgs.connection_dirty


def test_a_late_idn_reply_during_connect_is_not_taken_later(
    virtual_lab: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PNA's first ``*IDN?`` times out and is retried; its late reply never answers ``*OPT?``.

    A connection that failed before the identity was confirmed has nothing to
    pair with yet: once confirmed, it is reconnected and paired before use.
    """
    address = virtual_lab.addresses["vna"]
    original = KeysightN5242B.set_address
    reconnections: list[str] = []

    def set_address(self: Any, new: str, visalib: str | None) -> None:
        if not reconnections:  # the retry after the first timeout: the analyzer recovers
            inject_fault(address, "clear")
        reconnections.append(new)
        original(self, new, visalib)

    monkeypatch.setattr(KeysightN5242B, "set_address", set_address)
    inject_fault(address, "latency", 2.5 * TIMEOUT)
    vna = KeysightN5242B("vna", address, **CONNECT)
    assert vna.confirmed_idn["model"] == "N5242B"
    assert vna.options == tuple(virtual_lab.vna.options.strip('"').split(","))
    assert len(reconnections) >= 2  # the retry, then the pairing after confirmation


def test_an_instrument_that_does_not_answer_is_refused(pump: tuple[Any, str]) -> None:
    _, address = pump
    inject_fault(address, "latency", 2.5 * TIMEOUT)
    with pytest.raises(Exception, match=r"'pump_ab' at .* does not answer \*IDN\?.*nothing was"):
        RohdeSchwarzSGS100A("pump_ab", address, **CONNECT)
    assert not Instrument.instances()
