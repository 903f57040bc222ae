"""Station files, the pyvisa-sim GS200 and the ramp planner."""

from __future__ import annotations

import importlib
import inspect
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
import qcodes as qc
import yaml
from hypothesis import given
from hypothesis import strategies as st
from qcodes.instrument import Instrument

from labnr.drivers.flux import FluxBias, plan_ramp
from labnr.drivers.flux_gs200 import GS200FluxBias
from labnr.sim.lab import VirtualLab

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SIM_STATION = CONFIGS / "station_sim.yaml"
LAB_STATION = CONFIGS / "station_example_lab.yaml"
SOCKET = re.compile(r"TCPIP::127\.0\.0\.1::(\d+)::SOCKET")


def _resolve(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _station_ports(path: Path) -> dict[str, int]:
    conf = yaml.safe_load(path.read_text())["instruments"]
    ports = {}
    for name, entry in conf.items():
        match = SOCKET.fullmatch(entry["address"])
        assert match, f"{path.name}: {name} address {entry['address']!r} is not a loopback socket"
        ports[name] = int(match.group(1))
    return ports


# ---------------------------------------------------------------------- station files


def test_sim_station_ports_match_sim_serve_port_base() -> None:
    ports = _station_ports(SIM_STATION)
    lab = VirtualLab("jpc_circulator")  # not started: only its instrument order is needed
    base = min(ports.values())
    assert ports == {name: base + k for k, name in enumerate(lab.instruments)}


def test_sim_station_loads_snapshots_fast_and_leaves_the_flux_alone() -> None:
    lab = VirtualLab("jpc_circulator", seed=1).start(ports=_station_ports(SIM_STATION))
    try:
        assert lab.flux_source is not None
        lab.flux_source.write(":SOUR:FUNC CURR;:SOUR:LEV 2e-4;:OUTP ON")
        before = list(lab.flux_source.state.history)
        station = qc.Station(config_file=str(SIM_STATION))
        for name in station.config["instruments"]:
            station.load_instrument(name)
        assert set(station.components) == set(lab.instruments)
        assert isinstance(station.components["flux"], GS200FluxBias)
        start = time.perf_counter()
        snapshot = station.snapshot(update=True)
        elapsed = time.perf_counter() - start
        assert elapsed < 1.0, f"station snapshot took {elapsed:.2f} s"
        flux = snapshot["instruments"]["flux"]
        assert flux["parameters"]["current"]["value"] == pytest.approx(2e-4)
        assert flux["parameters"]["flux"]["unit"] == "Phi0"
        assert flux["source"]["parameters"]["source_mode"]["value"] == "CURR"
        for name in lab.instruments:
            assert snapshot["instruments"][name]["parameters"], f"{name}: empty snapshot"
        qc.Instrument.close_all()
        assert lab.flux_source.state.history == before  # load, snapshot, close: level untouched
    finally:
        qc.Instrument.close_all()
        lab.stop()


def test_written_station_yaml_uses_the_flux_bias(tmp_path: Path, virtual_lab: VirtualLab) -> None:
    conf = yaml.safe_load(virtual_lab.write_station_yaml(tmp_path / "s.yaml").read_text())
    flux = conf["instruments"]["flux"]
    assert _resolve(flux["type"]) is GS200FluxBias
    inspect.signature(GS200FluxBias).bind(name="flux", address=flux["address"], **flux["init"])


@pytest.mark.parametrize("path", [SIM_STATION, LAB_STATION], ids=lambda p: p.name)
def test_station_files_name_existing_classes_with_valid_arguments(path: Path) -> None:
    conf = yaml.safe_load(path.read_text())["instruments"]
    assert list(conf) == ["vna", "pump_ab", "pump_bc", "pump_ca", "awg", "flux"]
    assert set(qc.Station(config_file=str(path)).config["instruments"]) == set(conf)
    for name, entry in conf.items():
        cls = _resolve(entry["type"])
        assert issubclass(cls, Instrument)
        inspect.signature(cls).bind(name=name, address=entry["address"], **entry.get("init", {}))


# ---------------------------------------------------------------------- pyvisa-sim plumbing


def test_pyvisa_sim_gs200_plumbing() -> None:
    fb = GS200FluxBias(
        "simflux",
        "GPIB::1::INSTR",
        pyvisa_sim_file="labnr.drivers.sims:yokogawa_gs200.yaml",
        current_per_flux_quantum=1.2e-3,
        current_limits=(-1e-3, 1e-3),
        ramp_rate=1e-3,
        max_step=1e-4,
        poll_interval=0.0,
    )
    try:
        gs = fb.source.instrument
        assert gs.IDN()["vendor"] == "YOKOGAWA" and gs.source_mode() == "VOLT"
        assert not fb.output() and fb.current() == 0.0
        fb.output(True)
        assert gs.source_mode() == "CURR" and gs.current_range() == 1e-3 and fb.output()
        fb.flux(0.25)
        assert fb.current() == pytest.approx(0.3e-3)
        snap = fb.snapshot(update=True)
        assert snap["parameters"]["flux"]["value"] == pytest.approx(0.25)
        assert snap["parameters"]["ramp_rate"]["unit"] == "A/s"
        assert snap["source"]["parameters"]["current"]["value"] == pytest.approx(0.3e-3)
        assert gs.system_errors() == '0,"No error"'
        fb.output(False)
        assert not fb.output()
    finally:
        Instrument.close_all()


def test_flux_bias_accepts_a_received_source_and_leaves_it_open() -> None:
    from qcodes.instrument_drivers.yokogawa import YokogawaGS200

    from labnr.drivers.flux_gs200 import GS200CurrentSource

    gs = YokogawaGS200(
        "shared_gs", "GPIB::2::INSTR", pyvisa_sim_file="labnr.drivers.sims:yokogawa_gs200.yaml"
    )
    try:
        fb = FluxBias(
            "received",
            GS200CurrentSource(gs),
            current_per_flux_quantum=1e-3,
            current_limits=(-1e-4, 1e-4),
            ramp_rate=1e-4,
            max_step=1e-5,
        )
        fb.close()
        assert Instrument.exist("shared_gs") and not Instrument.exist("received")
    finally:
        Instrument.close_all()


# ---------------------------------------------------------------------- planner


@given(
    start=st.floats(-2e-3, 2e-3),
    target=st.floats(-2e-3, 2e-3),
    rate=st.floats(1e-7, 1.0),
    max_step=st.floats(1e-6, 1e-2),
    resolution=st.sampled_from([0.0, 10e-9, 1e-6]),
)
def test_plan_ramp_never_exceeds_rate_or_step(
    start: float, target: float, rate: float, max_step: float, resolution: float
) -> None:
    kwargs: dict[str, Any] = {
        "rate": rate,
        "max_step": max_step,
        "resolution": resolution,
        "min_interval": 0.1,
        "max_interval": 3600.0,
        "time_resolution": 0.1,
    }
    if min(max_step, rate * 3600.0) < 2 * resolution:
        with pytest.raises(ValueError, match="resolution"):
            plan_ramp(start, target, **kwargs)
        return
    plan = plan_ramp(start, target, **kwargs)
    assert 0.1 <= plan.interval <= 3600.0
    assert math.isclose(plan.interval / 0.1, round(plan.interval / 0.1), abs_tol=1e-9)
    expected = round(target / resolution) * resolution if resolution else target
    if not plan.levels:
        assert abs(expected - start) <= resolution / 2 + 1e-15
        return
    assert plan.max_step <= max_step * (1 + 1e-12)
    assert plan.rate <= rate * (1 + 1e-9)
    assert plan.levels[-1] == pytest.approx(expected, abs=1e-15)
    assert plan.duration >= abs(plan.levels[-1] - start) / rate * (1 - 1e-9)


def test_plan_ramp_refuses_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="rate"):
        plan_ramp(0.0, 1e-3, rate=0.0, max_step=1e-4)
