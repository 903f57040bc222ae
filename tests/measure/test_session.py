"""labnr.session.open_lab: the config's instruments on the embedded virtual lab, closed safely."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lab_sessions import EM, JPC, flux_history, to_sweet_spot
from qcodes.instrument import Instrument

from labnr.config import ConfigError, load_config
from labnr.drivers.flux_gs200 import GS200FluxBias
from labnr.drivers.keysight_pna import KeysightN5242B
from labnr.drivers.pumps import MultiTonePump
from labnr.session import LabSession, open_lab, pump_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_jpc_session_has_the_configs_instruments(jpc: LabSession, tmp_path: Path) -> None:
    s = jpc
    assert isinstance(s.vna, KeysightN5242B) and isinstance(s.flux, GS200FluxBias)
    assert isinstance(s.pump, MultiTonePump) and s.pump.tone_names == ["ab", "bc", "ca"]
    assert {"vna", "flux", "pump", "pump_ab", "pump_bc", "pump_ca"} <= set(s.station.components)
    assert "awg" not in s.station.components  # served, but the CW pumps do not use it
    # tones at the conversion resonances of the config's mode frequencies, outputs off
    assert s.pump.tone("ab").frequency() == pytest.approx(6.47e9 - 5.31e9)
    assert s.pump.tone("ca").frequency() == pytest.approx(7.905e9 - 5.31e9)
    assert not s.pump.output() and s.virtual_lab.source_tones() == []
    # VNA defaults from the config
    assert s.vna.if_bandwidth() == 1e3 and s.vna.port3.power() == -30.0
    assert s.vna.points() == 401 and not s.vna.averaging()
    # flux: narrower limits of station file (+-1 mA) and config (+-2 mA); config's calibration
    assert s.flux.current_limits == (-1e-3, 1e-3)
    assert s.flux.ramp_rate() == 1e-4 and s.flux.max_step() == 5e-6
    assert s.flux.current_per_flux_quantum() == 1e-3
    # storage overridden into tmp_path, the config otherwise unchanged
    assert s.database == tmp_path / "labnr.db" and s.data_dir == tmp_path / "data"
    assert s.config.modes == load_config(JPC).modes


def test_close_switches_pumps_off_and_holds_the_flux(jpc: LabSession) -> None:
    s, lab = jpc, jpc.virtual_lab
    to_sweet_spot(s)
    s.pump.set_tones({"ab": {"amplitude": 0.1}})
    s.pump.output(True)
    assert len(lab.source_tones()) == 1
    before = flux_history(s)
    s.close()
    assert lab.source_tones() == []  # pump outputs off
    assert flux_history(s) == before and lab.flux_current() == pytest.approx(0.137e-3)
    assert not any(Instrument.exist(n) for n in ("vna", "pump", "flux", "pump_ab"))
    assert lab.servers == {} and s.closed
    s.close()  # idempotent


def test_em_session_builds_the_awg_pump_with_its_mixers(em: LabSession) -> None:
    s = em
    assert s.flux is None and s.pump.backend == "awg"
    assert {"vna", "awg", "lo1", "lo2", "pump"} <= set(s.station.components)
    assert s.pump.tone("p21").frequency() == pytest.approx(6.065e9 - 5.83e6)
    assert s.vna.if_bandwidth() == 10.0


def test_pump_config_maps_tones_to_the_station() -> None:
    cfg = load_config(EM)
    comps = {"awg": object(), "lo1": object(), "lo2": object()}
    out = pump_config(cfg, comps)
    assert out["awg"] is comps["awg"] and out["limits"]["p11"] == 0.3
    assert out["mixers"]["iq2"]["lo"] is comps["lo2"]
    assert out["mixers"]["iq2"]["lo_frequency"] == 6.055e9
    assert out["frequency_resolution"] == 10.0 and out["sample_rate"] == 12.5e6
    assert out["tones"]["p12"] == {
        "frequency": 5.21e9 - 6.41e6, "amplitude": 0.0, "phase": 0.0, "iq": "iq1", "sideband": "+",
    }  # fmt: skip


def test_station_file_of_the_em_preset_names_its_instruments() -> None:
    conf = yaml.safe_load((CONFIGS / "station_sim_em.yaml").read_text())["instruments"]
    from labnr.sim.lab import VirtualLab

    lab = VirtualLab("em_circulator")  # not started: only its instrument order
    assert list(conf) == list(lab.instruments)
    ports = [int(e["address"].split("::")[2]) for e in conf.values()]
    assert ports == list(range(50261, 50261 + len(conf)))


def test_missing_station_file_of_a_real_lab_is_refused(tmp_path: Path, restore_db: None) -> None:
    text = JPC.read_text().replace("simulate: true", "simulate: false")
    text = text.replace("station_sim.yaml", "no_such_station.yaml")
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    # refused when the config is read, before anything connects (one clear line, no traceback)
    with pytest.raises(ConfigError, match=r"lab.yaml: station: station file 'no_such_station"):
        open_lab(path)
