"""Ctrl-C during a sweep: whole points stored, dataset completed, pumps off, flux held."""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np
import pytest
from lab_sessions import flux_history
from qcodes.dataset import load_last_experiment

from labnr.measure import load, map_pumps, sweep_pump_phase
from labnr.session import LabSession


def last_run() -> Any:
    return load_last_experiment().last_data_set()


def assert_interrupted(s: LabSession, flux_before: list, stored: int, total: int) -> None:
    ds = last_run()
    assert ds.completed_timestamp() is not None  # marked completed
    md = ds.metadata
    assert md["labnr_status"] == "interrupted" and md["labnr_points"] == stored
    # one row per element and whole point, never a half point
    assert ds.number_of_results == stored * len(ds.dependent_parameters)
    data = ds.get_parameter_data()
    for name in ("S_a_a", "S_b_a", "S_c_c"):
        values = data[name][name]
        assert np.isfinite(values[:stored]).all(), name
        assert values.size == 0 or np.isnan(values[stored:total]).all(), name
    assert not s.pump.output() and s.virtual_lab.source_tones() == []  # pumps off
    assert flux_history(s) == flux_before  # flux left where it was: no ramp, no jump
    # the interrupted run was exported too, with every stored point
    exported = load(s.data_dir / f"run_{ds.run_id}_{ds.guid}.h5")
    assert exported.attrs["status"] == "interrupted"
    assert int((exported["acquisition_order"] >= 0).sum()) == stored


class CallCounter:
    """Wraps a callable; runs ``action`` before call number ``when`` (1-based; int or set)."""

    def __init__(self, target: Any, when: int | set[int], action: Any) -> None:
        self.target, self.action, self.calls = target, action, 0
        self.when = {when} if isinstance(when, int) else set(when)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls in self.when:
            self.action()
        return self.target(*args, **kwargs)


def raise_interrupt() -> None:
    raise KeyboardInterrupt


def test_interrupt_from_a_knob_abandons_that_point(
    operating: LabSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = operating
    param = s.pump.tone("bc").phase
    counter = CallCounter(param.set, 4, raise_interrupt)  # setting the 4th value
    monkeypatch.setattr(param, "set", counter)
    flux_before = flux_history(s)
    with pytest.raises(KeyboardInterrupt):
        sweep_pump_phase(s, "bc", np.linspace(0, 1, 6), points=21)
    assert counter.calls == 4
    assert_interrupted(s, flux_before, stored=3, total=6)


def test_interrupt_from_the_vna_mid_point(
    operating: LabSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = operating
    # 9 acquisitions per point: the 14th is in the middle of the second point
    counter = CallCounter(s.vna.transmission_offset, 14, raise_interrupt)
    monkeypatch.setattr(s.vna, "transmission_offset", counter)
    flux_before = flux_history(s)
    with pytest.raises(KeyboardInterrupt):
        map_pumps(s, ("ab", "phase"), [0.0, 0.5], ("bc", "phase"), [0.0, 0.5], points=21)
    assert_interrupted(s, flux_before, stored=1, total=4)


def test_ctrl_c_lets_the_current_point_finish(
    operating: LabSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = operating

    def ctrl_c() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    counter = CallCounter(s.vna.transmission_offset, 14, ctrl_c)  # during the second point
    monkeypatch.setattr(s.vna, "transmission_offset", counter)
    flux_before = flux_history(s)
    with pytest.raises(KeyboardInterrupt):
        sweep_pump_phase(s, "bc", np.linspace(0, 1, 5), points=21)
    assert counter.calls == 18  # the second point was finished ...
    assert_interrupted(s, flux_before, stored=2, total=5)  # ... and stored
    assert last_run().metadata["labnr_outcome"] == "interrupted (Ctrl-C)"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_stops_at_once(
    operating: LabSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = operating

    def ctrl_c() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    counter = CallCounter(s.vna.transmission_offset, {11, 13}, ctrl_c)
    monkeypatch.setattr(s.vna, "transmission_offset", counter)
    flux_before = flux_history(s)
    with pytest.raises(KeyboardInterrupt):
        sweep_pump_phase(s, "bc", np.linspace(0, 1, 5), points=21)
    assert counter.calls == 13  # abandoned within the second point
    assert_interrupted(s, flux_before, stored=1, total=5)


def test_an_exception_mid_point_keeps_whole_points_and_leaves_the_lab_safe(
    operating: LabSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = operating

    def fail() -> None:
        raise RuntimeError("analyzer fell over")

    monkeypatch.setattr(
        s.vna, "transmission_offset", CallCounter(s.vna.transmission_offset, 10, fail)
    )
    flux_before = flux_history(s)
    with pytest.raises(RuntimeError, match="fell over"):
        sweep_pump_phase(s, "bc", [0.0, 0.5, 1.0], points=21)
    assert_interrupted(s, flux_before, stored=1, total=3)  # safe state on any exception
    md = last_run().metadata
    assert md["labnr_outcome"] == "stopped: RuntimeError: analyzer fell over"
    assert md["labnr_points_planned"] == 3


def test_sigterm_while_the_run_is_created_still_completes_and_marks_it(
    operating: LabSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's SIGTERM handling is live in a plain script (no CLI); a SIGTERM that
    lands while QCoDeS creates the run waits until the run is open, then stops it."""
    from qcodes.dataset.measurements import Runner

    from labnr.safety import Terminated

    s = operating
    enter = Runner.__enter__

    def sigterm_inside(self):  # noqa: ANN001, ANN202
        os.kill(os.getpid(), signal.SIGTERM)  # delivered while the run is being created
        return enter(self)

    monkeypatch.setattr(Runner, "__enter__", sigterm_inside)
    flux_before = flux_history(s)
    with pytest.raises(Terminated):
        sweep_pump_phase(s, "bc", np.linspace(0, 1, 4), points=21)
    assert_interrupted(s, flux_before, stored=0, total=4)
    assert last_run().metadata["labnr_outcome"] == "terminated (SIGTERM)"
