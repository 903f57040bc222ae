"""Record planning and synthesis: periodic by construction, exact tones, correct IQ."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labnr.drivers.pump_synthesis import (
    RecordPlan,
    iq_components,
    plan_record,
    synthesise,
    wrap_phase,
)
from labnr.sim.instruments.awg5208_state import demodulate, periodicity_error


def test_plan_for_a_1_mhz_grid_uses_the_full_rate() -> None:
    plan = plan_record(1e6, 2.5e9, min_length=2400)
    assert (plan.sample_rate, plan.length, plan.periods) == (2.5e9, 2500, 1)
    assert plan.max_index == 1249  # 1.249 GHz, strictly below Nyquist


def test_plan_keeps_the_requested_grid_exactly() -> None:
    plan = plan_record(0.3e6, 2.5e9)
    assert plan.grid == 0.3e6
    assert plan.sample_rate == plan.samples_per_period * 0.3e6 <= 2.5e9


def test_plan_repeats_periods_to_reach_the_minimum_length() -> None:
    plan = plan_record(100e6, 2.5e9, min_length=2400)  # 25 samples per grid period
    assert plan.samples_per_period == 25 and plan.periods == 96 and plan.length == 2400


def test_plan_respects_granularity() -> None:
    plan = plan_record(1e6, 2.5e9, min_length=1, granularity=64)
    assert plan.length % 64 == 0 and plan.length % plan.samples_per_period == 0


@pytest.mark.parametrize(
    ("resolution", "match"),
    [(-1.0, "positive"), (1e9, "too coarse"), (1e-3, "longer than the maximum")],
)
def test_impossible_plans_say_why(resolution: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plan_record(resolution, 2.5e9)


def _rf(a_i: tuple[float, float], a_q: tuple[float, float], eps: float, psi: float):
    """RF phasors (c+, c-) of a mixer Re[(I + i w Q) e^{i w_LO t}] (the mixer model)."""
    pi = 0.5 * a_i[0] * np.exp(1j * a_i[1])
    pq = 0.5 * a_q[0] * np.exp(1j * a_q[1])
    w = (1 + eps) * np.exp(1j * psi)
    return pi + 1j * w * pq, np.conj(pi) + 1j * w * np.conj(pq)


@given(
    amplitude=st.floats(0.01, 1.0),
    phase=st.floats(-np.pi, np.pi),
    sideband=st.sampled_from([1, -1]),
    eps=st.floats(-0.2, 0.2),
    psi=st.floats(-0.3, 0.3),
)
def test_iq_components_null_the_image_for_the_modelled_mixer(
    amplitude: float, phase: float, sideband: int, eps: float, psi: float
) -> None:
    i_part, q_part = iq_components(amplitude, phase, sideband, eps, psi)
    c_plus, c_minus = _rf(i_part, q_part, eps, psi)
    wanted, image = (c_plus, c_minus) if sideband == 1 else (c_minus, c_plus)
    assert abs(wanted) == pytest.approx(amplitude, rel=1e-12)
    assert wrap_phase(np.angle(wanted) - phase) == pytest.approx(0.0, abs=1e-12)
    assert abs(image) < 1e-12 * amplitude


def test_ideal_upper_sideband_is_cos_and_sin() -> None:
    (a_i, p_i), (a_q, p_q) = iq_components(0.2, 0.0, +1)
    assert (a_i, p_i, a_q) == (0.2, 0.0, 0.2) and p_q == pytest.approx(-np.pi / 2)


tone_sets = st.lists(
    st.tuples(st.integers(1, 1249), st.floats(0.0, 1.0), st.floats(-np.pi, np.pi)),
    min_size=1,
    max_size=6,
    unique_by=lambda t: t[0],
)


@settings(max_examples=200, deadline=None)
@given(tones=tone_sets, offset=st.floats(-0.05, 0.05))
def test_synthesised_records_are_periodic_and_exact(tones, offset: float) -> None:
    plan = RecordPlan(2.5e9, 2500, 1e6, 1)
    full_scale = 0.375
    weights = np.array([a for _, a, _ in tones]) + 1e-3
    amps = weights / weights.sum() * (full_scale - abs(offset)) * 0.999
    comps = [(k, float(a), p) for (k, _, p), a in zip(tones, amps, strict=True)]
    x = synthesise(plan, comps, full_scale, offset)
    assert x.dtype == np.float32 and np.max(np.abs(x)) <= 1.0
    assert periodicity_error(x, 2 * full_scale) == 0.0
    found = {round(t.frequency_hz): t for t in demodulate(x, 2.5e9, 0.75, max_tones=None)}
    for k, a, p in comps:
        tone = found[round(k * 1e6)]
        assert tone.amplitude_v == pytest.approx(a, rel=1e-6, abs=1e-7)
        if a > 1e-3:
            assert wrap_phase(tone.phase_rad - p) == pytest.approx(0.0, abs=1e-5)


def test_clipping_is_refused() -> None:
    plan = RecordPlan(2.5e9, 2500, 1e6, 1)
    with pytest.raises(ValueError, match="exceed the full scale"):
        synthesise(plan, [(1, 0.2, 0.0), (3, 0.2, 0.0)], 0.375)


def test_emulator_periodicity_error_has_no_false_alarm_for_in_phase_tones() -> None:
    """Regression: tones all at phase 0 peak together at the first sample.

    The emulator's boundary-curvature test used to report ~9 mV for such
    perfectly periodic records (the seam then holds the record's largest
    curvature); a record that does not close still reports its jump.
    """
    plan = RecordPlan(2.5e9, 2400, 2.5e9 / 2400, 1)
    x = synthesise(plan, [(304, 0.12, np.pi), (971, 0.12, np.pi), (573, 0.12, np.pi)], 0.375)
    assert periodicity_error(x, 0.75) == 0.0
    n = np.arange(2400)
    leaky = (0.8 * np.cos(2 * np.pi * 20.5 * n / 2400)).astype(np.float32)
    assert periodicity_error(leaky, 0.5) > 0.3
