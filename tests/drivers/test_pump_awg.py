"""Multi-tone pumps, AWG backend (direct channels and IQ up-conversion), on the EM preset.

The virtual lab demodulates what the AWG emulator was sent and up-converts it
with a mixer of gain 0.5 and the device file's IQ imbalance: the test side
knows both; the driver learns the imbalance only as calibration numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qcodes.instrument import Instrument
from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A

from labnr.drivers.pumps import PumpClipError, build_pump, wrap_phase
from labnr.drivers.tektronix_awg5208 import TektronixAWG5208Direct

EM = pytest.mark.parametrize("virtual_lab", ["em_circulator"], indirect=True)
A1, A2, M1, M2 = 5.2100e9, 6.0650e9, 5.830e6, 6.410e6  # EM preset (truth, test side)
LO1, LO2 = 5.0e9, 6.3e9
MIXER_GAIN = 0.5  # the virtual lab's mixer (LO >= 7 dBm); compensating it is the user's job
CONNECT = {"terminator": "\n", "visalib": "@py", "device_clear": False}


class WriteSpy:
    """Every message written to an instrument (passed on unchanged)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *instruments: Instrument) -> None:
        self.sent: list[bytes] = []
        for inst in instruments:
            original = inst.visa_handle.write_raw

            def spy(message: bytes, _orig=original) -> tuple:
                self.sent.append(bytes(message))
                return _orig(message)

            monkeypatch.setattr(inst.visa_handle, "write_raw", spy)

    def uploads(self) -> list[str]:
        """Waveform names written with WLISt:WAVeform:DATA."""
        data = [m for m in self.sent if m.startswith(b"WLISt:WAVeform:DATA")]
        return [m.split(b'"')[1].decode() for m in data]


@pytest.fixture
def em(virtual_lab) -> Iterator[tuple]:
    awg = TektronixAWG5208Direct("awg", virtual_lab.addresses["awg"], **CONNECT)
    lo1 = RohdeSchwarzSGS100A("lo1", virtual_lab.addresses["lo1"], **CONNECT)
    lo2 = RohdeSchwarzSGS100A("lo2", virtual_lab.addresses["lo2"], **CONNECT)
    try:
        yield virtual_lab, awg, lo1, lo2
    finally:
        Instrument.close_all()


def imbalance(lab, line: str) -> dict[str, float]:
    spec = lab.spec.pump_lines[line]
    return {"gain_imbalance": spec.iq_gain_imbalance, "phase_imbalance": spec.iq_phase_imbalance}


def tone(amplitude: float, phase: float) -> dict[str, float]:
    return {"amplitude": amplitude, "phase": phase}


def em_config(lab, awg, lo1, lo2, calibrated: bool = True) -> dict:
    cal1 = imbalance(lab, "iq1") if calibrated else {}
    cal2 = imbalance(lab, "iq2") if calibrated else {}
    return {
        "backend": "awg",
        "awg": awg,
        "frequency_resolution": 10e3,
        "mixers": {
            "iq1": {"i": 1, "q": 2, "lo": lo1, "lo_frequency": LO1, "lo_power": 13.0, **cal1},
            "iq2": {"i": 3, "q": 4, "lo": lo2, "lo_frequency": LO2, "lo_power": 13.0, **cal2},
        },
        "tones": {
            "p11": {"iq": "iq1", "sideband": "+", "frequency": A1 - M1, **tone(0.10, 0.4)},
            "p12": {"iq": "iq1", "sideband": "+", "frequency": A1 - M2, **tone(0.12, -1.0)},
            "p21": {"iq": "iq2", "sideband": "-", "frequency": A2 - M1, **tone(0.09, 2.0)},
            "p22": {"iq": "iq2", "sideband": "-", "frequency": A2 - M2, **tone(0.11, 0.1)},
        },
        "limits": {"p11": 0.2, "p12": 0.2, "p21": 0.2, "p22": 0.2},
    }


def rf_tones(lab) -> dict[float, object]:
    return {t.frequency: t for t in lab.source_tones()}


@EM
def test_iq_tones_at_the_intended_rf(em) -> None:
    lab, awg, lo1, lo2 = em
    pump = build_pump("pump", em_config(lab, awg, lo1, lo2))
    assert lab.source_tones() == []
    pump.output(True)
    seen = rf_tones(lab)
    assert len(seen) == 4  # no images, no LO leakage: exactly the four pumps
    for tone in pump:
        rf = seen[tone.frequency()]
        assert rf.line == ("iq1" if tone.short_name.startswith("p1") else "iq2")
        assert rf.amplitude == pytest.approx(MIXER_GAIN * tone.amplitude(), rel=1e-6)
        assert wrap_phase(rf.phase - tone.phase()) == pytest.approx(0.0, abs=1e-6)
    assert pump.p11.frequency() == A1 - M1 and pump.p22.frequency() == A2 - M2  # on the grid
    assert [lab.awg.periodicity_error(ch) for ch in (1, 2, 3, 4)] == [0.0] * 4
    assert (pump.sample_rate(), pump.record_length()) == (2.5e9, 250_000)


@EM
def test_both_backends_expose_the_same_parameters(em) -> None:
    lab, awg, lo1, lo2 = em
    on_awg = build_pump("pump_awg", em_config(lab, awg, lo1, lo2))
    on_cw = build_pump(
        "pump_cw",
        {
            "backend": "cw",
            "tones": {"p11": {"source": lo2, "frequency": A1 - M1, "amplitude": 0.1}},
            "limits": {"p11": 0.2},
        },
    )

    def signature(pump) -> set:
        tone = {(n, p.unit) for n, p in pump.p11.parameters.items()}
        return tone | {(n, p.unit) for n, p in pump.parameters.items() if n == "output"}

    assert signature(on_awg) == signature(on_cw)
    assert {n for n, _ in signature(on_cw)} == {"frequency", "amplitude", "phase", "output"}
    assert on_awg.p11.phase.unit == "rad" and on_cw.p11.amplitude.unit == "V"


@EM
def test_quantisation_is_reported(em, caplog) -> None:
    lab, awg, lo1, lo2 = em
    pump = build_pump("pump", em_config(lab, awg, lo1, lo2))
    pump.output(True)
    with caplog.at_level(logging.INFO, logger="labnr.drivers.pump_awg"):
        pump.p21.frequency(A2 - M1 + 3_456.0)
    assert "quantised" in caplog.text
    grid = A2 - M1 + 0.0  # the IF 240.83 MHz is a multiple of 10 kHz; +3.456 kHz rounds back
    assert pump.p21.frequency() == grid
    assert pump.requested_frequencies["p21"] == A2 - M1 + 3_456.0
    assert grid in rf_tones(lab)
    pump.p21.frequency(A2 - M1 + 6_000.0)  # rounds to the next grid point (lower sideband)
    assert pump.p21.frequency() == A2 - M1 + 10e3
    assert A2 - M1 + 10e3 in rf_tones(lab)


@EM
def test_image_sideband_improves_with_the_matched_imbalance_correction(em) -> None:
    lab, awg, lo1, lo2 = em
    pump = build_pump("pump", em_config(lab, awg, lo1, lo2, calibrated=False))
    pump.output(True)
    image_f = LO1 - (A1 - M1 - LO1)

    def image_db() -> float:
        seen = rf_tones(lab)
        image = seen.get(image_f)
        if image is None:
            return -np.inf
        return 20 * np.log10(image.amplitude / seen[A1 - M1].amplitude)

    uncorrected = image_db()
    assert -45 < uncorrected < -25  # 3 % / 20 mrad mixer imbalance
    pump.iq1.gain_imbalance(imbalance(lab, "iq1")["gain_imbalance"])
    pump.iq1.phase_imbalance(imbalance(lab, "iq1")["phase_imbalance"])
    assert image_db() < uncorrected - 60
    wrong = imbalance(lab, "iq1")["phase_imbalance"] + 0.01
    pump.iq1.phase_imbalance(wrong)
    assert uncorrected - 60 < image_db() < uncorrected  # partly corrected


@EM
def test_one_tone_change_touches_only_that_tone(em, monkeypatch) -> None:
    lab, awg, lo1, lo2 = em
    pump = build_pump("pump", em_config(lab, awg, lo1, lo2))
    pump.output(True)
    before = rf_tones(lab)
    spy = WriteSpy(monkeypatch, awg, lo1, lo2)
    delta = 0.6
    pump.p21.phase(pump.p21.phase() + delta)
    assert sorted(spy.uploads()) == ["pump_ch3", "pump_ch4"]  # the I/Q pair of p21 only
    after = rf_tones(lab)
    for f, tone in before.items():
        if f == pump.p21.frequency():
            assert wrap_phase(after[f].phase - tone.phase) == pytest.approx(delta, abs=1e-6)
            assert after[f].amplitude == pytest.approx(tone.amplitude, rel=1e-6)
        else:
            assert after[f].amplitude == pytest.approx(tone.amplitude, rel=1e-6)
            assert wrap_phase(after[f].phase - tone.phase) == pytest.approx(0.0, abs=1e-6)


@EM
def test_direct_channel_tones_are_exact_and_independent(em) -> None:
    lab, awg, _, _ = em
    tones = {
        "t1": {"channel": 5, "frequency": 17e6, "amplitude": 0.1, "phase": 0.3},
        "t2": {"channel": 5, "frequency": 230e6, "amplitude": 0.15, "phase": -2.5},
        "t3": {"channel": 6, "frequency": 99e6, "amplitude": 0.2, "phase": 1.0},
    }
    pump = build_pump(
        "pump", {"backend": "awg", "awg": awg, "tones": tones, "limits": {n: 0.3 for n in tones}}
    )
    pump.output(True)

    def played(ch: int) -> dict[float, object]:
        return {t.frequency_hz: t for t in lab.awg.tones(ch, max_tones=None)}

    before = played(5)
    pump.t2.phase(0.7)
    after = played(5)
    assert set(after) == {17e6, 230e6}  # nothing else: no leakage, no DC
    assert after[17e6].amplitude_v == pytest.approx(before[17e6].amplitude_v, rel=1e-7)
    assert after[17e6].phase_rad == pytest.approx(before[17e6].phase_rad, abs=1e-7)
    assert after[230e6].phase_rad == pytest.approx(0.7, abs=1e-7)
    assert after[230e6].amplitude_v == pytest.approx(0.15, rel=1e-6)
    assert played(6)[99e6].amplitude_v == pytest.approx(0.2, rel=1e-6)


@EM
def test_clipping_is_refused_before_any_scpi(em, monkeypatch) -> None:
    lab, awg, lo1, lo2 = em
    pump = build_pump("pump", em_config(lab, awg, lo1, lo2))
    spy = WriteSpy(monkeypatch, awg, lo1, lo2)
    with pytest.raises(PumpClipError, match="channel 1 would clip") as info:
        pump.set_tones({"p11": {"amplitude": 0.2}, "p12": {"amplitude": 0.2}})  # each within limit
    assert "p12" in str(info.value) and "full scale 0.375" in str(info.value)
    with pytest.raises(PumpClipError):
        pump.iq1.i_offset(0.2)
    assert spy.sent == []
    assert pump.p11.amplitude() == 0.10 and pump.iq1.i_offset() == 0.0


@EM
def test_amplitude_limit_is_refused_before_any_scpi(em, monkeypatch) -> None:
    lab, awg, lo1, lo2 = em
    pump = build_pump("pump", em_config(lab, awg, lo1, lo2))
    spy = WriteSpy(monkeypatch, awg, lo1, lo2)
    with pytest.raises(ValueError) as info:
        pump.p12.amplitude(0.25)
    for part in ("p12", "0.25", "0.2", "limits['p12']", "awg ch1/ch2 via LO 'lo1'"):
        assert part in str(info.value)
    with pytest.raises(ValueError, match="IF"):
        pump.p12.frequency(LO1 - 1e6)  # wrong side of the LO for an upper-sideband tone
    assert spy.sent == []


@EM
def test_lo_leakage_offsets_and_safe_state(em) -> None:
    lab, awg, lo1, lo2 = em
    pump = build_pump("pump", em_config(lab, awg, lo1, lo2))
    pump.output(True)
    pump.iq1.i_offset(0.01)
    pump.iq1.q_offset(-0.004)
    dc = {ch: [t for t in lab.awg.tones(ch) if t.frequency_hz == 0] for ch in (1, 2)}
    assert dc[1][0].amplitude_v == pytest.approx(0.01, rel=1e-6)
    assert dc[2][0].amplitude_v == pytest.approx(0.004, rel=1e-6)
    assert lo1.status() is True
    pump.off()
    assert lab.source_tones() == [] and lo1.status() is False and lo2.status() is False
    assert [awg.channel(ch).state() for ch in (1, 2, 3, 4)] == [0, 0, 0, 0]


@EM
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c["tones"]["p11"].update(sideband="x"), "sideband"),
        (lambda c: c["tones"]["p11"].update(iq="iq9"), "no such mixer"),
        (lambda c: c["tones"]["p11"].update(channel=3), "exactly one of"),
        (lambda c: c["tones"].update(x={"channel": 1, "frequency": 1e6}), "channel 1 is used"),
        (lambda c: c["tones"]["p12"].update(frequency=A1 - M1 + 1e3), "same grid frequency"),
        (lambda c: c["tones"]["p11"].update(frequency=LO1 + 2e9), "IF"),
        (lambda c: c.update(frequency_resolution=1e-3), "longer than the maximum"),
        (lambda c: c.update(amplitude_vpp=1.0), "amplitude_vpp"),
        (lambda c: c["mixers"]["iq1"].update(gain_imbalance=0.9), "gain_imbalance"),
        (lambda c: c["tones"]["p11"].update(amplitude=0.3), "exceeds the limit"),
    ],
)
def test_config_errors_before_any_write(em, monkeypatch, edit, match) -> None:
    lab, awg, lo1, lo2 = em
    spy = WriteSpy(monkeypatch, awg, lo1, lo2)
    config = em_config(lab, awg, lo1, lo2)
    edit(config)
    config["limits"] = {name: 0.2 for name in config["tones"]}
    with pytest.raises(ValueError, match=match):
        build_pump("pump", config)
    assert spy.sent == []
    assert "pump" not in Instrument._all_instruments


# ---------------------------------------------------------------------- random tone sets


def _draw_pump_config(draw, awg, lo1, calibration: dict) -> tuple[dict, float]:
    resolution = draw(st.sampled_from([1e6, 0.5e6, 250e3, 3e6]))
    top = (int(2.5e9 // resolution) - 1) // 2  # largest grid index below Nyquist
    n = draw(st.integers(1, 6))
    indices = draw(st.lists(st.integers(1, top), min_size=n, max_size=n, unique=True))
    tones, shares = {}, {}
    for j, k in enumerate(indices):
        offset = draw(st.floats(-0.49, 0.49)) * resolution  # exercises the quantisation
        kind = draw(st.sampled_from(["ch5", "ch6", "+", "-"]))
        spec = {"phase": draw(st.floats(-np.pi, np.pi)), "amplitude": 0.0}
        if kind.startswith("ch"):
            spec.update(channel=int(kind[2]), frequency=k * resolution + offset)
        else:
            sign = 1 if kind == "+" else -1
            spec.update(iq="iq1", sideband=kind, frequency=LO1 + sign * (k * resolution + offset))
        tones[f"t{j}"] = spec
        shares[f"t{j}"] = (kind if kind.startswith("ch") else "iq", draw(st.floats(0.05, 1.0)))
    for group in {g for g, _ in shares.values()}:  # fill each output to <= 90 % of full scale
        members = [name for name, (g, _) in shares.items() if g == group]
        total = sum(shares[name][1] for name in members)
        for name in members:
            tones[name]["amplitude"] = 0.9 * 0.375 * 0.95 * shares[name][1] / total
    config = {
        "backend": "awg",
        "awg": awg,
        "frequency_resolution": resolution,
        "mixers": {
            "iq1": {"i": 1, "q": 2, "lo": lo1, "lo_frequency": LO1, "lo_power": 13.0, **calibration}
        },
        "tones": tones,
        "limits": {name: 0.375 for name in tones},
    }
    return config, resolution


@EM
@settings(
    max_examples=40,
    deadline=None,
    # each example builds and closes its own pump; the lab and drivers are stateless for it
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_tone_sets_play_periodic_and_exact(em, data) -> None:
    """Every record the API can make closes on itself and plays exactly what was asked."""
    lab, awg, lo1, _ = em
    config, resolution = _draw_pump_config(data.draw, awg, lo1, imbalance(lab, "iq1"))
    pump = build_pump("pump", config)
    try:
        pump.output(True)
        for ch in (1, 2, 5, 6):
            assert lab.awg.periodicity_error(ch) == 0.0
        rf = {t.frequency: t for t in lab.source_tones() if t.line == "iq1"}
        for tone in pump:
            spec = config["tones"][tone.short_name]
            f, a, p = tone.frequency(), tone.amplitude(), tone.phase()
            assert abs(f - spec["frequency"]) <= resolution / 2 + 1e-6
            if "channel" in spec:
                played = {t.frequency_hz: t for t in lab.awg.tones(spec["channel"], max_tones=None)}
                got_a, got_p = played[f].amplitude_v, played[f].phase_rad
            else:
                got_a, got_p = rf[f].amplitude / MIXER_GAIN, rf[f].phase
            assert got_a == pytest.approx(a, rel=1e-6)
            assert wrap_phase(got_p - p) == pytest.approx(0.0, abs=1e-6)
            assert a == pytest.approx(spec["amplitude"]) and wrap_phase(p - spec["phase"]) == 0
        # no images: nothing above the float32 sample floor (~1e-7 of full scale)
        floor = 1e-6 * max((t.amplitude for t in rf.values()), default=0.0)
        lines = [t for t in rf.values() if t.amplitude > floor]
        assert len(lines) == sum("iq" in s for s in config["tones"].values())
    finally:
        pump.close()
