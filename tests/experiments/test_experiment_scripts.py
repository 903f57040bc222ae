"""Every lab script in experiments/ runs against the shipped simulated config."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import qcodes as qc

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
TRUE_OFFSET = 0.137e-3  # configs/devices/jpc_circulator.yaml (test side only)


def run_script(name: str, argv: list[str]) -> int:
    sys.path.insert(0, str(EXPERIMENTS))
    old_db = qc.config.core.db_location
    try:
        spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main(argv)
    finally:
        sys.path.remove(str(EXPERIMENTS))
        qc.config.core.db_location = old_db


def test_flux_spectroscopy_finds_the_sweet_spot(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert (
        run_script("flux_spectroscopy", ["--output", str(out), "--n", "21", "--no-progress"]) == 0
    )
    text = capsys.readouterr().out
    offsets = [
        float(line.split("offset_current")[1].split()[0])
        for line in text.splitlines()
        if "offset_current" in line
    ]
    assert len(offsets) == 2  # modes a and b tune
    for found in offsets:
        assert found == pytest.approx(TRUE_OFFSET, abs=2e-6)  # 21 points over 1 mA
    assert (out / "flux_map.png").stat().st_size > 10_000
    assert list((out / "data").glob("run_*.h5"))


@pytest.mark.parametrize(
    ("name", "extra", "png"),
    [
        ("characterise_modes", [], "modes_smatrix.png"),
        ("pump_phase_sweep", ["--points", "13", "--freq-points", "51"], "phase_sweep_bc.png"),
        ("pump_map", ["--n", "4", "--freq-points", "51"], "pump_map.png"),
    ],
)
def test_script_runs_and_plots(
    name: str, extra: list[str], png: str, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    argv = [
        "--output",
        str(out),
        "--offset-current",
        str(TRUE_OFFSET),
        "--flux",
        "0",
        "--no-progress",
        *extra,
    ]
    assert run_script(name, argv) == 0
    assert "run " in capsys.readouterr().out
    assert (out / png).stat().st_size > 10_000
    assert list((out / "data").glob("run_*.h5"))


def test_phase_sweep_finds_the_reverse_null(tmp_path: Path, capsys) -> None:
    # the reverse transmission a<-b is smallest where the forward one peaks: nonreciprocity
    out = tmp_path / "out"
    argv = [
        "--output",
        str(out),
        "--offset-current",
        str(TRUE_OFFSET),
        "--flux",
        "0",
        "--no-progress",
        "--points",
        "25",
        "--freq-points",
        "51",
    ]
    assert run_script("pump_phase_sweep", argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    best = float(line.split("phase")[-1].split()[0])
    from labnr.measure import load

    ds = load(out / "data" / sorted(p.name for p in (out / "data").glob("run_*.h5"))[-1])
    at = abs(ds["S"].sel(frequency=0.0, method="nearest"))
    fwd = at.sel(out="b").sel({"in": "a"})
    rev = at.sel(out="a").sel({"in": "b"})
    k = int(rev.argmin())
    assert float(ds["pump_bc_phase"][k]) == pytest.approx(best, abs=1e-3)  # printed to 3 digits
    assert float(fwd[k] / rev[k]) > 4  # > 12 dB (line gains included) at the null of a 15 deg grid
