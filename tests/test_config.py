"""labnr experiment configs: the shipped ones load; broken ones give one clear line each."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from labnr.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
JPC = ROOT / "configs" / "sim_jpc_circulator.yaml"


@pytest.mark.parametrize("name", ["sim_jpc_circulator.yaml", "sim_em_circulator.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.simulate and cfg.virtual_lab is not None
    assert cfg.path(cfg.station).parent == (ROOT / "configs").resolve()


def test_units_are_parsed_exactly() -> None:
    cfg = load_config(JPC)
    assert cfg.modes["a"].frequency == 5.31e9
    assert cfg.flux.ramp_rate == 1e-4  # "100 uA/s", exact
    assert cfg.flux.max_step == 5e-6
    assert cfg.vna.power == -30.0


def test_target_paths() -> None:
    fwd, rev = load_config(JPC).target.paths()
    assert fwd == [("b", "a"), ("c", "b"), ("a", "c")]  # (out, in)
    assert rev == [("a", "b"), ("b", "c"), ("c", "a")]


def _set(d: dict, path: str, value) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


_DELETE = object()

BROKEN = [
    ("modes.a.frequency", "5.31 GA", "modes.a.frequency: unit 'GA' does not fit"),
    ("modes.a.frequency", "fast", "modes.a.frequency: 'fast' is not a quantity"),
    ("modes.a.frequency", -1.0, "modes.a.frequency: Input should be greater than 0"),
    ("modes.a.vna_prt", 1, "modes.a.vna_prt: unknown key (did you mean 'vna_port'?)"),
    ("modes.b.vna_port", 1, "modes: two modes share a VNA port"),
    ("modes.a.vna_port", 9, "modes.a.vna_port: Input should be less than or equal to 4"),
    ("target", _DELETE, "target: missing required key"),
    ("target.kind", "gyrator", "target.kind: Input should be 'circulator' or 'isolator'"),
    ("target.sense", ["a", "b"], "a circulator needs sense"),
    ("target.sense", ["a", "b", "z"], "target.sense: unknown mode 'z'"),
    ("pumps.tones.ab.modes", ["a", "z"], "pumps.tones.ab.modes: unknown mode 'z'"),
    ("pumps.tones.ab.modes", ["a", "a"], "a tone drives two different modes"),
    ("pumps.tones.bc.modes", ["b", "a"], "two tones drive the same pair"),
    (
        "pumps.tones.ab.max_amplitude",
        "0.3 A",
        "pumps.tones.ab.max_amplitude: unit 'A' does not fit",
    ),
    ("pumps.tones.ab.amplitude", 0.5, "amplitude: 0.5 V exceeds max_amplitude 0.3 V"),
    ("pumps.tones.ab.source", _DELETE, "tones.ab.source: the cw backend needs"),
    ("pumps.backend", "laser", "pumps.backend: Input should be 'cw' or 'awg'"),
    ("flux.min_current", "3 mA", "min_current 0.003 must be below max_current"),
    ("flux.ramp_rate", 0, "flux.ramp_rate: Input should be greater than 0"),
    ("flux", _DELETE, "flux-tunable modes need a flux: section"),
    ("instruments.flux", _DELETE, "instruments.flux: a flux: section needs"),
    ("simulate", "maybe", "simulate: Input should be a valid boolean"),
    ("virtual_lab", _DELETE, "simulate: true needs virtual_lab"),
    ("vna.points", 1, "vna.points: Input should be greater than or equal to 2"),
    ("vna.power", "-30 dB", "vna.power: unit 'dB' does not fit"),
    ("name", _DELETE, "name: missing required key"),
    ("stations", "x.yaml", "stations: unknown key (did you mean 'station'?)"),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), BROKEN, ids=[b[0] + "=" + repr(b[1])[:12] for b in BROKEN]
)
def test_broken_config_gives_clear_message(path: str, value, expected: str) -> None:
    data = copy.deepcopy(yaml.safe_load(JPC.read_text()))
    _set(data, path, value)
    with pytest.raises(ConfigError) as exc:
        parse_config(data, source="broken.yaml")
    msg = str(exc.value)
    assert expected in msg
    assert all(line.startswith("broken.yaml: ") for line in msg.splitlines())
    assert "Traceback" not in msg


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)


# ---------------------------------------------------------------------- ranges and stimulus limits

STATION = yaml.safe_load((ROOT / "configs" / "station_sim.yaml").read_text())


def _lab(tmp_path: Path, edits: dict[str, object], station_edits: dict | None = None) -> Path:
    """A config (one of the JPC preset with ``edits``) and its station file in ``tmp_path``."""
    data = copy.deepcopy(yaml.safe_load(JPC.read_text()))
    data |= {"simulate": False, "station": "station.yaml",
             "storage": {"database": "out/labnr.db", "data_dir": "out/data"}}  # fmt: skip
    for path, value in edits.items():
        _set(data, path, value)
    station = copy.deepcopy(STATION)
    for path, value in (station_edits or {}).items():
        _set(station, path, value)
    (tmp_path / "station.yaml").write_text(yaml.safe_dump(station))
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "cfg.yaml"


def test_stimulus_limit_default_and_per_port(tmp_path: Path) -> None:
    cfg = load_config(_lab(tmp_path, {}))
    assert cfg.vna.max_power == -10.0  # conservative default for cryogenic work
    assert load_config(_lab(tmp_path, {"vna.power": "-10 dBm"})).vna.power == -10.0  # at the limit
    with pytest.raises(ConfigError, match=r"cfg.yaml: vna.power: -9.5 dBm on port 1 is above the "
                       r"stimulus limit -10 dBm \(vna.max_power\)"):  # fmt: skip
        load_config(_lab(tmp_path, {"vna.power": "-9.5 dBm"}))
    limits = {1: "-20 dBm", 2: -35, 3: "0 dBm"}
    with pytest.raises(ConfigError) as info:
        load_config(_lab(tmp_path, {"vna.max_power": limits}))
    assert str(info.value).splitlines() == [
        f"{tmp_path / 'cfg.yaml'}: vna.power: -30 dBm on port 2 is above the stimulus limit "
        "-35 dBm (vna.max_power.2); fix: give at most -35 dBm; raise vna.max_power.2 only if the "
        "device's input line is attenuated for more"
    ]
    cfg = load_config(_lab(tmp_path, {"vna.max_power": limits | {2: -30}}))
    assert cfg.vna.max_power == {1: -20.0, 2: -30.0, 3: 0.0}


def test_power_ranges_follow_the_station_model(tmp_path: Path) -> None:
    # the N5242B sources up to +20 dBm; the N5222B up to +13 dBm; a station init narrows it
    ok = {"vna.max_power": "15 dBm"}
    load_config(_lab(tmp_path, ok))
    n5222b = {"instruments.vna.type": "labnr.drivers.keysight_pna.KeysightN5222B"}
    with pytest.raises(ConfigError, match=r"vna.max_power: 15 dBm is above the KeysightN5222B's "
                       r"largest source power 13 dBm"):  # fmt: skip
        load_config(_lab(tmp_path, ok, n5222b))
    narrowed = {"instruments.vna.init": {"max_power": 5.0, "min_frequency": 6e9}}
    with pytest.raises(ConfigError) as info:
        load_config(_lab(tmp_path, ok, narrowed))
    lines = str(info.value).splitlines()
    assert any("largest source power 5 dBm" in line for line in lines)
    assert any("modes.a.frequency: 5.31 GHz is outside the KeysightN5242B's range 6 GHz" in line
               for line in lines)  # fmt: skip


def test_flux_resolution_comes_from_the_source_and_its_range(tmp_path: Path) -> None:
    # 50 nA steps: fine in the GS200's 1 mA range (10 nA resolution), not in its 10 mA range
    # (100 nA); a flux source labnr knows no resolution of is only held to the driver's floor
    step = {"flux.max_step": "50 nA"}
    assert load_config(_lab(tmp_path, step | {"flux.min_current": "-1 mA",
                                              "flux.max_current": "1 mA"})).flux.max_step == 5e-8
    with pytest.raises(ConfigError, match=r"flux.max_step: 50 nA is below twice the GS200's "
                       r"resolution of 100 nA in its 10 mA range"):  # fmt: skip
        load_config(_lab(tmp_path, step))
    other = {"instruments.flux.type": "my_lab.drivers.OtherSource"}
    assert load_config(_lab(tmp_path, step, other)).flux.max_step == 5e-8


def test_ranges_without_a_station_use_the_pna_family() -> None:
    data = copy.deepcopy(yaml.safe_load(JPC.read_text()))
    data["vna"] |= {"if_bandwidth": "1.5 kHz", "averages": 65536}
    parse_config(data, source="x.yaml")  # both are PNA values
    data["vna"] |= {"if_bandwidth": "1.6 kHz", "averages": "1e5"}
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="x.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert "vna.if_bandwidth: 1.6 kHz is not an IF bandwidth" in lines[0]
    assert lines[0].endswith("fix: use the nearest one, 1.5 kHz")
    assert "vna.averages: 100000 sweeps is above the Keysight PNA family's maximum of 65536" in (
        lines[1])  # fmt: skip


def test_ports_and_sources_follow_the_station(tmp_path: Path) -> None:
    two_ports = {"instruments.vna.init": {"n_ports": 2}}
    with pytest.raises(ConfigError) as info:
        load_config(_lab(tmp_path, {}, two_ports))
    assert str(info.value).splitlines() == [
        f"{tmp_path / 'cfg.yaml'}: modes.c.vna_port: port 3 is not a port of the KeysightN5242B "
        "(1 to 2); fix: give the VNA port the mode is wired to"
    ]
    close = {"modes.b.frequency": "5.3105 GHz"}  # the a-b conversion pump at 500 kHz
    with pytest.raises(ConfigError, match=r"pumps.tones.ab.modes: 500 kHz is outside the range "
                       r"of 'pump_ab' \(RohdeSchwarzSGS100A: 1 MHz to 20 GHz\)"):  # fmt: skip
        load_config(_lab(tmp_path, close))
    other = {"instruments.pump_ab.type": "my_lab.drivers.LowFrequencySource"}
    assert load_config(_lab(tmp_path, close, other)).modes["b"].frequency == 5.3105e9


def test_port_limits_for_the_session() -> None:
    data = copy.deepcopy(yaml.safe_load(JPC.read_text()))
    assert parse_config(data).vna.port_limits(4) == {1: -10.0, 2: -10.0, 3: -10.0, 4: -10.0}
    data["vna"]["max_power"] = {1: "-20 dBm", 3: -40}
    data["vna"]["power"] = "-40 dBm"
    assert parse_config(data).vna.port_limits(4) == {1: -20.0, 2: -10.0, 3: -40.0, 4: -10.0}


def test_mode_frequency_beyond_a_terahertz() -> None:
    data = copy.deepcopy(yaml.safe_load(JPC.read_text()))
    data["modes"]["c"] = {"frequency": 7.905e18}  # not on the VNA, so only the THz cap applies
    data["target"] = {"kind": "isolator", "forward": ["a", "b"]}
    with pytest.raises(ConfigError, match=r"modes.c.frequency: 7.905e\+18 Hz is above 1e\+12 Hz"):
        parse_config(data)
