"""Multi-tone pumps, CW backend, against the virtual lab's JPC circulator (three SGS100A).

Also the backend-independent contract: limits refuse before any SCPI, config
errors name their key, ``off()`` is a safe state.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import pyvisa
from qcodes.instrument import Instrument
from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A

from labnr.drivers.pumps import (
    MultiTonePump,
    build_pump,
    dbm_to_volts,
    volts_to_dbm,
    wrap_phase,
)

FA, FB, FC = 5.310e9, 6.470e9, 7.905e9  # preset sweet-spot frequencies (truth, test side)
SOURCES = {"ab": "pump_ab", "bc": "pump_bc", "ca": "pump_ca"}
PAIRS = {"ab": ("a", "b"), "bc": ("b", "c"), "ca": ("a", "c")}  # (lower, upper) mode
TONES = {
    "ab": (FB - FA, 0.10, 0.3),
    "bc": (FC - FB, 0.08, -2.0),
    "ca": (FC - FA, 0.12, 1.1),
}
#: Raw loopback socket: no VISA device clear (pyvisa-py would wait for a timeout).
CONNECT = {"terminator": "\n", "visalib": "@py", "device_clear": False}
DEG = np.deg2rad(0.01)  # QCoDeS's SGS100A driver writes the phase with 0.01 deg resolution


class WriteSpy:
    """Records every message written to the spied instruments (and passes it on)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *instruments: Instrument) -> None:
        self.sent: list[tuple[str, bytes]] = []
        for inst in instruments:
            handle = inst.visa_handle
            original = handle.write_raw

            def spy(message: bytes, _name: str = inst.name, _orig=original) -> tuple:
                self.sent.append((_name, bytes(message)))
                return _orig(message)

            monkeypatch.setattr(handle, "write_raw", spy)

    def clear(self) -> None:
        self.sent.clear()


def set_flux_sweet_spot(lab) -> None:
    """0.137 mA on the GS200 (the coil's offset: flux 0), through raw pyvisa."""
    rm = pyvisa.ResourceManager("@py")
    flux = rm.open_resource(lab.addresses["flux"], read_termination="\n", write_termination="\n")
    flux.write(":SOUR:FUNC CURR;:SOUR:RANG 10e-3;:SOUR:LEV 0.137e-3;:OUTP ON")
    assert flux.query("SYST:ERR?").startswith("0,")
    flux.close()  # not rm.close(): the resource manager is shared with the QCoDeS drivers


def cw_config(sources: dict, **extra) -> dict:
    tones = {
        name: {"source": sources[name], "frequency": f, "amplitude": a, "phase": p}
        for name, (f, a, p) in TONES.items()
    }
    return {"backend": "cw", "tones": tones, "limits": {n: 0.3 for n in TONES}, **extra}


@pytest.fixture
def sources(virtual_lab) -> Iterator[dict[str, RohdeSchwarzSGS100A]]:
    srcs = {
        tone: RohdeSchwarzSGS100A(name, virtual_lab.addresses[name], **CONNECT)
        for tone, name in SOURCES.items()
    }
    try:
        yield srcs
    finally:
        Instrument.close_all()


@pytest.fixture
def pump(sources) -> MultiTonePump:
    return build_pump("pump", cw_config(sources, reference={"master": None}))


def lab_tones(lab) -> dict[str, object]:
    return {t.line: t for t in lab.source_tones()}


def test_volts_dbm_round_trip() -> None:
    assert volts_to_dbm(0.1) == pytest.approx(-10.0)
    assert dbm_to_volts(volts_to_dbm(0.237)) == pytest.approx(0.237, rel=1e-12)


def test_three_tones_reach_the_sources_exactly(virtual_lab, pump: MultiTonePump) -> None:
    assert lab_tones(virtual_lab) == {}  # constructed with the outputs off
    pump.output(True)
    seen = lab_tones(virtual_lab)
    assert set(seen) == set(TONES)
    for name, (f, a, p) in TONES.items():
        tone = seen[name]
        freq, amp, phase = pump.tone(name).frequency(), pump.tone(name).amplitude(), None
        phase = pump.tone(name).phase()
        # the device sees exactly what the pump reads back ...
        assert (tone.frequency, tone.amplitude) == (freq, pytest.approx(amp, rel=1e-12))
        assert wrap_phase(tone.phase - phase) == pytest.approx(0.0, abs=1e-12)
        # ... which is the request within the source's resolution (0.01 dB, 0.01 deg)
        assert freq == f and amp == pytest.approx(a, rel=1.2e-3)
        assert abs(wrap_phase(phase - p)) <= DEG / 2 + 1e-12


def test_phase_step_rotates_only_its_coupling(virtual_lab, pump: MultiTonePump) -> None:
    set_flux_sweet_spot(virtual_lab)
    pump.output(True)
    before_tones = lab_tones(virtual_lab)
    net = virtual_lab.truth().configuration.network
    before = {n: net.coupling(*PAIRS[n]).phase for n in TONES}
    delta = 0.7
    pump.bc.phase(TONES["bc"][2] + delta)
    after_tones = lab_tones(virtual_lab)
    net = virtual_lab.truth().configuration.network
    after = {n: net.coupling(*PAIRS[n]).phase for n in TONES}
    assert after_tones["ab"] == before_tones["ab"] and after_tones["ca"] == before_tones["ca"]
    assert after_tones["bc"].frequency == before_tones["bc"].frequency
    # line phases drift ~1e-3 rad over the virtual time of a few commands
    for name in TONES:
        moved = wrap_phase(after[name] - before[name])
        expected = delta if name == "bc" else 0.0
        assert moved == pytest.approx(expected, abs=2e-3), name
    # the coupling's magnitude follows the amplitude
    g0 = net.coupling("a", "b").g
    pump.ab.amplitude(0.05)
    g1 = virtual_lab.truth().configuration.network.coupling("a", "b").g
    assert g1 / g0 == pytest.approx(0.05 / TONES["ab"][1], rel=2e-3)


def test_amplitude_zero_switches_that_source_off(virtual_lab, pump, sources) -> None:
    pump.output(True)
    pump.ca.amplitude(0.0)
    assert set(lab_tones(virtual_lab)) == {"ab", "bc"} and sources["ca"].status() is False
    assert pump.ca.amplitude() == 0.0
    pump.ca.amplitude(0.05)
    assert lab_tones(virtual_lab)["ca"].amplitude == pytest.approx(0.05, rel=1.2e-3)


def test_sources_share_a_reference(sources) -> None:
    build_pump("pump", cw_config(sources, reference={"master": "ab", "frequency": "10MHz"}))
    assert sources["ab"].ref_osc_source() == "INT" and sources["ab"].ref_LO_out() == "REF"
    assert [sources[n].ref_osc_source() for n in ("bc", "ca")] == ["EXT", "EXT"]


def test_off_is_a_safe_state(virtual_lab, pump, sources) -> None:
    pump.output(True)
    pump.off()
    assert lab_tones(virtual_lab) == {} and pump.output() is False
    assert all(s.status() is False for s in sources.values())


def test_batch_update_and_snapshot(virtual_lab, pump) -> None:
    pump.output(True)
    pump.set_tones({"ab": {"phase": 0.5}, "ca": {"amplitude": 0.2, "phase": -0.5}})
    seen = lab_tones(virtual_lab)
    assert abs(wrap_phase(seen["ab"].phase - 0.5)) <= DEG
    assert seen["ca"].amplitude == pytest.approx(0.2, rel=1.2e-3)
    assert pump.ca.amplitude.cache() == seen["ca"].amplitude  # cache holds the read-back
    snap = pump.snapshot(update=True)
    assert snap["submodules"]["ab"]["parameters"]["phase"]["unit"] == "rad"
    assert pump.ab.phase.full_name == "pump_ab_phase"


# ---------------------------------------------------------------------- limits and config


def test_limit_refuses_before_any_scpi(monkeypatch, pump, sources) -> None:
    spy = WriteSpy(monkeypatch, *sources.values())
    with pytest.raises(ValueError) as info:
        pump.bc.amplitude(0.31)
    message = str(info.value)
    for part in ("bc", "0.31", "0.3", "limits['bc']", "pump_bc"):
        assert part in message
    with pytest.raises(ValueError, match="exceeds the limit"):
        pump.set_tones({"ab": {"phase": 1.0}, "ca": {"amplitude": 1.0}})  # one bad value
    with pytest.raises(ValueError):
        pump.ab.amplitude(-0.1)
    assert spy.sent == []
    assert pump.bc.amplitude() == pytest.approx(TONES["bc"][1], rel=1.2e-3)


def test_source_power_range_is_checked_before_scpi(monkeypatch, sources) -> None:
    pump = build_pump("pump", {**cw_config(sources), "limits": {n: 100.0 for n in TONES}})
    assert pump.ab.amplitude.vals.limit == pytest.approx(dbm_to_volts(25.0))  # source maximum
    spy = WriteSpy(monkeypatch, *sources.values())
    with pytest.raises(ValueError, match="pump_ab maximum"):
        pump.ab.amplitude(6.0)
    with pytest.raises(ValueError):
        pump.ab.amplitude(1e-9)  # below -120 dBm
    assert spy.sent == []


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c["limits"].pop("ca"), "no amplitude limit for tone"),
        (lambda c: c["limits"].update(ab=-1), "limits.ab"),
        (lambda c: c["tones"]["ab"].update(amplitude=0.5), "exceeds the limit"),
        (lambda c: c["tones"]["ab"].pop("frequency"), "tones.ab.frequency: required"),
        (lambda c: c["tones"]["ab"].update(colour="red"), "unknown key"),
        (lambda c: c["tones"]["bc"].update(source=c["tones"]["ab"]["source"]), "share one"),
        (lambda c: c.update(reference={"master": "xx"}), "reference.master"),
        (lambda c: c.update(backend="laser"), "backend 'laser'"),
    ],
)
def test_config_errors_before_any_scpi(monkeypatch, sources, edit, match) -> None:
    spy = WriteSpy(monkeypatch, *sources.values())
    config = cw_config(sources)
    edit(config)
    with pytest.raises(ValueError, match=match):
        build_pump("pump", config)
    assert spy.sent == []
    assert "pump" not in Instrument._all_instruments  # nothing half-built stays registered


def test_instrument_refusal_raises_with_its_own_text(virtual_lab, pump) -> None:
    # QCoDeS's SGS100A driver allows 20 GHz; this SGS100A (12.75 GHz option) refuses it
    with pytest.raises(RuntimeError, match=r"pump_ab reported .*-222"):
        pump.ab.frequency(15e9)
    assert pump.ab.frequency() == TONES["ab"][0]  # the source kept its frequency
