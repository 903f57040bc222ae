"""Bounded retries, back-off and reconnection of the drivers (labnr.drivers.resilience).

Unit tests of the policy, then the drivers against the virtual lab's fault
injection: the VNA's acquisitions, the CW pump's settings and the GS200's flux
ramp recover from transient faults and raise :class:`InstrumentFault` (naming
the instrument, the operation and the fault) when the fault persists.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import pyvisa.constants
import pyvisa.errors
import qcodes as qc

from labnr.drivers import InstrumentFault, RetryPolicy
from labnr.drivers.pumps import volts_to_dbm
from labnr.drivers.resilience import (
    InstrumentErrorReply,
    NonFiniteData,
    call_with_retries,
    fault_kind,
)
from labnr.session import LabSession, open_lab

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim_jpc_circulator.yaml"
FAST = RetryPolicy(attempts=3, base_delay=0.0)


class Thing:
    """A stand-in instrument for the unit tests."""

    name = "thing"
    retry_policy = FAST


def flaky(errors: list[BaseException], result: object = "ok") -> tuple[list[int], object]:
    calls: list[int] = []

    def fn() -> object:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return calls, fn


def timeout_error() -> pyvisa.errors.VisaIOError:
    return pyvisa.errors.VisaIOError(pyvisa.constants.StatusCode.error_timeout)


# ---------------------------------------------------------------------- policy


def test_policy_backs_off_exponentially_up_to_its_cap() -> None:
    p = RetryPolicy(attempts=5, base_delay=0.01, factor=4.0, max_delay=0.1)
    assert [p.delay(k) for k in (1, 2, 3, 4)] == [0.01, 0.04, 0.1, 0.1]
    assert p.limit("instrument error") == 2 and p.limit("timeout") == 5
    with pytest.raises(ValueError, match="attempts=0"):
        RetryPolicy(attempts=0)


def test_fault_kinds_are_recognised() -> None:
    assert fault_kind(timeout_error()) == "timeout"
    assert fault_kind(ConnectionResetError()) == "connection"
    assert fault_kind(BrokenPipeError()) == "connection"
    assert fault_kind(ValueError("could not convert '5.3~?'")) == "malformed"
    assert fault_kind(NonFiniteData("NaN")) == "nan"
    assert fault_kind(InstrumentErrorReply('-222,"Data out of range"')) == "instrument error"
    for final in (TypeError("bug"), RuntimeError("tripped"), KeyboardInterrupt()):
        assert fault_kind(final) is None
    late = TimeoutError("ramp did not end")
    late.transient = False  # type: ignore[attr-defined]
    assert fault_kind(late) is None


def test_transient_faults_are_retried_with_reconnection() -> None:
    reconnects: list[str] = []
    calls, fn = flaky([ConnectionResetError(), timeout_error()])
    out = call_with_retries(Thing(), "op", fn, reconnect=lambda i: reconnects.append(i.name))
    assert out == "ok" and len(calls) == 3 and reconnects == ["thing", "thing"]


def test_non_finite_data_is_acquired_again_without_reconnecting() -> None:
    reconnects: list[object] = []
    results = [np.array([1.0, np.nan]), np.array([1.0, 2.0])]
    out = call_with_retries(
        Thing(), "acquire", lambda: results.pop(0),
        check=lambda r: None if np.isfinite(r).all() else (_ for _ in ()).throw(NonFiniteData()),
        reconnect=reconnects.append,
    )  # fmt: skip
    assert out.tolist() == [1.0, 2.0] and reconnects == [] and results == []


def test_an_instrument_error_is_retried_once_then_raised_with_its_text() -> None:
    calls, fn = flaky([InstrumentErrorReply('-222,"Data out of range"')] * 3)
    match = r'thing: op failed after 2 .*-222,"Data out of range"'
    with pytest.raises(InstrumentFault, match=match):
        call_with_retries(Thing(), "op", fn, reconnect=None)
    assert len(calls) == 2


def test_exhausted_retries_raise_a_clear_fault() -> None:
    calls, fn = flaky([timeout_error()] * 5)
    with pytest.raises(InstrumentFault) as info:
        call_with_retries(Thing(), "reading the level", fn, reconnect=None)
    f = info.value
    assert (f.instrument, f.operation, f.kind, f.attempts) == ("thing", "reading the level",
                                                               "timeout", 3)  # fmt: skip
    assert isinstance(f.cause, pyvisa.errors.VisaIOError) and len(calls) == 3
    assert isinstance(f, RuntimeError)


def test_other_errors_pass_at_once_and_nested_operations_do_not_multiply() -> None:
    calls, fn = flaky([TypeError("a bug")])
    with pytest.raises(TypeError):
        call_with_retries(Thing(), "op", fn)
    assert len(calls) == 1
    thing = Thing()
    inner_calls, inner = flaky([ConnectionResetError()] * 10)
    with pytest.raises(InstrumentFault):
        call_with_retries(thing, "outer", lambda: call_with_retries(thing, "inner", inner),
                          reconnect=None)  # fmt: skip
    assert len(inner_calls) == 3  # 3 attempts in all, not 3 x 3


# ---------------------------------------------------------------------- drivers on the lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabSession]:
    old = qc.config.core.db_location
    session = open_lab(CONFIG, database=tmp_path / "labnr.db", data_dir=tmp_path / "data")
    for name in ("vna", "pump_ab", "pump_bc", "pump_ca"):  # a freeze costs one timeout
        session.station.components[name].timeout(0.5)
    try:
        yield session
    finally:
        session.close()
        qc.config.core.db_location = old


def read_s11(lab: LabSession) -> np.ndarray:
    return lab.vna.transmission_offset(1, 1, 5.25e9, 5.37e9, 101, offset=0.0).data  # S11


def test_vna_recovers_from_each_transient_fault(lab: LabSession) -> None:
    faults = lab.virtual_lab.vna.faults
    reference = read_s11(lab)
    for inject in (
        lambda: faults.drop_connection(3),  # reset mid-acquisition
        lambda: faults.malformed_reply(1),  # a corrupted reply
        lambda: faults.nan_data(1),  # a NaN trace
        lambda: faults.push_error(-310, "System error"),  # an error in the queue
        lambda: faults.freeze(0.2),  # a freeze shorter than the retries
    ):
        inject()
        data = read_s11(lab)
        assert data.shape == reference.shape and np.isfinite(data).all()
        # same device, same settings: the same trace within the noise
        assert np.max(np.abs(data - reference)) < 0.05 * np.max(np.abs(reference))
    assert lab.vna.point([(2, 1)], 5.31e9, offset=1.16e9).shape == (1,)


def test_vna_persistent_faults_raise_naming_the_instrument(lab: LabSession) -> None:
    faults = lab.virtual_lab.vna.faults
    faults.nan_data(1000)
    with pytest.raises(InstrumentFault, match=r"^vna: acquisition .* 3 attempt\(s\): nan") as info:
        read_s11(lab)
    assert info.value.kind == "nan"
    faults.clear()
    faults.freeze()
    t0 = time.monotonic()
    with pytest.raises(InstrumentFault, match="timeout") as info:
        lab.vna.points()
    assert info.value.attempts == 3 and time.monotonic() - t0 < 10  # bounded
    faults.clear()
    assert np.isfinite(read_s11(lab)).all()  # reconnected once the fault is gone
    lab.virtual_lab.servers["vna"].stop()  # the instrument is gone for good
    with pytest.raises(InstrumentFault, match="vna: .*connection"):
        read_s11(lab)


def test_pump_settings_survive_a_dropped_source_connection(lab: LabSession) -> None:
    src = lab.virtual_lab.sources["pump_ab"]
    src.faults.drop_connection(1)  # the next write is lost, its read-back fails
    lab.pump.tone("ab").phase(0.5)
    assert src.state.phase == pytest.approx(np.rad2deg(0.5), abs=0.01)
    assert lab.pump.tone("ab").phase() == pytest.approx(0.5, abs=1e-3)
    src.faults.freeze(0.3)  # shorter than the source's timeout
    lab.pump.tone("ab").amplitude(0.05)  # 0 -> 0.05 V: power set (its RF stays off: pump off)
    assert src.state.power == pytest.approx(volts_to_dbm(0.05), abs=0.01)
    lab.pump.output(True)
    src.faults.drop_connection(0)
    lab.pump.output(False)  # switching off works through a reconnection
    assert not src.state.output


def test_pump_off_switches_every_reachable_source_off(lab: LabSession) -> None:
    lab.pump.output(True)
    sources = lab.virtual_lab.sources
    sources["pump_bc"].faults.freeze()  # one source hangs for good
    problems = lab.safe_state()
    assert len(problems) == 1 and "pump_bc" in problems[0] and "timeout" in problems[0]
    assert not sources["pump_ab"].state.output and not sources["pump_ca"].state.output
    sources["pump_bc"].faults.clear()


def _flux_history_ok(lab: LabSession, rate: float) -> list[str]:
    hist = list(lab.virtual_lab.flux_source.state.history)
    bad = []
    for (t0, v0), (t1, v1) in zip(hist, hist[1:], strict=False):
        dv, dt = abs(v1 - v0), t1 - t0
        if dv > 1e-12 and (dt <= 0 or dv / dt > rate * (1 + 1e-6)):
            bad.append(f"{dv:.3g} A in {dt:.3g} s at t={t0:.3f}")
    return bad


def test_flux_ramp_continues_from_the_held_level_after_a_drop(
    lab: LabSession, caplog: pytest.LogCaptureFixture
) -> None:
    flux, gs = lab.flux, lab.virtual_lab.flux_source
    flux.output(True)
    rate = flux.ramp_rate()
    original = gs.process
    seen = {"n": 0, "dropped": False}

    def process(message: bytes | str) -> bytes | None:
        text = message.decode() if isinstance(message, bytes) else message
        if ":STAT:EVEN?" in text.upper() or "STAT:EVEN?" in text.upper():
            seen["n"] += 1
            if seen["n"] == 4 and not seen["dropped"]:  # while the program runs
                seen["dropped"] = True
                gs.faults.drop_connection(0)
        return original(message)

    gs.process = process
    try:
        flux.source.ramp(200e-6, rate, flux.max_step())
    finally:
        gs.process = original
    assert seen["dropped"]
    assert any("flux_source: reconnected" in r.getMessage() for r in caplog.records)
    assert gs.state.level == pytest.approx(200e-6, abs=1e-8)
    assert _flux_history_ok(lab, rate) == []  # never faster than the rate, never a jump
