"""Pump frequencies on an instrument's grid with loops closed; shared-channel amplitude budgets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_operating_point import model_of

from labnr.calibrate.operating_point import realise, solve_operating_point
from labnr.model.frames import assign_frames

NAMES = {"a1m1": "iq1", "a2m1": "iq2", "a1m2": "iq1", "a2m2": "iq2"}
LO = {"a1m1": 5.2e9, "a1m2": 5.2e9, "a2m1": 6.055e9, "a2m2": 6.055e9}


def grid(step: float, lo: dict[str, float]):
    def realisable(tone: str, f: float) -> float:
        return lo[tone] + step * round((f - lo[tone]) / step)

    return realisable


def mismatches(model, settings) -> list[float]:
    links, f = model.pump_links(settings)
    return assign_frames(f, links, roots=list(model.ports))[1]


@pytest.fixture(scope="module")
def solved():
    model = model_of("em_circulator", NAMES)
    return model, solve_operating_point(model, [("a2", "a1")], [("a1", "a2")])


def test_realise_puts_tones_on_the_grid_and_closes_the_loop(solved) -> None:
    model, op = solved
    assert max(abs(m) for m in mismatches(model, op.settings)) < 1e-3
    on_grid = realise(model, op.settings, grid(10.0, LO))
    for t, f in on_grid.frequency.items():
        assert abs((f - LO[t]) / 10.0 - round((f - LO[t]) / 10.0)) < 1e-6  # on the grid
        assert abs(f - op.settings.frequency[t]) <= 10.0
    assert max(abs(m) for m in mismatches(model, on_grid)) < 1e-3
    # re-solving amplitudes and phases at the fixed, realisable frequencies
    again = solve_operating_point(model, [("a2", "a1")], [("a1", "a2")], start=on_grid,
                                  retune_pumps=False)  # fmt: skip
    assert again.settings.frequency == on_grid.frequency
    assert again.isolation_db > 40


def test_realise_refuses_a_grid_that_cannot_close_the_loop(solved) -> None:
    model, op = solved
    lo = dict(LO, a2m2=6.055e9 + 3.0)  # p22's grid is offset by 3 Hz from the others'
    with pytest.raises(ValueError, match="closing its loop needs .* track_lo"):
        realise(model, op.settings, grid(10.0, lo))


def test_solver_respects_shared_channel_budgets(solved) -> None:
    model, free = solved
    a = free.settings.amplitude
    limit = 0.9 * (a["a1m1"] + a["a1m2"])  # the unconstrained solution does not fit
    tight = dataclasses.replace(model, budgets=((("a1m1", "a1m2"), limit),))
    op = solve_operating_point(tight, [("a2", "a1")], [("a1", "a2")])
    assert op.settings.amplitude["a1m1"] + op.settings.amplitude["a1m2"] <= limit
    assert op.isolation_db > 40  # isolation survives; the forward loss pays
    assert np.isfinite(op.insertion_loss_db)


def test_cw_sources_rounding_to_centihertz_close_the_jpc_loop() -> None:
    """Three tones each rounded to 0.01 Hz can miss closing the loop by 0.01 Hz (3.6 deg/s)."""
    model = model_of("jpc_circulator", {"ab": "ab", "bc": "bc", "ca": "ca"})
    fwd = [("b", "a"), ("c", "b"), ("a", "c")]
    op = solve_operating_point(model, fwd, [(i, o) for o, i in fwd])

    def centi(tone: str, f: float) -> float:
        return round(f / 0.01) * 0.01

    st = realise(model, op.settings, centi)
    assert max(abs(m) for m in mismatches(model, st)) < 1e-4
    for t, f in st.frequency.items():
        assert abs(f - centi(t, f)) < 1e-6
        assert abs(f - op.settings.frequency[t]) < 0.02
