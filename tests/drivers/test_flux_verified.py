"""Flux ramps from verified levels (issue 12): read back before planning, between segments.

A fake :class:`CurrentSource` that steps in software records every level it
is commanded and keeps a true level apart from what it reads back (a lie,
noise); the virtual lab's GS200 emulator lies through its ``level_offset``
fault hook, and its output history is what the coil saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from qcodes.instrument import Instrument

from labnr.drivers.flux import CurrentSource, FluxBias, LevelMismatch
from labnr.drivers.flux_gs200 import GS200FluxBias
from labnr.drivers.flux_ramp import allowed_first_step, plan_ramp
from labnr.sim.lab import VirtualLab

RES = 10e-9  # A: the GS200's 1 mA range
STEP = 5e-6  # A: max_step
RATE = 5e-5  # A/s: one max_step per 0.1 s
LIMITS = (-1e-3, 1e-3)  # A
LIE = 50e-6  # A: the read-back lie of the issue (10 max_step)


class FakeSource(CurrentSource):
    """A current source that steps in software, whose read-back can lie or be noisy.

    ``commanded`` lists the true level before the first write and every level
    written since, so consecutive differences are the steps the coil saw.
    """

    def __init__(
        self, level: float = 0.0, resolution: float = RES, name: str = "fake_source"
    ) -> None:
        self._instrument = Instrument(name)
        self.true_level = level
        self.on = True
        self.res = resolution
        self.lie = 0.0
        self.noise: Callable[[], float] = lambda: 0.0
        self.reads = 0
        self.writes: list[float] = []
        self.segments: list[tuple[float, ...]] = []
        self.stall_segment: int | None = None  # this segment stops half way
        self._before = level

    @property
    def instrument(self) -> Instrument:
        return self._instrument

    @property
    def history(self) -> list[float]:
        return [self._before, *self.writes]

    def check_connected(self) -> None:
        pass

    def output_enabled(self) -> bool:
        return self.on

    def level(self) -> float:
        self.reads += 1
        return self.true_level + self.lie + self.noise()

    def level_limit(self) -> float:
        return 1.2e-3

    def resolution(self, limit: float | None = None) -> float:
        return self.res

    def enable_output(self, limit: float) -> None:
        self.writes.append(0.0)
        self.true_level, self.on = 0.0, True
        self._note_level(0.0)

    def disable_output(self) -> None:
        self.on = False

    def run_segment(self, levels: Sequence[float], interval: float) -> None:
        self.segments.append(tuple(levels))
        stall = len(self.segments) - 1 == self.stall_segment
        for k, level in enumerate(levels):
            if stall and k >= len(levels) // 2:
                return  # the hardware stopped here (no exception): the level holds
            self.writes.append(level)
            self.true_level = level


def steps_of(levels: Sequence[float]) -> np.ndarray:
    return np.abs(np.diff(np.asarray(levels, dtype=float)))


def assert_steps_within(levels: Sequence[float], step: float = STEP) -> None:
    """No change between consecutive commanded levels exceeds ``step``."""
    assert steps_of(levels).max(initial=0.0) <= step * (1 + 1e-9), steps_of(levels).max()


def flux_bias(source: CurrentSource, name: str = "vflux", **overrides: Any) -> FluxBias:
    kwargs: dict[str, Any] = {
        "current_per_flux_quantum": 1e-3,
        "current_limits": LIMITS,
        "ramp_rate": RATE,
        "max_step": STEP,
        **overrides,
    }
    return FluxBias(name, source, **kwargs)


@pytest.fixture
def fake() -> Iterator[FakeSource]:
    try:
        yield FakeSource()
    finally:
        Instrument.close_all()


# ---------------------------------------------------------------------- fake source


def test_lying_readback_is_refused_and_nothing_is_written(fake: FakeSource) -> None:
    fb = flux_bias(fake)
    fb.current(20e-6)
    assert fake.commanded == pytest.approx((20e-6, 20e-6))
    writes, level = len(fake.writes), fake.true_level
    fake.lie = LIE
    with pytest.raises(LevelMismatch) as info:
        fb.current(0.0)
    message = str(info.value)
    assert "\n" not in message and "fake_source" in message
    assert "7e-05 A" in message and "last set 2e-05 A" in message  # read and set
    assert "max_step=5e-06 A" in message and "labnr flux adopt" in message
    assert "nothing written" in message
    assert len(fake.writes) == writes and fake.true_level == level and fake.on
    assert_steps_within(fake.history)


def test_a_level_moved_behind_labnrs_back_is_adopted_only_by_reconnecting(
    fake: FakeSource,
) -> None:
    fb = flux_bias(fake)
    fb.current(20e-6)
    fake.true_level = 70e-6  # someone turned the knob: the reads are true, the record not
    with pytest.raises(LevelMismatch):
        fb.current(0.0)
    fb.close()
    again = FakeSource(level=70e-6, name="fake_again")  # re-connect: a fresh adapter, no record
    fb = flux_bias(again, name="vflux2")
    fb.current(0.0)
    assert again.true_level == 0.0
    assert_steps_within(again.history)
    assert len(again.writes) >= math.ceil(70e-6 / STEP)


def test_a_declared_level_is_checked_like_one_labnr_set(fake: FakeSource) -> None:
    fake.true_level = 70e-6
    fb = flux_bias(fake)
    fb.expect_current(20e-6)  # e.g. the state file of the previous run
    with pytest.raises(LevelMismatch, match="last set 2e-05 A"):
        fb.current(0.0)
    assert fake.writes == []


def test_a_small_lie_cannot_make_the_first_step_exceed_max_step(fake: FakeSource) -> None:
    fb = flux_bias(fake)
    fb.current(20e-6)
    fake.lie = 0.6 * STEP  # within max_step: the start check passes
    with pytest.raises(LevelMismatch, match="after a ramp segment"):
        fb.current(-100e-6)
    assert len(fake.segments) == 3  # 2 for the first ramp, then its first breakpoint alone
    assert_steps_within(fake.history)  # the true first step, from 20 µA, stays <= max_step
    # planned from the read (23 µA) with the first step shortened by the 3 µA disagreement
    assert abs(fake.segments[-1][0] - (20e-6 + 0.6 * STEP)) <= (1 - 0.6) * STEP + 1e-15


def test_noisy_reads_that_agree_within_the_resolution_ramp(fake: FakeSource) -> None:
    rng = np.random.default_rng(7)
    fake.noise = lambda: float(rng.uniform(-0.45, 0.45) * RES)
    fb = flux_bias(fake)
    fb.current(-83e-6)
    fb.current(41e-6)
    assert fake.true_level == pytest.approx(41e-6, abs=RES)
    assert_steps_within(fake.history)
    assert len(fake.writes) >= math.ceil(83e-6 / STEP) + math.ceil(124e-6 / STEP)


def test_reads_that_never_agree_are_refused(fake: FakeSource) -> None:
    signs = iter([1.0, -1.0] * 10)
    fake.noise = lambda: 2 * RES * next(signs)  # consecutive reads differ by 4 resolutions
    fb = flux_bias(fake)
    reads = fake.reads
    with pytest.raises(LevelMismatch) as info:
        fb.current(20e-6)
    message = str(info.value)
    assert fake.reads - reads == fake.max_level_reads == 5
    assert "\n" not in message and "fake_source" in message
    assert "5 level reads never agreed" in message and "resolution 1e-08 A" in message
    assert "2e-08, -2e-08, 2e-08" in message  # the reads themselves
    assert fake.writes == [] and fake.true_level == 0.0


def test_a_mid_ramp_mismatch_stops_and_holds(fake: FakeSource) -> None:
    fake.max_program_steps = 4  # type: ignore[misc]
    fake.stall_segment = 2
    fb = flux_bias(fake)
    with pytest.raises(LevelMismatch) as info:
        fb.current(100e-6)  # 20 breakpoints: segments of 1, 4, 4, ...
    assert "after a ramp segment" in str(info.value) and "ramp stopped there" in str(info.value)
    assert len(fake.segments) == 3  # nothing run after the mismatch
    held = fake.true_level
    assert held == pytest.approx(fake.segments[2][1])  # half of the third segment
    assert fake.writes[-1] == held and fake.on  # held: no further write, output on
    assert_steps_within(fake.history)
    fake.stall_segment = None
    fb.current(0.0)  # the held level is inside what labnr commanded: the next ramp starts there
    assert fake.true_level == 0.0
    assert_steps_within(fake.history)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [({"max_step": 1.5e-6}, "max_step=1.5e-06 A"), ({"ramp_rate": 1e-10}, "ramp_rate=1e-10")],
)
def test_steps_or_rates_below_the_resolution_are_refused(
    overrides: dict[str, Any], key: str
) -> None:
    class SlowSource(FakeSource):
        max_interval = 3600.0  # longest step time, s

    try:
        source = SlowSource(resolution=1e-6)
        with pytest.raises(ValueError) as info:
            flux_bias(source, name="coarse", **overrides)
        message = str(info.value)
        assert "\n" not in message and message.startswith("coarse: ")
        assert key in message and "resolution of 1e-06 A" in message
        assert source.writes == [] and not Instrument.exist("coarse")
    finally:
        Instrument.close_all()


def test_max_step_cannot_be_lowered_below_the_resolution(fake: FakeSource) -> None:
    fb = flux_bias(fake)
    with pytest.raises(ValueError, match="max_step"):
        fb.max_step(1.5 * RES)
    fb.max_step(2 * RES)  # the finest the source can honour


# ---------------------------------------------------------------------- planner


@given(
    start=st.floats(-1e-3, 1e-3),
    target=st.floats(-1e-3, 1e-3),
    first_fraction=st.floats(0.0, 1.0),
    resolution=st.sampled_from([0.0, 10e-9, 100e-9]),
)
def test_plan_first_breakpoint_is_within_the_first_step(
    start: float, target: float, first_fraction: float, resolution: float
) -> None:
    start = round(start / resolution) * resolution if resolution else start  # a read-back
    first = 2 * resolution + first_fraction * (STEP - 2 * resolution)
    if first <= 0:
        return
    plan = plan_ramp(
        start, target, rate=RATE, max_step=STEP, resolution=resolution,
        min_interval=0.1, time_resolution=0.1, first_step=first,
    )  # fmt: skip
    if plan.levels:
        assert abs(plan.levels[0] - start) <= first * (1 + 1e-12) + 1e-15  # 1 fA: rounding
        assert plan.max_step <= STEP * (1 + 1e-12) + 1e-15 and plan.rate <= RATE * (1 + 1e-9)
        assert abs(plan.levels[-1] - target) <= resolution / 2 + 1e-15


def test_allowed_first_step_is_max_step_less_the_disagreement() -> None:
    assert allowed_first_step(1e-5, None, STEP, RES, where="x") == STEP
    assert allowed_first_step(1e-5, (0.0, 2e-5), STEP, RES, where="x") == STEP  # inside
    assert allowed_first_step(2.3e-5, (2e-5, 2e-5), STEP, RES, where="x") == pytest.approx(2e-6)
    with pytest.raises(LevelMismatch, match="between 0 and 2e-05 A"):
        allowed_first_step(2.6e-5, (0.0, 2e-5), STEP, RES, where="x")


# ---------------------------------------------------------------------- GS200 emulator


class WriteSpy:
    """Records the messages the QCoDeS GS200 writes (queries apart)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fb: GS200FluxBias) -> None:
        self.writes: list[str] = []
        gs = fb.source.instrument
        original = gs.write_raw

        def spy(cmd: str) -> None:
            self.writes.append(cmd)
            original(cmd)

        monkeypatch.setattr(gs, "write_raw", spy)


def gs200(lab: VirtualLab, name: str = "vgs", **overrides: Any) -> GS200FluxBias:
    kwargs: dict[str, Any] = {
        "current_per_flux_quantum": 1e-3,
        "current_limits": LIMITS,
        "ramp_rate": RATE,
        "max_step": STEP,
        "poll_interval": 0.0,
        **overrides,
    }
    return GS200FluxBias(name, lab.addresses["flux"], **kwargs)


def true_steps(lab: VirtualLab) -> np.ndarray:
    assert lab.flux_source is not None
    return steps_of([level for _, level in lab.flux_source.state.history])


@pytest.fixture
def lab_flux(virtual_lab: VirtualLab) -> Iterator[GS200FluxBias]:
    try:
        fb = gs200(virtual_lab)
        fb.output(True)
        fb.current(20e-6)
        yield fb
    finally:
        Instrument.close_all()


def test_gs200_lying_readback_is_refused_with_zero_writes(
    virtual_lab: VirtualLab, lab_flux: GS200FluxBias, monkeypatch: pytest.MonkeyPatch
) -> None:
    gs = virtual_lab.flux_source
    assert gs is not None
    history = list(gs.state.history)
    gs.level_offset = LIE
    spy = WriteSpy(monkeypatch, lab_flux)
    with pytest.raises(LevelMismatch, match=r"vgs_source: the level reads 7e-05 A but labnr"):
        lab_flux.current(0.0)
    assert spy.writes == []
    virtual_lab.clock.advance(10.0)
    assert gs.state.history == history and gs.state.output
    assert gs.state.level == pytest.approx(20e-6)
    assert true_steps(virtual_lab).max() <= STEP * (1 + 1e-9)


def test_gs200_small_lie_stops_after_the_first_breakpoint(
    virtual_lab: VirtualLab, lab_flux: GS200FluxBias, monkeypatch: pytest.MonkeyPatch
) -> None:
    gs = virtual_lab.flux_source
    assert gs is not None
    gs.level_offset = 0.6 * STEP
    spy = WriteSpy(monkeypatch, lab_flux)
    with pytest.raises(LevelMismatch, match="after a ramp segment"):
        lab_flux.current(-200e-6)
    assert sum(cmd == ":PROG:RUN" for cmd in spy.writes) == 1  # one breakpoint, then stopped
    held = gs.state.level
    virtual_lab.clock.advance(10.0)
    assert gs.state.level == held and gs.state.output
    assert true_steps(virtual_lab).max() <= STEP * (1 + 1e-9)  # what the coil saw


def test_gs200_output_is_never_switched_off_at_a_non_zero_reading(
    virtual_lab: VirtualLab, lab_flux: GS200FluxBias
) -> None:
    gs = virtual_lab.flux_source
    assert gs is not None
    lab_flux.current(0.0)
    gs.level_offset = LIE
    with pytest.raises(RuntimeError, match="not 0 A; output left on"):
        lab_flux.source.disable_output()
    with pytest.raises(LevelMismatch):
        lab_flux.output(False)  # its ramp to 0 A is refused first
    assert gs.state.output
    gs.level_offset = 0.0
    lab_flux.output(False)
    assert not gs.state.output and gs.state.level == 0.0


def test_gs200_max_step_below_its_range_resolution_is_refused(virtual_lab: VirtualLab) -> None:
    gs = virtual_lab.flux_source
    assert gs is not None
    history = list(gs.state.history)
    try:
        with pytest.raises(ValueError) as info:
            gs200(virtual_lab, name="coarse", current_limits=(-5e-3, 5e-3), max_step=150e-9)
        message = str(info.value)
        assert "\n" not in message and "coarse_source" in message  # the 10 mA range: 100 nA
        assert "resolution of 1e-07 A" in message and "max_step=1.5e-07 A" in message
        assert not Instrument.exist("coarse") and gs.state.history == history
    finally:
        Instrument.close_all()
