"""Build the calibration graph of a device from its config, and the ``labnr calibrate`` command.

:func:`build_graph` picks the nodes the config calls for (flux spectroscopy
only with a flux bias and flux-tunable port modes; one pump node per tone);
:func:`cmd_calibrate` opens the lab, runs the graph with
:func:`~labnr.calibrate.cli.run_calibration` and adds the measured figures to
the ``--json`` line; unless ``--no-report`` it then writes the one-page PNG
report (:mod:`labnr.calibrate.report`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from labnr.calibrate.circulator import (
    FluxSweetSpot,
    LoopPhase,
    Modes,
    OperatingPoint,
    PumpTone,
)
from labnr.calibrate.cli import run_calibration
from labnr.calibrate.graph import CalibrationGraph, CalibrationInterrupted, GraphReport
from labnr.calibrate.node import CalibrationContext
from labnr.calibrate.state import CalibrationState

__all__ = ["build_graph", "calibrate", "cmd_calibrate", "dry_run", "summary"]


def build_graph(config: Any) -> CalibrationGraph:
    """The calibration graph of the device described by ``config``."""
    nodes: list[Any] = []
    tunable = [m for m, c in config.modes.items() if c.flux_tunable and c.vna_port]
    modes = Modes()
    if config.flux is not None and config.instruments.flux and tunable:
        nodes.append(FluxSweetSpot())
    else:
        modes.depends_on = ()
    nodes.append(modes)
    tones = list(config.pumps.tones)
    nodes += [PumpTone(t) for t in tones]
    nodes += [LoopPhase(tones), OperatingPoint(tones)]
    return CalibrationGraph(nodes)


def summary(ctx: CalibrationContext, report: GraphReport, lab: Any) -> dict[str, Any]:
    """The measured figures after calibration (from the operating point's run or check)."""
    state = ctx.state
    out: dict[str, Any] = {"acquisitions": ctx.acquisitions}
    meas, op = None, None
    if "operating_point" in state:
        op = state.result("operating_point")
        meas = op.get("measured")
        node = next((n for n in report.nodes if n.name == "operating_point"), None)
        if node is not None and node.status == "skipped" and node.check:
            meas = node.check.get("data", meas) or meas
    for key in ("isolation_db", "insertion_loss_db", "reflection_db"):
        out[key] = None if meas is None else meas.get(key)
    out["operating_point"] = (
        None if op is None else {"settings": op["settings"], "band_centres": op["band_centres"]}
    )
    vl = getattr(lab, "virtual_lab", None)
    out["virtual_time_s"] = None if vl is None else float(vl.clock.now)
    out["state_file"] = None if state.path is None else str(state.path)
    out["run_ids"] = report.run_ids
    return out


def calibrate(lab: Any, *, from_node: str | None = None, json: bool = False,
              target: str | None = None, dry_run: bool = False, reset: bool = False,
              png_report: bool = False, out: Any = None
              ) -> tuple[GraphReport, CalibrationContext]:  # fmt: skip
    """Run the graph of ``lab.config`` on an open lab session.

    With ``png_report`` the one-page report (:mod:`labnr.calibrate.report`, after a
    verification sweep counted apart) is written, its path printed and added to the
    ``--json`` line with ``report_acquisitions``.
    """
    state = CalibrationState.for_config(lab.config, reset=reset)
    ctx = CalibrationContext(state, lab=lab, config=lab.config)
    graph = build_graph(lab.config)
    made: dict[str, Any] = {}
    wanted = png_report and not dry_run

    def extra(rep: GraphReport) -> dict[str, Any]:
        figures = summary(ctx, rep, lab)
        if wanted:
            figures.update(_png_report(ctx, rep, lab, figures, made, sys.stderr))
        return figures

    try:
        report = run_calibration(
            graph, ctx, from_node, json, target=target, dry_run=dry_run, extra=extra, out=out,
        )  # fmt: skip
    except CalibrationInterrupted as exc:
        if wanted and not made:
            _png_report(ctx, exc.report, lab, summary(ctx, exc.report, lab), made, out)
        raise
    if wanted and not made:  # without --json the summary was not asked for
        _png_report(ctx, report, lab, summary(ctx, report, lab), made, out)
    if report.exit_code != 0 and not dry_run and hasattr(lab, "station"):
        from labnr.safety import safe_state

        safe_state(lab)  # a failed node leaves no pump on (flux held)
    return report, ctx


def _png_report(ctx: CalibrationContext, rep: GraphReport, lab: Any, figures: dict[str, Any],
                made: dict[str, Any], stream: Any) -> dict[str, Any]:  # fmt: skip
    """Write the PNG report once; the keys it adds to the ``--json`` line."""
    from labnr.calibrate.report import make_report

    made.update(make_report(lab, ctx, rep, figures, sweep=rep.status == "ok"))
    print(f"report: {made['report']}", file=stream or sys.stdout, flush=True)
    keys = {k: v for k, v in made.items() if k in ("report", "report_acquisitions",
                                                     "report_error")}  # fmt: skip
    if made.get("report_run_id") is not None:
        keys["run_ids"] = [*figures.get("run_ids", []), made["report_run_id"]]
    return keys


def dry_run(config: Any, *, from_node: str | None = None, json: bool = False,
            target: str | None = None, reset: bool = False,
            out: Any = None) -> GraphReport:  # fmt: skip
    """``labnr calibrate --dry-run``: which nodes would run or be checked, from the state file.

    Honest by construction: no lab session is opened, so nothing is connected,
    measured or written — no instrument (not even a pump-off), no lab lock, no
    database, no state file (with ``reset`` the state is taken as empty in
    memory; the file is left as it is). Whether a stored result is still valid
    is what a real run's check would measure: those nodes are "would check".
    (The one write left: reading a corrupt state file keeps a backup copy of it,
    as every run does, and the command then fails.)
    """
    from labnr.calibrate.state import config_hash

    if reset:
        state = CalibrationState(config.name, config_hash(config), None)
    else:
        state = CalibrationState.for_config(config)
    ctx = CalibrationContext(state, lab=None, config=config)
    return run_calibration(build_graph(config), ctx, from_node, json, target=target,
                           dry_run=True, out=out)  # fmt: skip


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``labnr calibrate CONFIG [--from NODE] [--json] [--dry-run]``."""
    from labnr.session import open_lab

    if args.dry_run:
        from labnr.config import load_config

        report = dry_run(load_config(args.config), from_node=args.from_node, json=args.json,
                         target=args.target, reset=args.reset_state)  # fmt: skip
        print("dry run: nothing was connected, measured or written", file=sys.stderr)
        return report.exit_code
    with open_lab(args.config) as lab:
        report, _ = calibrate(
            lab, from_node=args.from_node, json=args.json, target=args.target,
            reset=args.reset_state, png_report=not getattr(args, "no_report", False),
        )  # fmt: skip
    return report.exit_code
