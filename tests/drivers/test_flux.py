"""FluxBias on the virtual lab's GS200: ramps on the virtual clock, limits, connect/close, Ctrl-C.

The emulator logs the effective output as (virtual time, current) breakpoints
with exact linear interpolation between them, so rate, step and jump checks
on ``lab.flux_source.state.history`` are checks of what the coil saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qcodes.instrument import Instrument

from labnr.drivers.flux_gs200 import GS200CurrentSource, GS200FluxBias
from labnr.sim.lab import VirtualLab

RATE = 1e-3  # A/s
STEP = 1e-4  # A
LIMITS = (-1e-3, 1e-3)  # A


def connect(lab: VirtualLab, name: str = "fluxbias", **overrides: Any) -> GS200FluxBias:
    """A GS200FluxBias on the lab's GS200 with the true calibration unless overridden."""
    truth = lab.spec.flux
    assert truth is not None
    kwargs: dict[str, Any] = {
        "current_per_flux_quantum": truth.current_per_flux_quantum,
        "offset_current": truth.offset_current,
        "current_limits": LIMITS,
        "ramp_rate": RATE,
        "max_step": STEP,
        "poll_interval": 0.0,
        **overrides,
    }
    return GS200FluxBias(name, lab.addresses["flux"], **kwargs)


def history(lab: VirtualLab) -> list[tuple[float, float]]:
    assert lab.flux_source is not None
    return list(lab.flux_source.state.history)


def assert_safe_history(
    points: list[tuple[float, float]],
    limits: tuple[float, float] = LIMITS,
    rate: float = RATE,
    step: float = STEP,
) -> None:
    """Within limits, slope <= rate, change between breakpoints <= step, no jumps."""
    a = np.asarray(points, dtype=float)
    t, i = a[:, 0], a[:, 1]
    assert i.min() >= limits[0] - 1e-12 and i.max() <= limits[1] + 1e-12, (i.min(), i.max())
    dt, di = np.diff(t), np.abs(np.diff(i))
    assert np.all(dt >= 0)
    jumps = (dt == 0) & (di > 0)
    assert not jumps.any(), f"zero-duration jumps at t={t[1:][jumps]}"
    assert di.max(initial=0.0) <= step * (1 + 1e-9)
    moving = dt > 0
    assert np.all(di[moving] <= rate * dt[moving] * (1 + 1e-9) + 1e-15), (
        di / np.maximum(dt, 1e-30)
    ).max()


class ScpiSpy:
    """Counts every message the QCoDeS GS200 sends (writes and queries)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fb: GS200FluxBias) -> None:
        self.sent: list[str] = []
        gs = fb.source.instrument
        for method in ("write_raw", "ask_raw"):
            original = getattr(gs, method)
            monkeypatch.setattr(gs, method, self._wrap(original))

    def _wrap(self, original: Callable[[str], Any]) -> Callable[[str], Any]:
        def spy(cmd: str) -> Any:
            self.sent.append(cmd)
            return original(cmd)

        return spy


@pytest.fixture
def flux_bias(virtual_lab: VirtualLab) -> Iterator[GS200FluxBias]:
    fb = connect(virtual_lab)
    try:
        yield fb
    finally:
        Instrument.close_all()


# ---------------------------------------------------------------------- ramps


def test_flux_ramp_obeys_rate_and_step_on_virtual_clock(
    virtual_lab: VirtualLab, flux_bias: GS200FluxBias
) -> None:
    flux_bias.output(True)
    start_time, start_current = virtual_lab.clock.now, flux_bias.current()
    flux_bias.flux(0.5)
    elapsed = virtual_lab.clock.now - start_time
    target = flux_bias.flux_to_current(0.5)
    assert flux_bias.current() == pytest.approx(target, abs=1e-8)
    # Ramping takes at least |dI| / rate on the instrument's clock (and not much more:
    # steps of max_step at 0.1 s each, plus command latencies).
    assert abs(target - start_current) / RATE <= elapsed <= abs(target - start_current) / RATE + 0.5
    points = history(virtual_lab)
    assert len(points) > 5
    assert_safe_history(points)
    slopes = np.abs(np.diff(np.asarray(points)[:, 1])) / np.maximum(
        np.diff(np.asarray(points)[:, 0]), 1e-30
    )
    assert slopes.max() > 0.9 * RATE  # it does ramp near the configured rate


def test_slow_steps_make_the_ramp_slower_never_faster(virtual_lab: VirtualLab) -> None:
    fb = connect(virtual_lab, max_step=2e-5)  # 2e-5 A / 1e-3 A/s = 20 ms < GS200's 0.1 s
    try:
        fb.output(True)
        t0 = virtual_lab.clock.now
        fb.current(4e-4)
        assert virtual_lab.clock.now - t0 >= 4e-4 / (2e-5 / 0.1)  # 20 steps of 0.1 s
        assert_safe_history(history(virtual_lab), step=2e-5)
    finally:
        Instrument.close_all()


def test_long_ramp_runs_as_several_programs(
    virtual_lab: VirtualLab, flux_bias: GS200FluxBias, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GS200CurrentSource, "max_program_steps", 3)
    spy = ScpiSpy(monkeypatch, flux_bias)
    flux_bias.output(True)
    flux_bias.current(-9.5e-4)  # 10 breakpoints: 4 programs
    assert sum(cmd == ":PROG:RUN" for cmd in spy.sent) == 4
    assert flux_bias.current() == pytest.approx(-9.5e-4, abs=1e-9)
    assert_safe_history(history(virtual_lab))


def test_raw_qcodes_current_ramps_at_the_configured_rate(
    virtual_lab: VirtualLab, flux_bias: GS200FluxBias
) -> None:
    flux_bias.output(True)
    flux_bias.source.instrument.current(3e-4)  # QCoDeS's own one-step hardware ramp
    assert virtual_lab.flux_current() == pytest.approx(3e-4)
    assert_safe_history(history(virtual_lab), step=3e-4)  # QCoDeS knows no max_step


def test_device_flux_follows_the_flux_parameter(
    virtual_lab: VirtualLab, flux_bias: GS200FluxBias
) -> None:
    flux_bias.output(True)
    for phi in (0.25, -0.4, 0.0, 0.6):
        flux_bias.flux(phi)
        assert flux_bias.flux() == pytest.approx(phi, abs=1e-5)
        assert virtual_lab.truth().flux == pytest.approx(phi, abs=2e-4)  # drift ~ 1e-5
    # A wrong offset calibration shifts the true flux by the offset error / I_Phi0.
    flux_bias.offset_current(0.0)
    flux_bias.flux(0.2)
    assert virtual_lab.truth().flux == pytest.approx(0.2 - 0.137e-3 / 1.2e-3, abs=2e-4)


# ---------------------------------------------------------------------- limits


def test_limits_raise_before_any_scpi(
    virtual_lab: VirtualLab, flux_bias: GS200FluxBias, monkeypatch: pytest.MonkeyPatch
) -> None:
    flux_bias.output(True)
    spy = ScpiSpy(monkeypatch, flux_bias)
    with pytest.raises(ValueError) as info:
        flux_bias.flux(2.0)
    message = str(info.value)
    assert "2.0 Phi0" in message and "fluxbias.flux" in message and "'fluxbias'" in message
    assert "[-0.947" in message and "0.719" in message  # (+-1 mA - 0.137 mA) / 1.2 mA
    with pytest.raises(
        ValueError, match=r"0\.0015 A is outside the allowed range \[-0\.001, 0\.001\]"
    ):
        flux_bias.current(1.5e-3)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError):
            flux_bias.current(bad)
    with pytest.raises(ValueError, match="ramp_rate"):
        flux_bias.ramp_rate(2 * RATE)  # above the configured limit
    with pytest.raises(ValueError, match="max_step"):
        flux_bias.max_step(2 * STEP)
    with pytest.raises(TypeError):
        flux_bias.current("1e-4")  # type: ignore[arg-type]
    assert spy.sent == []
    flux_bias.ramp_rate(RATE / 2)  # slowing down is allowed
    assert flux_bias.ramp_rate() == RATE / 2


def test_flux_limits_follow_the_calibration(flux_bias: GS200FluxBias) -> None:
    flux_bias.current_per_flux_quantum(-0.5e-3)  # reversed coil polarity
    flux_bias.offset_current(1e-4)
    assert flux_bias.flux_limits() == pytest.approx(
        ((1e-3 - 1e-4) / -0.5e-3, (-1e-3 - 1e-4) / -0.5e-3)
    )
    with pytest.raises(ValueError):
        flux_bias.flux(2.5)
    with pytest.raises(ValueError):
        flux_bias.current_per_flux_quantum(0.0)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"current_limits": (1e-4, 1e-3)}, "current_limits"),  # must contain 0 A
        ({"current_limits": (-1e-3,)}, "current_limits"),
        ({"ramp_rate": 0.0}, "ramp_rate"),
        ({"max_step": -1e-5}, "max_step"),
        ({"current_per_flux_quantum": 0.0}, "current_per_flux_quantum"),
    ],
)
def test_bad_configuration_is_refused_and_nothing_stays_open(
    virtual_lab: VirtualLab, overrides: dict[str, Any], key: str
) -> None:
    with pytest.raises(ValueError, match=key):
        connect(virtual_lab, name="badflux", **overrides)
    assert not Instrument.exist("badflux") and not Instrument.exist("badflux_source")


# ---------------------------------------------------------------------- connect / close / output


def test_connect_and_close_never_move_the_level(virtual_lab: VirtualLab) -> None:
    fb = connect(virtual_lab, name="first")
    fb.output(True)
    fb.current(6.3e-4)
    before = history(virtual_lab)
    fb.close()
    again = connect(virtual_lab, name="second")
    assert again.output() and again.current() == pytest.approx(6.3e-4, abs=1e-9)
    virtual_lab.clock.advance(10.0)
    again.snapshot(update=True)
    again.close()
    assert history(virtual_lab) == before
    assert virtual_lab.flux_current() == pytest.approx(6.3e-4, abs=1e-9)
    Instrument.close_all()


def test_output_switches_only_at_zero(virtual_lab: VirtualLab) -> None:
    gs = virtual_lab.flux_source
    assert gs is not None
    gs.write(":SOUR:FUNC CURR;:SOUR:LEV 0.8e-3")  # output off, a level left programmed
    fb = connect(virtual_lab)
    try:
        assert history(virtual_lab) == [(0.0, 0.0)]  # connecting wrote nothing
        assert fb.current() == 0.0 and not fb.output()
        with pytest.raises(RuntimeError, match="output"):
            fb.current(1e-4)
        fb.output(True)  # programs 0 A with the output off, then switches on
        assert gs.state.level == 0.0 and gs.state.output
        fb.current(5e-4)
        fb.output(False)  # ramps to 0 A, then switches off
        assert not gs.state.output and gs.state.level == 0.0
        assert_safe_history(history(virtual_lab))
        assert history(virtual_lab)[-1][1] == 0.0
    finally:
        Instrument.close_all()


def test_output_on_selects_a_range_covering_the_limits(virtual_lab: VirtualLab) -> None:
    fb = connect(virtual_lab, current_limits=(-5e-3, 5e-3))
    try:
        fb.output(True)
        assert fb.source.instrument.current_range() == 10e-3
        assert fb.source.level_limit() == pytest.approx(12e-3)
    finally:
        Instrument.close_all()


def test_output_on_selects_the_finest_range_at_zero_first(virtual_lab: VirtualLab) -> None:
    gs = virtual_lab.flux_source
    assert gs is not None
    gs.write(":SOUR:FUNC CURR;:SOUR:RANG 10e-3;:SOUR:LEV 5e-3")  # off; coarse range, 5 mA set
    fb = connect(virtual_lab)  # limits +-1 mA: the 1 mA range (10 nA) is the finest
    try:
        fb.output(True)  # 0 A first (5 mA is beyond the 1 mA range), then the range
        assert gs.state.range == 1e-3 and gs.state.level == 0.0 and gs.state.output
        assert fb.source.resolution() == pytest.approx(10e-9)
        assert history(virtual_lab) == [(0.0, 0.0)]  # nothing flowed
    finally:
        Instrument.close_all()


def test_voltage_source_with_output_on_is_refused(virtual_lab: VirtualLab) -> None:
    gs = virtual_lab.flux_source
    assert gs is not None
    gs.write(":SOUR:LEV 0.5;:OUTP ON")  # sourcing 0.5 V
    with pytest.raises(RuntimeError, match="VOLT mode with its output on"):
        connect(virtual_lab, name="volts")
    assert not Instrument.exist("volts") and not Instrument.exist("volts_source")
    assert gs.state.output and gs.state.function == "VOLT" and gs.state.level == 0.5


def test_calibration_change_does_not_move_the_current(
    virtual_lab: VirtualLab, flux_bias: GS200FluxBias, monkeypatch: pytest.MonkeyPatch
) -> None:
    flux_bias.output(True)
    flux_bias.flux(0.3)
    current, before = flux_bias.current(), history(virtual_lab)
    spy = ScpiSpy(monkeypatch, flux_bias)
    flux_bias.current_per_flux_quantum(1.0e-3)
    flux_bias.offset_current(0.2e-3)
    assert spy.sent == []
    assert history(virtual_lab) == before
    assert flux_bias.current() == current
    assert flux_bias.flux() == pytest.approx((current - 0.2e-3) / 1.0e-3)


# ---------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_holds_the_level_where_it_is(
    virtual_lab: VirtualLab, flux_bias: GS200FluxBias, monkeypatch: pytest.MonkeyPatch
) -> None:
    flux_bias.output(True)
    polls = iter(range(100))

    def interrupt_on_third_poll(seconds: float) -> None:
        if next(polls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(flux_bias.source, "_pause", interrupt_on_third_poll)
    with pytest.raises(KeyboardInterrupt):
        flux_bias.current(9e-4)
    held = flux_bias.current()
    assert 1e-5 < held < 8e-4  # stopped part way
    virtual_lab.clock.advance(60.0)  # long after the ramp would have ended
    assert flux_bias.current() == held and virtual_lab.flux_current() == pytest.approx(held)
    monkeypatch.undo()
    flux_bias.current(-2e-4)  # the next request ramps from the held level
    assert flux_bias.current() == pytest.approx(-2e-4, abs=1e-9)
    assert_safe_history(history(virtual_lab))


def test_ctrl_c_inside_a_query_leaves_no_stale_reply(
    virtual_lab: VirtualLab, flux_bias: GS200FluxBias, monkeypatch: pytest.MonkeyPatch
) -> None:
    flux_bias.output(True)
    gs = flux_bias.source.instrument
    original, polls = gs.ask_raw, []

    def interrupted_poll(cmd: str) -> str:
        if cmd == ":STAT:EVEN?":
            polls.append(cmd)
            if len(polls) == 3:  # 1: clearing read before RUN; 2, 3: end-of-program polls
                gs.visa_handle.write(cmd)  # the query went out, its reply is never read
                raise KeyboardInterrupt
        return original(cmd)

    monkeypatch.setattr(gs, "ask_raw", interrupted_poll)
    with pytest.raises(KeyboardInterrupt):
        flux_bias.current(9e-4)
    monkeypatch.undo()
    assert flux_bias.output()  # a stale "0" event reply would read as output off
    held = flux_bias.current()
    assert 0 < held < 9e-4 and held == pytest.approx(virtual_lab.flux_current())


# ---------------------------------------------------------------------- property


_in_range = st.floats(LIMITS[0], LIMITS[1])
_out_of_range = st.one_of(st.floats(1.05e-3, 5e-3), st.floats(-5e-3, -1.05e-3), st.just(math.nan))
_requests = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["current", "flux"]), st.one_of(_in_range, _out_of_range)),
        st.tuples(st.just("output"), st.booleans()),
        st.tuples(st.just("offset"), st.floats(-2e-4, 2e-4)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=12, deadline=None)
@given(requests=_requests)
def test_random_requests_never_violate_limits_rate_or_step(
    requests: list[tuple[str, Any]],
) -> None:
    lab = VirtualLab("jpc_circulator", seed=2).start()
    try:
        fb = connect(lab, name="hypoflux")
        fb.output(True)
        with pytest.MonkeyPatch.context() as mp:
            spy = ScpiSpy(mp, fb)
            for kind, value in requests:
                _apply(fb, spy, kind, value)
        assert_safe_history(history(lab))
    finally:
        Instrument.close_all()
        lab.stop()


def _apply(fb: GS200FluxBias, spy: ScpiSpy, kind: str, value: Any) -> None:
    if kind == "output":
        fb.output(value)
    elif kind == "offset":
        fb.offset_current(value)
    else:
        valid = LIMITS[0] <= value <= LIMITS[1]
        request = value if kind == "current" else fb.current_to_flux(value)
        sent = len(spy.sent)
        if not valid:
            with pytest.raises(ValueError):
                getattr(fb, kind)(request)
            assert len(spy.sent) == sent
        elif not fb.output():
            with pytest.raises(RuntimeError, match="output"):
                getattr(fb, kind)(request)
        else:
            getattr(fb, kind)(request)
            assert fb.current() == pytest.approx(value, abs=2e-8)
