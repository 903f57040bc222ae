"""Feedback lock on the directionality condition.

The lock holds a calibrated nonreciprocal device at its operating point while
line phases, coupling strengths and mode frequencies drift. It reads the
complex reverse transmissions at band centre (:class:`ErrorSignal`), moves
the balance knobs with a Gauss–Newton step on a Jacobian that starts from
the fitted model and is refined online (:class:`LockController`), and watches
for loss of lock and the parametric instability (:class:`LockSupervisor`).
Everything is logged as a time series (:class:`LockLog`, :func:`write_qcodes`).

The lock sees the lab only through a :class:`Plant`; it never imports the
virtual lab (truth firewall).

Examples
--------
>>> from labnr.lock import ErrorSignal, LockController, LockSupervisor
>>> signal = ErrorSignal.circulator(["a", "b", "c"])        # doctest: +SKIP
>>> controller = LockController(names, jacobian)            # doctest: +SKIP
>>> summary = LockSupervisor(plant, controller, signal, reacquire).run(24 * 3600)  # doctest: +SKIP
"""

from labnr.lock.controller import (
    Command,
    ControllerSettings,
    LimitViolation,
    LockController,
    Observation,
    check_command,
    model_jacobian,
    network_elements,
)
from labnr.lock.log import EVENTS, LockLog, LogRow, write_qcodes
from labnr.lock.plant import ErrorSignal, KnobSpec, Plant, Reading, element_name
from labnr.lock.supervisor import (
    Checkpoint,
    LockSupervisor,
    Reacquire,
    Reacquisition,
    ReadScheduler,
    SupervisorSettings,
)

__all__ = [
    "EVENTS",
    "Checkpoint",
    "Command",
    "ControllerSettings",
    "ErrorSignal",
    "KnobSpec",
    "LimitViolation",
    "LockController",
    "LockLog",
    "LockSupervisor",
    "LogRow",
    "Observation",
    "Plant",
    "Reacquire",
    "Reacquisition",
    "ReadScheduler",
    "Reading",
    "SupervisorSettings",
    "check_command",
    "element_name",
    "model_jacobian",
    "network_elements",
    "write_qcodes",
]
