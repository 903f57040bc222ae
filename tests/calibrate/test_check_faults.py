"""Checks fail safely: a check that raises an instrument fault stops its node unrun, safe state.

A check that says "invalid" (or raises an ordinary error of its own logic)
still leads to the node running, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import qcodes as qc

from labnr.calibrate import CalibrationContext, CalibrationGraph, CheckResult, NodeResult, node
from labnr.calibrate.node import is_instrument_fault
from labnr.calibrate.state import CalibrationState
from labnr.drivers.keysight_pna import PNAError
from labnr.drivers.resilience import InstrumentFault

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim_jpc_circulator.yaml"


class FakeLab:
    def __init__(self) -> None:
        self.safe_calls = 0

    def safe_state(self) -> list[str]:
        self.safe_calls += 1
        return []


def _graph(check_raises: BaseException | None, valid: bool = True) -> tuple[Any, list[str]]:
    runs: list[str] = []

    @node
    def sweep(ctx: CalibrationContext) -> NodeResult:
        runs.append("sweep")
        return NodeResult({"x": 1.0})

    @sweep.checker
    def _(ctx: CalibrationContext) -> CheckResult:
        if check_raises is not None:
            raise check_raises
        return CheckResult(valid, "checked")

    @node(depends_on="sweep")
    def after(ctx: CalibrationContext) -> NodeResult:
        runs.append("after")
        return NodeResult({"y": 2.0})

    return CalibrationGraph([sweep, after]), runs


def _stored_state(tmp_path: Path) -> CalibrationState:
    state = CalibrationState("dev", "hash", tmp_path / "state.yaml")
    graph, _ = _graph(None)
    graph.run(CalibrationContext(state, lab=FakeLab()))
    return state


def _fault() -> InstrumentFault:
    return InstrumentFault("vna", "sweep S11", "nan", 3, ValueError("NaN in the trace"))


@pytest.mark.parametrize(
    "exc",
    [_fault(), PNAError("vna", "sweep", ['-113,"Undefined header"']), RuntimeError("wrapped")],
    ids=["InstrumentFault", "PNAError", "chained"],
)
def test_a_check_raising_an_instrument_fault_does_not_run_the_node(
    tmp_path: Path, exc: BaseException
) -> None:
    if isinstance(exc, RuntimeError) and not isinstance(exc, (InstrumentFault, PNAError)):
        exc.__cause__ = _fault()  # e.g. a helper that wraps the driver's error
    state = _stored_state(tmp_path)
    graph, runs = _graph(exc)
    lab = FakeLab()
    report = graph.run(CalibrationContext(state, lab=lab))
    assert runs == []  # neither the node nor anything after it ran
    rep = report["sweep"]
    assert rep.status == "failed" and "instrument fault, node not run" in rep.reason
    assert report.status == "failed" and report.failed_node == "sweep"
    assert report["after"].status == "not run"
    assert lab.safe_calls == 1  # safe state applied at once
    assert report.exit_code == 1
    assert state.result("sweep") == {"x": 1.0}  # the stored result stays


def test_an_invalid_check_or_a_plain_error_still_runs_the_node(tmp_path: Path) -> None:
    state = _stored_state(tmp_path)
    graph, runs = _graph(None, valid=False)
    report = graph.run(CalibrationContext(state, lab=FakeLab()))
    assert report["sweep"].status == "ran" and runs == ["sweep", "after"]
    graph, runs = _graph(ZeroDivisionError("a bug in the check's arithmetic"))
    report = graph.run(CalibrationContext(state, lab=FakeLab()))
    assert report["sweep"].status == "ran" and "check raised" in report["sweep"].reason
    assert runs == ["sweep", "after"]


def test_fault_classification() -> None:
    import sqlite3

    assert is_instrument_fault(_fault()) and is_instrument_fault(ConnectionResetError())
    assert is_instrument_fault(sqlite3.OperationalError("database is locked"))
    assert not is_instrument_fault(ValueError("fit did not converge"))
    assert not is_instrument_fault(KeyError("a"))


def test_a_faulty_trace_in_the_flux_check_does_not_sweep_the_flux(tmp_path: Path) -> None:
    """The issue's case: NaN traces during flux_sweet_spot's check; no flux sweep follows."""
    from labnr.calibrate.run import calibrate
    from labnr.session import open_lab

    old = qc.config.core.db_location
    try:
        with open_lab(CONFIG, database=tmp_path / "labnr.db", data_dir=tmp_path / "data") as lab:
            first, _ = calibrate(lab, target="flux_sweet_spot", png_report=False)
            assert first["flux_sweet_spot"].status == "ran"
            vl = lab.virtual_lab
            level = vl.flux_current()
            history = list(vl.flux_source.state.history)
            lab.pump.set_tones({t: {"amplitude": 0.05} for t in lab.pump.tone_names})
            lab.pump.output(True)  # pumps on: the fault must leave them off
            vl.vna.faults.nan_data(10_000)  # every trace from now on is faulty
            report, _ = calibrate(lab, target="flux_sweet_spot", png_report=False)
            rep = report["flux_sweet_spot"]
            assert rep.status == "failed" and "node not run" in rep.reason
            assert "InstrumentFault" in rep.reason or "nan" in rep.reason
            assert report.exit_code == 1
            vl.vna.faults.clear()
            # no sweep: the flux never left the stored sweet spot
            assert vl.flux_current() == pytest.approx(level, abs=1e-12)
            new = list(vl.flux_source.state.history)[len(history):]
            assert all(v == pytest.approx(level, abs=1e-12) for _, v in new), new
            assert not any(s.state.output for s in vl.sources.values())  # safe state
            assert lab.safe_report is not None and lab.safe_report.ok
    finally:
        qc.config.core.db_location = old
