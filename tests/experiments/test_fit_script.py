"""The lab script experiments/fit_smatrix.py finds the virtual lab's true couplings."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import qcodes as qc

from labnr.measure import measure_smatrix
from labnr.session import open_lab

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
CONFIG = ROOT / "configs" / "sim_jpc_circulator.yaml"
TRUE_OFFSET = 0.137e-3  # configs/devices/jpc_circulator.yaml (test side only)


def run_fit_script(argv: list[str]) -> int:
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        spec = importlib.util.spec_from_file_location(
            "fit_smatrix_script", EXPERIMENTS / "fit_smatrix.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main(argv)
    finally:
        sys.path.remove(str(EXPERIMENTS))


def _number(text: str, name: str) -> tuple[float, float]:
    m = re.search(rf"{name} = (-?[\d.]+) \+/- ([\d.]+)", text)
    assert m, f"{name} not in the output:\n{text}"
    return float(m.group(1)), float(m.group(2))


def test_fit_script_reports_the_true_couplings(tmp_path: Path, capsys) -> None:
    old_db = qc.config.core.db_location
    db = tmp_path / "labnr.db"
    try:
        with open_lab(CONFIG, database=db, data_dir=tmp_path / "data") as lab:
            truth_flux = lab.virtual_lab.spec.flux
            lab.flux.current_per_flux_quantum(truth_flux.current_per_flux_quantum)
            lab.flux.offset_current(TRUE_OFFSET)
            lab.flux.output(True)
            lab.flux.flux(0.0)
            lab.pump.set_tones({t: {"amplitude": 0.1, "phase": 0.0} for t in ("ab", "bc", "ca")})
            lab.pump.output(True)
            ds = measure_smatrix(lab, progress=False)
            config = lab.virtual_lab.truth().configuration
        assert run_fit_script(["--run-id", str(ds.run_id), "--db", str(db), "--plot",
                               str(tmp_path / "fit.png")]) == 0  # fmt: skip
    finally:
        qc.config.core.db_location = old_db
    text = capsys.readouterr().out
    assert "reduced chi-square" in text and "ok" in text
    g_true = {(lk.a, lk.b): lk.g for lk in config.links}  # links oriented (lower, higher)
    for (a, b), g in g_true.items():
        fit, err = _number(text, f"coupling g_{a}_{b}")
        assert fit * 1e6 == pytest.approx(g, rel=0.01)
        assert err < 0.01 * fit
    net = config.network
    for m in ("a", "b", "c"):
        f0 = float(re.search(rf"mode {m}: f = ([\d.]+) GHz", text).group(1))
        assert f0 * 1e9 == pytest.approx(config.frequencies[m], abs=0.05e6)
        kext, _ = _number(text, f"mode {m}: f = [\\d.]+ GHz, kappa_ext")
        assert kext * 1e6 == pytest.approx(net.mode(m).kappa_ext, rel=0.02)
    phase = {(lk.a, lk.b): lk.phase for lk in config.links}
    flux = phase[("a", "b")] + phase[("b", "c")] - phase[("a", "c")]
    loop, _ = _number(text, "loop phase loop_a_c")
    assert abs(np.angle(np.exp(1j * (np.radians(loop) - flux)))) < np.radians(1.0)
    assert (tmp_path / "fit.png").stat().st_size > 10_000
