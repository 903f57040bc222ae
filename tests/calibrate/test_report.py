"""The one-page PNG calibration report written by ``labnr calibrate``."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labnr.calibrate.cli import add_calibrate_arguments
from labnr.calibrate.report import TARGET_DB, build_report, isolation_traces
from labnr.calibrate.state import CalibrationState

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim_jpc_circulator.yaml"


def _config(directory: Path, seed: int = 1) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["station"] = str(CONFIG.parent / cfg["station"])
    cfg["virtual_lab"] = {**cfg.get("virtual_lab", {}), "seed": seed}
    cfg["storage"] = {"database": str(directory / "labnr.db"), "data_dir": str(directory / "data")}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(path: Path, **kwargs: Any) -> tuple[dict[str, Any], Any, Any]:
    """Calibrate with --json and the PNG report; (JSON line, report, context)."""
    from labnr.calibrate.run import calibrate
    from labnr.session import open_lab

    with open_lab(path) as lab:
        out = io.StringIO()
        report, ctx = calibrate(lab, json=True, png_report=True, out=out, **kwargs)
        line = json.loads(out.getvalue().strip().splitlines()[-1])
        after = None
        if line.get("report_acquisitions"):
            from labnr.measure import load

            after = load(line["run_ids"][-1], db=lab.config.path(lab.config.storage.database))
        return line, report, (ctx, after)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, ...]]:
    path = _config(tmp_path_factory.mktemp("report"))
    line, report, (ctx, after) = _run(path)
    yield line, report, ctx, after


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_png_is_written_to_the_data_dir(calibrated: tuple[Any, ...]) -> None:
    line, report, ctx, _ = calibrated
    assert report.ok
    path = Path(line["report"])
    assert path.parent == Path(ctx.config.path(ctx.config.storage.data_dir))
    assert path.name.startswith(f"calibration_{ctx.config.name}_") and path.suffix == ".png"
    width, height = _png_size(path)
    assert width >= 1200 and height >= 800
    assert 50e3 < path.stat().st_size < 5e6


def test_report_acquisitions_are_counted_apart(calibrated: tuple[Any, ...]) -> None:
    line, report, ctx, _ = calibrated
    # acquisitions: the calibration's own, node by node; the sweep is not among them
    assert line["acquisitions"] == ctx.acquisitions == sum(n["acquisitions"]
                                                           for n in line["nodes"])  # fmt: skip
    assert line["acquisitions"] <= 60
    assert line["report_acquisitions"] > 0
    sweep = line["run_ids"][-1]
    assert sweep not in report.run_ids
    assert all(sweep not in n["run_ids"] for n in line["nodes"])


def test_figure_has_the_four_panels(calibrated: tuple[Any, ...]) -> None:
    line, report, ctx, after = calibrated
    fig = build_report(ctx.state, ctx.config, graph=report, summary=line, after=after)
    titles = [ax.get_title() or ax.get_title(loc="left") for ax in fig.axes]
    ports = ["a", "b", "c"]
    for o in ports:  # (a): one cell per element, before/after in the reflections
        for i in ports:
            cell = next(ax for ax, t in zip(fig.axes, titles, strict=True)
                        if t.startswith(f"S_{o}{i} "))  # fmt: skip
            n_lines = len(cell.get_lines())
            assert n_lines == (2 if o == i else 1), (o, i, n_lines)
    fits = [ax for ax, t in zip(fig.axes, titles, strict=True) if t.startswith("mode ")]
    assert len(fits) == 3 and all(len(ax.get_lines()) == 2 for ax in fits)  # data + fit
    iso = next(ax for ax in fig.axes if ax.get_ylabel().startswith("isolation"))
    labels = [ln.get_label() for ln in iso.get_lines()]
    assert {"a->b", "b->c", "c->a", f"target {TARGET_DB:.0f} dB"} <= set(labels)
    top = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("(c)"))
    assert sum(ln.get_label().startswith(("fwd", "rev")) for ln in top.get_lines()) == 6
    text = "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "(d) summary" in [ax.get_title(loc="left") for ax in fig.axes]
    for needle in ("operating_point", "acquisitions: calibration", "pump calibration", "eta"):
        assert needle in text


def test_isolation_trace_at_centre_agrees_with_the_json(calibrated: tuple[Any, ...]) -> None:
    line, _, ctx, after = calibrated
    gains = ctx.state.result("operating_point")["line_gain"]
    traces = isolation_traces(ctx.config, after, gains)
    assert len(traces) == 3
    at_centre = min(float(np.interp(0.0, t["offset"], t["isolation_db"])) for t in traces)
    assert abs(at_centre - line["isolation_db"]) < 6.0, (at_centre, line["isolation_db"])
    # directional only near the band centre: a few linewidths out it is reciprocal
    edge = max(float(t["isolation_db"][0]) for t in traces)
    assert edge < 10.0
    loss = max(-float(np.interp(0.0, t["offset"], t["forward_db"])) for t in traces)
    assert abs(loss - line["insertion_loss_db"]) < 0.5


def test_report_after_a_failed_calibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:  # fmt: skip
    from labnr.calibrate import circulator

    def broken(self: Any, ctx: Any) -> Any:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(circulator.LoopPhase, "run", broken)
    line, report, (ctx, after) = _run(_config(tmp_path))
    assert line["status"] == "failed" and line["failed_node"] == "loop_phase"
    assert after is None and line["report_acquisitions"] == 0
    path = Path(line["report"])
    assert _png_size(path)[0] >= 1200
    fig = build_report(ctx.state, ctx.config, graph=report, summary=line)
    text = "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "failed" in text and "not run" in text
    fits = [ax for ax in fig.axes if ax.get_title().startswith("mode ")]
    assert all(len(ax.get_lines()) == 2 for ax in fits)  # the modes data still shown


def test_report_of_an_empty_state_does_not_raise(calibrated: tuple[Any, ...]) -> None:
    ctx = calibrated[2]
    state = CalibrationState("nothing", "0", path=None)
    fig = build_report(state, ctx.config, summary={"status": "failed"})
    assert len(fig.axes) >= 4


def test_no_report_flag() -> None:
    import argparse

    parser = add_calibrate_arguments(argparse.ArgumentParser())
    assert parser.parse_args(["c.yaml", "--no-report"]).no_report is True
    assert parser.parse_args(["c.yaml"]).no_report is False
