"""The same graph makes an isolator between two chosen ports; the direction is a config choice."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from labnr.calibrate.circulator_helpers import PointReads
from labnr.calibrate.run import calibrate
from labnr.session import open_lab

JPC = Path(__file__).resolve().parents[2] / "configs" / "sim_jpc_circulator.yaml"


@pytest.mark.parametrize("forward", [("a", "b"), ("c", "a")])
def test_isolator_between_chosen_ports(tmp_path: Path, forward: tuple[str, str]) -> None:
    cfg = yaml.safe_load(JPC.read_text())
    cfg["station"] = str(JPC.parent / cfg["station"])
    cfg["target"] = {"kind": "isolator", "forward": list(forward)}
    cfg["name"] = "jpc_isolator_test"
    path = tmp_path / "isolator.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with open_lab(path, database=tmp_path / "labnr.db", data_dir=tmp_path / "data") as lab:
        report, ctx = calibrate(lab)
        assert report.ok, report.reason
        src, dst = forward
        # measured by the test itself, independently of the calibration's figures:
        # forward and reverse point reads at the operating point's band centres
        op = ctx.state.result("operating_point")
        gains = op["line_gain"]
        z_fwd, z_rev = PointReads(ctx, [(dst, src), (src, dst)], op["band_centres"]).read()
        fwd = abs(z_fwd) / gains[f"{dst},{src}"]
        rev = abs(z_rev) / gains[f"{src},{dst}"]
        assert 20 * math.log10(fwd / rev) >= 40.0
        assert -20 * math.log10(fwd) <= 0.5
        assert ctx.acquisitions <= 60
