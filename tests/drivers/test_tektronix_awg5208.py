"""TektronixAWG5208Direct: pyvisa-sim plumbing and exact upload to the AWG emulator."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from qcodes.instrument import Instrument

from labnr.drivers.tektronix_awg5208 import AWGError, TektronixAWG5208Direct

SIM_FILE = "labnr.drivers.sims:tektronix_awg5208.yaml"


@pytest.fixture
def sim_awg() -> Iterator[TektronixAWG5208Direct]:
    awg = TektronixAWG5208Direct("awg_sim", "GPIB::1::INSTR", pyvisa_sim_file=SIM_FILE)
    try:
        yield awg
    finally:
        Instrument.close_all()


@pytest.fixture
def lab_awg(virtual_lab) -> Iterator[tuple[TektronixAWG5208Direct, object]]:
    awg = TektronixAWG5208Direct(
        "awg", virtual_lab.addresses["awg"], terminator="\n", visalib="@py", device_clear=False
    )
    try:
        yield awg, virtual_lab
    finally:
        Instrument.close_all()


def test_sim_constructor_and_parameters(sim_awg: TektronixAWG5208Direct) -> None:
    assert sim_awg.IDN()["model"] == "AWG5208"
    assert sim_awg.sample_rate() == 2.5e9
    sim_awg.sample_rate(1.2e9)
    assert sim_awg.sample_rate() == 1.2e9
    sim_awg.ch1.awg_amplitude(0.5)
    assert sim_awg.ch1.awg_amplitude() == 0.5


def test_amplitude_validator_follows_the_dchb_path(sim_awg: TektronixAWG5208Direct) -> None:
    # QCoDeS allows 0.25..1.5 Vpp on every AWG5208; the DCHB path spans 0.025..0.75 Vpp.
    assert sim_awg.amplitude_range == (0.025, 0.75)
    sim_awg.ch1.awg_amplitude(0.03)
    with pytest.raises(ValueError, match="0.75"):
        sim_awg.ch1.awg_amplitude(1.0)


def test_sim_upload_command_strings(sim_awg: TektronixAWG5208Direct) -> None:
    samples = np.array([0.0, 0.5, 0.125, 0.0] * 600, np.float32)  # pyvisa-sim safe bytes
    sim_awg.upload_waveform("w", samples)
    assert sim_awg.ask("SIM:LAST:NEW?") == '"w",2400'
    data = sim_awg.ask("SIM:LAST:DATA?")
    assert data.startswith('"w",0,2400,#49600')
    sim_awg.assign_waveform(1, "w")
    assert sim_awg.ch1.assigned_asset() == "w"
    sim_awg.set_outputs([1], True)
    assert sim_awg.ch1.state() == 1
    sim_awg.run()
    assert sim_awg.run_state() == "Running"


@pytest.mark.parametrize(
    ("samples", "match"),
    [
        (np.full(2400, 1.5), "would clip"),
        (np.full(2400, np.nan), "non-finite"),
        (np.zeros(100), "allowed 2400"),
    ],
)
def test_bad_samples_are_refused_before_any_write(
    sim_awg: TektronixAWG5208Direct, monkeypatch: pytest.MonkeyPatch, samples, match
) -> None:
    sent: list[bytes] = []
    monkeypatch.setattr(sim_awg.visa_handle, "write_raw", lambda msg: sent.append(msg))
    with pytest.raises(ValueError, match=match):
        sim_awg.upload_waveform("bad", samples, existing=[])
    assert sent == []


def test_exact_float32_round_trip_through_the_emulator(lab_awg) -> None:
    awg, lab = lab_awg
    rng = np.random.default_rng(7)
    samples = rng.uniform(-1, 1, 100_000).astype(np.float32)  # bytes include '\n' and ';'
    awg.upload_waveform("r", samples)
    np.testing.assert_array_equal(awg.read_waveform("r"), samples)
    np.testing.assert_array_equal(lab.awg.state.waveforms["r"].samples, samples)
    # same length: overwritten in place (stays assigned); new length: replaced
    awg.assign_waveform(3, "r")
    awg.upload_waveform("r", -samples)
    assert awg.channel(3).assigned_asset() == "r"
    awg.upload_waveform("r", samples[:5000])
    assert awg.waveform_length("r") == 5000


def test_instrument_error_text_is_raised(lab_awg) -> None:
    awg, lab = lab_awg
    awg.assign_waveform(2, "no_such_waveform")
    with pytest.raises(AWGError, match="not in the waveform list"):
        awg.check_errors("assigning")
    awg.check_errors()  # queue drained
