"""Automated calibration: a graph of calibration nodes and the persistent state.

:mod:`~labnr.calibrate.node` defines nodes, their results and the context
every node gets (start there to write one), :mod:`~labnr.calibrate.graph`
the DAG that runs them and its report, :mod:`~labnr.calibrate.state` the
per-device state file, and :mod:`~labnr.calibrate.cli` the hook of
``labnr calibrate``. The physics nodes are
built on top of them. Like every layer above the drivers, this package learns
the device only through instruments: it never imports :mod:`labnr.sim`.
"""

from labnr.calibrate.cli import add_calibrate_arguments, run_calibration
from labnr.calibrate.graph import (
    CalibrationGraph,
    CalibrationInterrupted,
    GraphReport,
    NodeReport,
)
from labnr.calibrate.node import (
    CalibrationContext,
    CheckResult,
    FunctionNode,
    GraphError,
    Node,
    NodeResult,
    NodeTimeout,
    node,
)
from labnr.calibrate.state import (
    CalibrationState,
    NodeRecord,
    StateError,
    StateFileError,
    StateMismatchError,
    config_hash,
    state_path,
)

__all__ = [
    "CalibrationContext",
    "CalibrationGraph",
    "CalibrationInterrupted",
    "CalibrationState",
    "CheckResult",
    "FunctionNode",
    "GraphError",
    "GraphReport",
    "Node",
    "NodeRecord",
    "NodeReport",
    "NodeResult",
    "NodeTimeout",
    "StateError",
    "StateFileError",
    "StateMismatchError",
    "add_calibrate_arguments",
    "config_hash",
    "node",
    "run_calibration",
    "state_path",
]
