"""Pump and flux sweeps on the virtual JPC circulator: physics, layout, up-front checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lab_sessions import flux_history, loop_flux, noise_sigma, to_sweet_spot
from qcodes.dataset import experiments

from labnr.drivers.pumps import wrap_phase
from labnr.measure import map_pumps, sweep_flux, sweep_pump, sweep_pump_amplitude, sweep_pump_phase
from labnr.session import LabSession


def _runs() -> int:
    return sum(len(e.data_sets()) for e in experiments())


def test_reverse_transmission_follows_the_loop_phase(operating: LabSession) -> None:
    s = operating
    phases = np.linspace(-np.pi, np.pi, 37)
    ds = sweep_pump_phase(s, "bc", phases, points=101, paths=[("a", "b"), ("b", "a")])
    data = ds.get_parameter_data()["S_a_b"]
    assert data["S_a_b"].shape == (37, 101)
    np.testing.assert_allclose(data["pump_bc_phase"][:, 0], phases)
    rev = np.abs(data["S_a_b"][:, 50])  # at the band centre
    fwd = np.abs(ds.get_parameter_data()["S_b_a"]["S_b_a"][:, 50])
    # isolation comes and goes with the loop phase: a deep, narrow minimum
    assert 20 * np.log10(rev.max() / rev.min()) > 20
    assert fwd[np.argmin(rev)] > 5 * rev.min()  # forward stays open where reverse closes
    # physics: the reverse path closes where the synthetic loop flux is pi/2
    s.pump.tone("bc").phase(phases[np.argmin(rev)])
    assert abs(wrap_phase(loop_flux(s) - np.pi / 2)) < 0.35  # grid step 0.17 rad
    s.pump.tone("bc").phase(phases[np.argmin(fwd)])
    assert abs(wrap_phase(loop_flux(s) + np.pi / 2)) < 0.35  # the opposite sense


def test_phase_sweep_dataset_layout(operating: LabSession) -> None:
    ds = sweep_pump_phase(operating, "ab", [0.0, 1.0, 2.0], points=11, progress=False)
    spec = ds.paramspecs["pump_ab_phase"]
    assert (spec.unit, spec.type, spec.depends_on_) == ("rad", "numeric", [])
    assert ds.paramspecs["S_c_a"].depends_on_ == ["pump_ab_phase", "frequency"]
    md = ds.metadata
    assert md["labnr_kind"] == "sweep_pump_phase" and ds.name == "sweep_pump_phase"
    assert json.loads(md["labnr_knobs"]) == ["pump_ab_phase"]
    assert md["labnr_status"] == "completed" and md["labnr_points"] == 3
    assert ds.get_parameter_data()["S_c_a"]["S_c_a"].shape == (3, 11)
    assert operating.pump.tone("ab").phase() == pytest.approx(2.0, abs=1e-3)


def test_amplitude_sweep_opens_the_conversion(operating: LabSession) -> None:
    s = operating
    s.pump.set_tones({"bc": {"amplitude": 0.0}, "ca": {"amplitude": 0.0}})  # a <-> b only
    amps = [0.0, 0.03, 0.1]
    ds = sweep_pump_amplitude(s, "ab", amps, points=21, paths=[("b", "a")])
    data = ds.get_parameter_data()["S_b_a"]
    assert ds.paramspecs["pump_ab_amplitude"].unit == "V"
    t = np.abs(data["S_b_a"][:, 10])
    sigma = noise_sigma(s, 1e3, -30.0)
    assert t[0] < 10 * sigma  # no pump: leakage and noise only
    assert t[0] < t[1] < t[2] and t[2] > 100 * sigma


def test_out_of_limit_amplitudes_are_refused_before_anything_is_set(
    operating: LabSession,
) -> None:
    s = operating
    source = s.virtual_lab.sources["pump_ab"]
    before, runs = source.state.power, _runs()
    with pytest.raises(ValueError, match=r"pump_ab_amplitude\[2\] = 0\.5 V.*limit 0\.3 V") as err:
        sweep_pump_amplitude(s, "ab", [0.1, 0.2, 0.5, 0.1], points=11)
    assert "ab" in str(err.value)
    assert source.state.power == before and _runs() == runs  # nothing set, no dataset
    with pytest.raises(ValueError, match="phase"):
        sweep_pump_phase(s, "ab", [0.0, float("nan")], points=11)
    with pytest.raises(KeyError, match="no tone 'xy'"):
        sweep_pump_phase(s, "xy", [0.0])


def test_map_over_two_knobs_is_a_grid(operating: LabSession) -> None:
    s = operating
    ds = map_pumps(
        s, ("ab", "amplitude"), [0.05, 0.1], ("bc", "phase"), [0.0, 1.0, 2.0],
        points=11, paths=[("b", "a")],
    )  # fmt: skip
    x = ds.to_xarray_dataset()
    assert x["S_b_a"].dims == ("pump_ab_amplitude", "pump_bc_phase", "frequency")
    assert x["S_b_a"].shape == (2, 3, 11)
    assert json.loads(ds.metadata["labnr_knobs"]) == ["pump_ab_amplitude", "pump_bc_phase"]
    assert ds.name == "map_pumps"
    with pytest.raises(ValueError, match="same knob"):
        map_pumps(s, ("ab", "phase"), [0.0], ("ab", "phase"), [1.0])


def test_receivers_follow_a_swept_pump_frequency(operating: LabSession) -> None:
    s = operating
    s.pump.set_tones({"bc": {"amplitude": 0.0}, "ca": {"amplitude": 0.0}})
    f0 = s.pump.tone("ab").frequency()
    freqs = [f0 - 4e6, f0, f0 + 4e6]
    ds = sweep_pump(s, "ab", "frequency", freqs, points=21, span=20e6, paths=[("b", "a")])
    assert ds.paramspecs["pump_ab_frequency"].unit == "Hz"
    t = np.abs(ds.get_parameter_data()["S_b_a"]["S_b_a"])
    # a detuned pump still converts into its own receiver window: no point is just noise
    assert np.all(t.max(axis=1) > 100 * noise_sigma(s, 1e3, -30.0))
    assert json.loads(ds.metadata["labnr_conversion_paths"])["b,a"] == [["ab", 1]]
    assert json.loads(ds.metadata["labnr_receiver_offsets"])["b,a"] == pytest.approx(f0 - 4e6)


def test_flux_spectroscopy_moves_the_tunable_modes(jpc: LabSession) -> None:
    s = jpc
    to_sweet_spot(s)
    ds = sweep_flux(s, [0.0, 0.08], points=151)
    assert set(ds.paramspecs) == {"flux", "frequency", "S_a_a", "S_b_b", "S_c_c"}
    assert ds.paramspecs["flux"].unit == "Phi0" and ds.name == "sweep_flux"
    assert json.loads(ds.metadata["labnr_span"]) == 1.5e9  # 10 x the config's span
    data = ds.get_parameter_data()
    sigma = noise_sigma(s, 1e3, -30.0)
    change = {m: np.abs(np.diff(data[f"S_{m}_{m}"][f"S_{m}_{m}"], axis=0)).max() for m in "abc"}
    assert change["a"] > 100 * sigma and change["b"] > 100 * sigma  # SQUID modes tuned
    assert change["c"] < 10 * sigma  # the fixed mode did not move
    assert s.flux.flux() == pytest.approx(0.08, abs=1e-4)  # left at the last point


def test_flux_sweep_checks_output_and_limits_first(jpc: LabSession) -> None:
    s = jpc
    with pytest.raises(RuntimeError, match="output of 'flux' is off"):
        sweep_flux(s, [0.0])
    s.flux.output(True)
    before = flux_history(s)
    with pytest.raises(ValueError, match=r"flux\[1\] = 5\.0 Phi0"):
        sweep_flux(s, [0.1, 5.0])
    assert flux_history(s) == before  # no ramp started
