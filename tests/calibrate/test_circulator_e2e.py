"""End to end: the circulator calibration graph on the virtual lab, from cold start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from labnr.calibrate.run import build_graph, calibrate
from labnr.cli import main
from labnr.session import open_lab

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim_jpc_circulator.yaml"
NODES = ["flux_sweet_spot", "modes", "pump_ab", "pump_bc", "pump_ca", "loop_phase",
         "operating_point"]  # fmt: skip


def test_graph_from_config() -> None:
    from labnr.config import load_config

    graph = build_graph(load_config(CONFIG))
    assert sorted(graph._nodes) == sorted(NODES)
    assert graph._order[0] == "flux_sweet_spot" and graph._order[-1] == "operating_point"


def test_cold_start_then_rerun_skips(tmp_path: Path) -> None:
    with open_lab(CONFIG, database=tmp_path / "labnr.db", data_dir=tmp_path / "data") as lab:
        report, ctx = calibrate(lab)
        assert report.ok, report.reason
        assert [n.status for n in report.nodes] == ["ran"] * len(NODES)
        meas = ctx.state.result("operating_point")["measured"]
        assert meas["isolation_db"] >= 30.0
        assert meas["insertion_loss_db"] <= 1.0
        assert ctx.acquisitions <= 60
        # a second run checks and skips every node
        report2, ctx2 = calibrate(lab)
        assert report2.ok, report2.reason
        assert all(n.status == "skipped" for n in report2.nodes), report2.format()
        assert ctx2.acquisitions <= 20


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["station"] = str(CONFIG.parent / cfg["station"])
    cfg["storage"] = {"database": str(tmp_path / "labnr.db"), "data_dir": str(tmp_path / "data")}
    path = tmp_path / "sim_jpc_circulator.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["calibrate", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("isolation_db", "insertion_loss_db", "reflection_db", "acquisitions",
                "virtual_time_s", "operating_point", "state_file", "run_ids"):  # fmt: skip
        assert key in out
    assert out["isolation_db"] >= 30.0
    assert out["insertion_loss_db"] <= 1.0
    assert 0 < out["acquisitions"] <= 60
    assert out["virtual_time_s"] > 0
    assert Path(out["state_file"]).is_file()
    assert Path(out["state_file"]).parent == tmp_path / "data"
    assert set(out["operating_point"]["settings"]) == {"ab", "bc", "ca"}
    assert out["run_ids"]
