"""The ``labnr calibrate`` command's hook: its arguments, and running and reporting a graph.

The CLI builds the lab session, the state and the graph, then calls
:func:`run_calibration`; see its docstring for the output contract.
"""

from __future__ import annotations

import argparse
import json as _json
import logging
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from labnr.calibrate.graph import CalibrationGraph, CalibrationInterrupted, GraphReport, _error
from labnr.calibrate.node import CalibrationContext
from labnr.calibrate.state import to_plain

__all__ = ["add_calibrate_arguments", "run_calibration"]


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``labnr calibrate`` to ``parser`` (a subcommand parser)."""
    parser.add_argument("config", metavar="CONFIG", help="experiment config YAML")
    parser.add_argument(
        "--from",
        dest="from_node",
        metavar="NODE",
        help="run NODE and every node downstream of it again",
    )
    parser.add_argument(
        "--target", metavar="NODE", help="calibrate only NODE and the nodes it depends on"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object as the last line on stdout"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show which nodes would run or be checked, from the state file; connect, "
        "measure and write nothing",
    )
    parser.add_argument(
        "--reset-state",
        action="store_true",
        help="start from an empty calibration state (the old file is kept as a backup)",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="write no PNG report (and make no verification sweep after the calibration)",
    )
    return parser


def run_calibration(
    graph: CalibrationGraph,
    ctx: CalibrationContext,
    from_node: str | None = None,
    json: bool = False,
    *,
    target: str | None = None,
    dry_run: bool = False,
    extra: Callable[[GraphReport], Mapping[str, Any]] | None = None,
    out: TextIO | None = None,
) -> GraphReport:
    """Run the graph and print its report (the body of ``labnr calibrate``).

    Without ``json`` the table goes to ``out`` (stdout); with it the table goes
    to stderr and one JSON object, :meth:`GraphReport.to_dict` updated with
    ``extra(report)`` (e.g. the measured isolation), is the last line on ``out``.
    On Ctrl-C the report is printed likewise and the interrupt re-raised.

    Returns
    -------
    GraphReport
        Its ``exit_code`` is the command's exit status.
    """
    out = out or sys.stdout
    try:
        report = graph.run(ctx, target=target, force_from=from_node, dry_run=dry_run)
    except CalibrationInterrupted as exc:
        _emit(exc.report, json, extra, out, ctx.log)
        raise
    _emit(report, json, extra, out, ctx.log)
    return report


def _emit(
    report: GraphReport,
    as_json: bool,
    extra: Callable[[GraphReport], Mapping[str, Any]] | None,
    out: TextIO,
    log: logging.Logger,
) -> None:
    if not as_json:
        print(report.format(), file=out, flush=True)
        return
    print(report.format(), file=sys.stderr, flush=True)
    payload = report.to_dict()
    if extra is not None:
        try:
            payload.update(to_plain(dict(extra(report)), "extra"))
        except Exception as exc:  # noqa: BLE001 - the calibration's JSON must still come out
            log.error("calibration summary failed: %s", _error(exc))
            payload["summary_error"] = _error(exc)
    print(_json.dumps(_finite(payload)), file=out, flush=True)


def _finite(value: Any) -> Any:
    """NaN and infinities become ``null`` (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
