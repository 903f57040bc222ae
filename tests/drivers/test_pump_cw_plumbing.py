"""CW pump backend plumbing against QCoDeS's own pyvisa-sim SGS100A (static replies)."""

import numpy as np
import pytest
from qcodes.instrument import Instrument
from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A

from labnr.drivers.pumps import build_pump, dbm_to_volts

SIM = "labnr.drivers.sims:rohde_sgs100a.yaml"


@pytest.fixture
def sources():
    srcs = [
        RohdeSchwarzSGS100A(f"sgs_sim{k}", f"GPIB::{k}::INSTR", pyvisa_sim_file=SIM) for k in (1, 2)
    ]
    yield srcs
    Instrument.close_all()


def test_tone_parameters_map_to_source_units(sources) -> None:
    s1, s2 = sources
    pump = build_pump(
        "pump_sim",
        {
            "backend": "cw",
            "tones": {
                "ab": {"source": s1, "frequency": 1.16e9, "amplitude": 0.1, "phase": 0.5},
                "bc": {"source": s2, "frequency": 1.435e9},
            },
            "limits": {"ab": 0.3, "bc": 0.3},
        },
    )
    assert s1.frequency() == pytest.approx(1.16e9)
    assert s1.phase() == pytest.approx(np.degrees(0.5), abs=0.01)  # the source speaks degrees
    assert dbm_to_volts(s1.power()) == pytest.approx(0.1, rel=2e-3)  # 0.01 dB resolution
    pump.ab.phase(-1.0)
    wrapped = (s1.phase() - np.degrees(-1.0) + 180) % 360 - 180
    assert wrapped == pytest.approx(0.0, abs=0.01)
    assert s2.phase() == pytest.approx(0.0)  # the other tone is untouched
    with pytest.raises(ValueError, match="limit"):
        pump.bc.amplitude(0.5)
