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
