"""S-matrix acquisition against the virtual lab's truth, and the stored dataset's layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lab_sessions import expected_s, noise_sigma, rms

from labnr.measure import acquire_smatrix, measure_smatrix
from labnr.session import LabSession

ELEMENTS = [(o, i) for o in "abc" for i in "abc"]


def test_measure_smatrix_reproduces_the_truth(operating: LabSession) -> None:
    s = operating
    truth = s.virtual_lab.truth()
    ds = measure_smatrix(s, points=401, progress=False)
    data = ds.get_parameter_data()
    centres = json.loads(ds.metadata["labnr_band_centres"])
    offsets = json.loads(ds.metadata["labnr_receiver_offsets"])
    sigma = noise_sigma(s, 1e3, -30.0)
    for o, i in [("a", "a"), ("b", "a"), ("a", "b"), ("c", "b"), ("a", "c")]:
        name = f"S_{o}_{i}"
        delta = data[name]["frequency"]
        measured = data[name][name]
        f_in = centres[i] + delta
        want = expected_s(s, truth, o, i, f_in, f_in + offsets[f"{o},{i}"])
        assert np.max(np.abs(want)) > 50 * sigma, name  # a converted signal, not noise
        # noise, plus line-phase drift over the nine acquisitions' virtual time
        assert rms(measured - want) < 2.5 * sigma, name


def test_smatrix_dataset_layout(operating: LabSession) -> None:
    s = operating
    ds = measure_smatrix(s, points=101, progress=False)
    assert ds.name == "measure_smatrix" and ds.exp_name == "jpc_circulator_sim"
    assert ds.sample_name == "jpc_circulator" and ds.completed_timestamp() is not None
    assert ds.path_to_db == str(s.database)
    specs = ds.paramspecs
    assert set(specs) == {"frequency"} | {f"S_{o}_{i}" for o, i in ELEMENTS}
    f = specs["frequency"]
    assert (f.type, f.unit, f.label, f.depends_on_) == (
        "array",
        "Hz",
        "offset from band centre",
        [],
    )
    sba = specs["S_b_a"]
    assert (sba.type, sba.unit, sba.label, sba.depends_on_) == (
        "array",
        "",
        "S(b←a)",
        ["frequency"],
    )
    data = ds.get_parameter_data()["S_b_a"]
    assert data["S_b_a"].shape == (101,) and data["S_b_a"].dtype == np.complex128  # QCoDeS shapes
    np.testing.assert_allclose(data["frequency"], np.linspace(-75e6, 75e6, 101))
    md = ds.metadata
    assert md["labnr_kind"] == "measure_smatrix" and md["labnr_status"] == "completed"
    assert md["labnr_points"] == 1 and json.loads(md["labnr_knobs"]) == []
    assert md["labnr_version"] == "0.1.0"
    assert json.loads(md["labnr_ports"]) == ["a", "b", "c"]
    assert json.loads(md["labnr_band_centres"]) == {"a": 5.31e9, "b": 6.47e9, "c": 7.905e9}
    offsets = json.loads(md["labnr_receiver_offsets"])
    assert offsets["b,a"] == pytest.approx(1.16e9) and offsets["a,c"] == pytest.approx(-2.595e9)
    assert offsets["a,a"] == 0.0
    assert json.loads(md["labnr_conversion_paths"])["c,b"] == [["bc", 1]]
    assert json.loads(md["labnr_config"]) == s.config.model_dump(mode="json")
    snapshot = json.loads(ds.get_metadata("snapshot"))["station"]["instruments"]
    assert snapshot["pump"]["submodules"]["ab"]["parameters"]["amplitude"]["unit"] == "V"
    assert snapshot["vna"]["parameters"]["if_bandwidth"]["value"] == 1e3


def test_acquire_smatrix_returns_arrays_for_chosen_elements(operating: LabSession) -> None:
    s = operating
    centres = {"a": 5.312e9}
    delta, S, meta = acquire_smatrix(
        s, span=20e6, points=51, centres=centres, paths=[("b", "a"), ("a", "a")]
    )
    assert delta.shape == (51,) and S.shape == (51, 3, 3)
    assert meta.ports == ("a", "b", "c") and meta.band_centres["a"] == 5.312e9
    assert set(meta.receiver_offsets) == {"b,a", "a,a"}
    assert np.isfinite(S[:, 1, 0]).all() and np.isfinite(S[:, 0, 0]).all()
    assert np.isnan(S[:, 0, 1]).all() and np.isnan(S[:, 2, 2]).all()


def test_plans_leaving_the_vna_range_are_refused(operating: LabSession) -> None:
    with pytest.raises(ValueError, match="leaves the range"):
        acquire_smatrix(operating, centres={"a": 5e6}, span=1e6, points=11)


def test_plain_single_sweep_variant(operating: LabSession) -> None:
    delta, S, meta = acquire_smatrix(operating, span=50e6, points=51, frequency_offset=False)
    assert meta.plan.groups == (("a", "b", "c"),) and np.isfinite(S).all()
    assert set(meta.receiver_offsets.values()) == {0.0}


def test_em_circulator_end_to_end(em: LabSession) -> None:
    s = em
    s.pump.set_tones({t: {"amplitude": 0.1} for t in s.pump.tone_names})
    s.pump.output(True)
    ds = measure_smatrix(s, points=101, progress=False)
    md = ds.metadata
    assert json.loads(md["labnr_ports"]) == ["a1", "a2"]
    offsets = json.loads(md["labnr_receiver_offsets"])
    assert offsets["a2,a1"] == pytest.approx(6.065e9 - 5.21e9)  # through a mechanical mode
    data = ds.get_parameter_data()
    t21 = np.abs(data["S_a2_a1"]["S_a2_a1"])
    # the mechanically mediated transmission peaks at the band centre, far above the floor
    assert t21[50] > 20 * max(t21[:5].max(), t21[-5:].max())
    assert np.all(np.abs(data["S_a1_a1"]["S_a1_a1"]) > 0.05)
