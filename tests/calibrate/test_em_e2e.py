"""End to end: the same graph calibrates the electromechanical isolator from cold start.

No device-specific code: the config's tones link port modes to mechanical
modes without a VNA port, so the pump nodes fit sideband windows; the AWG's
10 Hz grid and shared IQ channels are handled through the pump driver.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labnr.calibrate.run import build_graph, calibrate
from labnr.session import open_lab

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim_em_circulator.yaml"


def test_em_graph_has_no_flux_node() -> None:
    from labnr.config import load_config

    graph = build_graph(load_config(CONFIG))
    assert sorted(graph._nodes) == sorted(
        ["modes", "pump_p11", "pump_p12", "pump_p21", "pump_p22", "loop_phase",
         "operating_point"])  # fmt: skip


def test_em_cold_start(tmp_path: Path) -> None:
    with open_lab(CONFIG, database=tmp_path / "labnr.db", data_dir=tmp_path / "data") as lab:
        report, ctx = calibrate(lab)
        assert report.ok, report.reason
        truth = lab.virtual_lab.truth()  # test side only
        # the pump nodes found the mechanical modes (which no port sees) to within a few Hz
        # of their drifting true frequencies, and their intrinsic linewidths
        for t, m in (("p11", "m1"), ("p12", "m2"), ("p21", "m1"), ("p22", "m2")):
            found = ctx.state.result(f"pump_{t}")["internal"][m]
            true_f = truth.configuration.frequencies[m]
            assert abs(found["frequency"] - true_f) < 5.0, (t, found, true_f)
            assert abs(found["kappa_int"] - truth.spec.modes[m].kappa_int) < 5.0
        # eta ratios between tones on one mixer follow the device's coupling ratios
        eta = {t: ctx.state.result(f"pump_{t}")["eta"] for t in ("p11", "p12", "p21", "p22")}
        k = {(ln.a, ln.b): ln.coupling_per_volt for ln in truth.spec.links}
        assert np.isclose(eta["p12"] / eta["p11"], k[("a1", "m2")] / k[("a1", "m1")], rtol=0.02)
        assert np.isclose(eta["p22"] / eta["p21"], k[("a2", "m2")] / k[("a2", "m1")], rtol=0.02)
        meas = ctx.state.result("operating_point")["measured"]
        assert meas["isolation_db"] >= 40.0, meas
        assert meas["insertion_loss_db"] <= 5.0, meas  # the preset's honest figure is ~4 dB
        assert ctx.acquisitions <= 30
        # the realised pump frequencies close the loop exactly (a static loop phase)
        f = {t: lab.pump.tone(t).frequency() for t in eta}
        assert abs(f["p11"] - f["p12"] - f["p21"] + f["p22"]) < 1e-3
        # the applied amplitudes fit the shared AWG channels
        amps = {t: lab.pump.tone(t).amplitude() for t in eta}
        for names, limit in lab.pump.amplitude_budgets():
            assert sum(amps[n] for n in names) <= limit
