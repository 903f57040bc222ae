# ruff: noqa: F811 - the em fixture is imported from test_pump_awg
"""AWG pump: realisable frequencies on the grid, LO tracking, shared-channel amplitude budgets."""

from __future__ import annotations

import pytest
from test_pump_awg import A1, EM, LO1, M1, M2, em, em_config  # noqa: F401 - em is a fixture

from labnr.drivers.pumps import PumpClipError, PumpConfigError, build_pump


@EM
def test_realisable_frequency_is_what_plays(em) -> None:
    lab, awg, lo1, lo2 = em
    pump = build_pump("pump", em_config(lab, awg, lo1, lo2))
    ask = A1 - M1 + 3_333.0  # off the 10 kHz grid
    predicted = pump.realisable_frequency("p11", ask)
    assert predicted != ask and abs(predicted - ask) <= 5e3
    assert pump.tone("p11").frequency() == pytest.approx(A1 - M1)  # nothing was set
    pump.set_tones({"p11": {"frequency": ask}})
    assert pump.tone("p11").frequency() == pytest.approx(predicted, abs=1e-6)
    with pytest.raises(KeyError):
        pump.realisable_frequency("nope", ask)


@EM
def test_track_lo_plays_the_exact_frequency(em) -> None:
    lab, awg, lo1, lo2 = em
    cfg = em_config(lab, awg, lo1, lo2)
    cfg["mixers"]["iq1"]["track_lo"] = True
    del cfg["tones"]["p12"]  # the LO can follow one tone only
    cfg["limits"].pop("p12")
    pump = build_pump("pump", cfg)
    ask = A1 - M1 + 3_333.0
    assert pump.realisable_frequency("p11", ask) == ask
    pump.set_tones({"p11": {"frequency": ask}})
    assert pump.tone("p11").frequency() == pytest.approx(ask, abs=1e-3)
    # the LO took the sub-grid remainder; the IF stayed on the grid
    assert abs(lo1.frequency() - LO1) < 5e3
    pump.output(True)
    rf = [t for t in lab.source_tones() if t.line == "iq1" and abs(t.frequency - ask) < 1.0]
    assert rf, [(t.line, t.frequency) for t in lab.source_tones()]


@EM
def test_track_lo_with_two_tones_is_refused(em) -> None:
    lab, awg, lo1, lo2 = em
    cfg = em_config(lab, awg, lo1, lo2)
    cfg["mixers"]["iq1"]["track_lo"] = True
    with pytest.raises(PumpConfigError, match="track_lo: the LO can follow one tone only"):
        build_pump("pump", cfg)


@EM
def test_amplitude_budgets_predict_clipping(em) -> None:
    lab, awg, lo1, lo2 = em
    pump = build_pump("pump", em_config(lab, awg, lo1, lo2))
    budgets = dict(pump.amplitude_budgets())
    assert set(budgets) == {("p11", "p12"), ("p21", "p22")}
    limit = budgets[("p11", "p12")]
    pump.set_tones({"p11": {"amplitude": 0.49 * limit}, "p12": {"amplitude": 0.49 * limit}})
    with pytest.raises(PumpClipError):
        # just over the conservative budget on the full scale: peaks may clip
        pump.set_tones({"p11": {"amplitude": 0.2}, "p12": {"amplitude": 0.2}})
    assert M2 > M1
