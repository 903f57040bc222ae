"""The lock's view of a read: knob specs, the error signal and its physics."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_plant import SyntheticPlant

from labnr.lock import ErrorSignal, KnobSpec, Plant, element_name, network_elements
from labnr.model import circulator3, isolator_reservoir


def test_knob_spec_wraps_periodic_knobs_and_measures_the_short_way() -> None:
    phase = KnobSpec("pump_ab_phase", 3.1, -np.pi, np.pi, 0.2, "rad", periodic=True)
    assert phase.wrap(np.pi + 0.1) == pytest.approx(-np.pi + 0.1)
    assert phase.distance(3.1, -3.1) == pytest.approx(2 * np.pi - 6.2)
    amp = KnobSpec("pump_ab_amplitude", 0.1, 0.0, 0.3, 0.01, "V")
    assert amp.wrap(0.5) == 0.5 and amp.distance(0.1, 0.05) == pytest.approx(-0.05)
    assert amp.within_limits(0.3) and not amp.within_limits(0.31)


@pytest.mark.parametrize(
    "kwargs",
    [dict(minimum=1.0, maximum=0.0), dict(max_step=0.0), dict(value=float("nan"))],
)
def test_knob_spec_rejects_bad_limits(kwargs: dict) -> None:
    base = dict(name="x", value=0.5, minimum=0.0, maximum=1.0, max_step=0.1)
    with pytest.raises(ValueError, match="knob 'x'"):
        KnobSpec(**{**base, **kwargs})


def test_circulator_signal_names_the_reverse_paths_and_their_partners() -> None:
    sig = ErrorSignal.circulator(["a", "b", "c"])
    assert sig.reverse_names == ("S_a_b", "S_b_c", "S_c_a")
    assert sig.forward_names == ("S_b_a", "S_c_b", "S_a_c")
    iso = ErrorSignal.isolator(["a", "b"])
    assert iso.reverse_names == ("S_a_b",) and iso.size == 2
    # the same paths as labnr.config.TargetConfig.paths() hands them over
    fwd = [("b", "a"), ("c", "b"), ("a", "c")]
    assert ErrorSignal.from_paths(fwd, [(i, o) for o, i in fwd]) == sig


def test_error_vanishes_at_the_ideal_circulator_and_grows_with_the_loop_phase() -> None:
    sig = ErrorSignal.circulator("abc")
    s0 = network_elements(circulator3(30e6))
    assert np.linalg.norm(sig.error(s0)) < 1e-12
    assert np.all(sig.isolation_db(s0) > 200)
    # |S_rev| ~ dphi/2 on every path (DESIGN.md's isolation rule)
    dphi = np.radians(2.0)
    s = network_elements(circulator3(30e6, loop_phase=np.pi / 2 + dphi))
    rev = np.abs(sig.complex_error(s))
    np.testing.assert_allclose(rev, dphi / 2, rtol=0.05)
    np.testing.assert_allclose(sig.isolation_db(s), -20 * np.log10(dphi / 2), atol=0.5)


def test_phase_reference_removes_the_gauge_of_the_individual_tones() -> None:
    """Shifting the bc tone and compensating with ab keeps the loop phase: the error stays."""
    sig = ErrorSignal.circulator("abc")
    loop = np.pi / 2 + 0.05
    a = circulator3(30e6, loop_phase=loop)
    b = circulator3(30e6, loop_phase=loop - 0.7).set_coupling("b", "c", phase=0.7)
    ea, eb = sig.error(network_elements(a)), sig.error(network_elements(b))
    np.testing.assert_allclose(ea, eb, atol=1e-12)
    raw = ErrorSignal.circulator("abc", phase_reference=False)
    assert np.linalg.norm(raw.error(network_elements(a)) - raw.error(network_elements(b))) > 1e-3


def test_isolator_error_is_the_reverse_path_of_the_reservoir_isolator() -> None:
    sig = ErrorSignal.isolator(["a", "b"])
    net = isolator_reservoir(kappa=1e6, gamma=1e6, kappa_aux=1e8)
    assert np.linalg.norm(sig.error(network_elements(net))) < 1e-9
    off = net.copy().set_coupling("a", "b", phase=np.pi / 2 + 0.1)
    assert np.linalg.norm(sig.error(network_elements(off))) > 1e-2


def test_missing_elements_are_named() -> None:
    sig = ErrorSignal.circulator("abc")
    with pytest.raises(KeyError, match="S_c_a"):
        sig.error({"S_a_b": 0j, "S_b_c": 0j})


def test_reflections_join_the_error_when_asked() -> None:
    sig = ErrorSignal.isolator(["a", "b"], reflections=("a",))
    s = {"S_a_b": 0.01 + 0j, "S_b_a": 1.0 + 0j, "S_a_a": 0.02j}
    np.testing.assert_allclose(sig.error(s), [0.01, 0.0, 0.0, 0.02])
    assert element_name("a", "a") in sig.elements


def test_synthetic_plant_satisfies_the_protocol_and_starts_at_its_operating_point() -> None:
    plant = SyntheticPlant(np.random.default_rng(0), noise=0.0)
    assert isinstance(plant, Plant)
    r = plant.read()
    assert plant.acquisitions == 1 and r.time == pytest.approx(plant.read_duration)
    assert np.all(ErrorSignal.circulator("abc").isolation_db(r.s) > 60)  # drifted 0.2 s
