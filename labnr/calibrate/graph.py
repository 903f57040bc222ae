"""The calibration graph: a DAG of nodes, run in dependency order, skipping what is valid.

:meth:`CalibrationGraph.run` walks the nodes (up to ``target``) in dependency
order and runs a node if it was forced (``force_from`` and its descendants), if
a dependency ran again or changed since the node's result, if it has no stored
result, if the result is older than ``max_age``, or if its check fails;
otherwise it skips it. Each result is saved to the
:class:`~labnr.calibrate.state.CalibrationState` file as soon as the node
finishes, so an interrupted calibration resumes from the last finished node.

A check that raises an instrument fault (:func:`is_instrument_fault`: an
``InstrumentFault``, a ``PNAError``, a VISA or storage error) fails its node
without running it — the lab's ``safe_state()`` is applied and the graph stops
— since a measurement from a faulty instrument must not trigger a full re-run
(a flux sweep, say). A check that returns invalid, or raises any other error,
leads to the node running as before.

A failed node (an exception, or ``NodeResult.failure``) stops the graph: its
previous result stays, the failure is recorded beside it, and the nodes after
it are reported "not run". Ctrl-C stops it the same way (the node is reported
"interrupted", nothing is recorded as a failure), saves the state and
re-raises as :class:`CalibrationInterrupted`, a ``KeyboardInterrupt`` that
carries the :class:`GraphReport`.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from labnr.calibrate.node import (
    CalibrationContext,
    CheckResult,
    GraphError,
    Node,
    NodeResult,
    _CheckFault,
    is_instrument_fault,
)
from labnr.calibrate.state import CalibrationState, to_plain
from labnr.lablock import describe_storage_error

__all__ = [
    "CalibrationGraph",
    "CalibrationInterrupted",
    "GraphReport",
    "NodeReport",
    "Status",
]

Status = Literal["ran", "skipped", "failed", "interrupted", "not run", "would run", "would check"]


class CalibrationInterrupted(KeyboardInterrupt):
    """Ctrl-C during a calibration; ``report`` says what ran. The state file is saved."""

    def __init__(self, report: GraphReport) -> None:
        super().__init__(report.reason)
        self.report = report


@dataclass
class NodeReport:
    """What happened to one node in one :meth:`CalibrationGraph.run`."""

    name: str
    status: Status = "not run"
    reason: str = ""
    duration_s: float = 0.0
    acquisitions: int = 0
    summary: str = ""
    run_ids: list[int | str] = field(default_factory=list)
    check: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        d = dict(vars(self))
        d["duration_s"] = round(self.duration_s, 4)
        return to_plain(d, self.name)


@dataclass
class GraphReport:
    """The outcome of one :meth:`CalibrationGraph.run`, node by node, in run order."""

    nodes: list[NodeReport] = field(default_factory=list)
    status: Literal["ok", "failed", "interrupted"] = "ok"
    reason: str = ""
    failed_node: str | None = None
    duration_s: float = 0.0
    state_file: str | None = None
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True when no node failed or was interrupted."""
        return self.status == "ok"

    @property
    def exit_code(self) -> int:
        """0 (ok), 1 (a node failed) or 130 (interrupted), for the CLI."""
        return {"ok": 0, "failed": 1, "interrupted": 130}[self.status]

    @property
    def acquisitions(self) -> int:
        """VNA acquisitions of all nodes (checks included)."""
        return sum(n.acquisitions for n in self.nodes)

    @property
    def run_ids(self) -> list[int | str]:
        """Every dataset the nodes wrote, in order, without repeats."""
        return list(dict.fromkeys(r for n in self.nodes for r in n.run_ids))

    def __getitem__(self, name: str) -> NodeReport:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"node {name!r} is not in this report ({[n.name for n in self.nodes]})")

    def count(self, status: Status) -> int:
        """How many nodes ended with ``status``."""
        return sum(n.status == status for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "status": self.status,
            "reason": self.reason,
            "failed_node": self.failed_node,
            "acquisitions": self.acquisitions,
            "duration_s": round(self.duration_s, 4),
            "state_file": self.state_file,
            "dry_run": self.dry_run,
            "run_ids": to_plain(self.run_ids),
            "nodes": [n.to_dict() for n in self.nodes],
        }

    def format(self) -> str:
        """A table for people: one line per node."""
        counts = ", ".join(
            f"{self.count(s)} {s}"
            for s in (
                "ran",
                "skipped",
                "failed",
                "interrupted",
                "not run",
                "would run",
                "would check",
            )
            if self.count(s)
        )
        head = (
            f"calibration {self.status}{' (dry run)' if self.dry_run else ''}: {counts}; "
            f"{self.acquisitions} acquisitions in {self.duration_s:.1f} s"
        )
        lines = [head] + ([f"  {self.reason}"] if self.reason else [])
        width = max([len(n.name) for n in self.nodes] + [4])
        for n in self.nodes:
            text = "; ".join(t for t in (n.summary, n.reason) if t)
            lines.append(
                f"  {n.name:<{width}}  {n.status:<11} {n.duration_s:7.1f} s "
                f"{n.acquisitions:4d} acq  {text}"
            )
        if self.state_file:
            lines.append(f"state: {self.state_file}")
        return "\n".join(lines)


class _Interrupted(Exception):
    def __init__(self, report: NodeReport) -> None:
        self.report = report


class CalibrationGraph:
    """A DAG of calibration nodes.

    Parameters
    ----------
    nodes
        The nodes; names must be unique and every dependency must be one of them.

    Raises
    ------
    GraphError
        Listing every duplicate name, unknown dependency and dependency cycle.
    """

    def __init__(self, nodes: Iterable[Node]) -> None:
        self._nodes: dict[str, Node] = {}
        problems = []
        for n in nodes:
            if not isinstance(n, Node):
                problems.append(f"{n!r} is not a Node (define it with @node or subclass Node)")
            elif not n.name or not isinstance(n.name, str):
                problems.append(f"{n!r} has no name")
            elif n.name in self._nodes:
                problems.append(f"two nodes are named {n.name!r}")
            else:
                self._nodes[n.name] = n
        for n in self._nodes.values():
            for d in n.depends_on:
                if d not in self._nodes:
                    close = difflib.get_close_matches(d, list(self._nodes), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    problems.append(
                        f"node {n.name!r} depends on unknown node {d!r}{hint}; "
                        f"nodes are {sorted(self._nodes)}"
                    )
        if problems:
            raise GraphError("invalid calibration graph: " + "; ".join(problems))
        self._order = self._toposort()
        self._ancestors: dict[str, frozenset[str]] = {}
        for name in self._order:
            up: set[str] = set()
            for d in self._nodes[name].depends_on:
                up |= {d} | self._ancestors[d]
            self._ancestors[name] = frozenset(up)

    def _toposort(self) -> list[str]:
        """Dependency order; among ready nodes, the order they were given in."""
        order: list[str] = []
        left = dict(self._nodes)
        while left:
            ready = [n for n, nd in left.items() if all(d not in left for d in nd.depends_on)]
            if not ready:
                raise GraphError(f"dependency cycle in the calibration graph: {self._cycle(left)}")
            order.append(ready[0])
            del left[ready[0]]
        return order

    @staticmethod
    def _cycle(left: Mapping[str, Node]) -> str:
        path = [next(iter(left))]
        while True:
            nxt = next(d for d in left[path[-1]].depends_on if d in left)
            if nxt in path:
                cyc = path[path.index(nxt) :] + [nxt]
                return " -> ".join(repr(c) for c in cyc) + " (each depends on the next)"
            path.append(nxt)

    # -- structure -----------------------------------------------------------------------
    @property
    def order(self) -> list[str]:
        """Node names in dependency order."""
        return list(self._order)

    def __getitem__(self, name: str) -> Node:
        self._require(name)
        return self._nodes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[Node]:
        return (self._nodes[n] for n in self._order)

    def __len__(self) -> int:
        return len(self._nodes)

    def ancestors(self, name: str) -> frozenset[str]:
        """Every node ``name`` depends on, directly or not."""
        self._require(name)
        return self._ancestors[name]

    def descendants(self, name: str) -> frozenset[str]:
        """Every node that depends on ``name``, directly or not."""
        self._require(name)
        return frozenset(n for n in self._order if name in self._ancestors[n])

    def _require(self, name: str, what: str = "node") -> None:
        if name not in self._nodes:
            close = difflib.get_close_matches(str(name), self._order, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GraphError(f"unknown {what} {name!r}{hint}; nodes are {self._order}")

    # -- running -------------------------------------------------------------------------
    def run(
        self,
        ctx: CalibrationContext,
        target: str | None = None,
        force_from: str | None = None,
        dry_run: bool = False,
    ) -> GraphReport:
        """Bring the nodes up to ``target`` (default: all) up to date.

        Parameters
        ----------
        ctx
            The context (its ``state`` is read and written).
        target
            Only this node and its ancestors.
        force_from
            Run this node and all its descendants whatever their state.
        dry_run
            Measure nothing: report which nodes would run and which would be checked.

        Returns
        -------
        GraphReport
            Per node: status, reason, duration, acquisitions, summary.

        Raises
        ------
        GraphError
            Unknown ``target``/``force_from``, or ``force_from`` not upstream of ``target``.
        CalibrationInterrupted
            On Ctrl-C, after saving the state; carries the report.
        """
        selected = set(self._order)
        if target is not None:
            self._require(target, "target node")
            selected = {target} | self._ancestors[target]
        forced: set[str] = set()
        if force_from is not None:
            self._require(force_from, "node for --from")
            if force_from not in selected:
                raise GraphError(
                    f"--from {force_from!r} is not {target!r} or one of the nodes it depends on "
                    f"({sorted(selected)})"
                )
            forced = ({force_from} | self.descendants(force_from)) & selected
        report = GraphReport(dry_run=dry_run, state_file=_path_str(ctx.state))
        start = time.perf_counter()
        rerun: set[str] = set()
        try:
            for name in (n for n in self._order if n in selected):
                if report.status != "ok":
                    report.nodes.append(self._not_run(name, report))
                    continue
                why = f"forced (--from {force_from})" if name in forced else None
                rep = self._visit(name, ctx, why, rerun, dry_run)
                report.nodes.append(rep)
                if rep.status in ("ran", "would run"):
                    rerun.add(name)
                elif rep.status == "failed":
                    report.status, report.failed_node = "failed", name
                    report.reason = f"node {name!r} failed: {rep.reason}"
        except _Interrupted as exc:
            report.nodes.append(exc.report)
            report.status, report.failed_node = "interrupted", exc.report.name
            report.reason = f"interrupted ({exc.report.reason.split(' during ')[0]}) in node " \
                            f"{exc.report.name!r}"
            done = {n.name for n in report.nodes}
            report.nodes += [
                self._not_run(n, report) for n in self._order if n in selected and n not in done
            ]
            report.duration_s = time.perf_counter() - start
            if not dry_run:
                ctx.state.save()
            ctx.log.warning("calibration %s; state saved", report.reason)
            raise CalibrationInterrupted(report) from exc.__cause__
        report.duration_s = time.perf_counter() - start
        (ctx.log.info if report.ok else ctx.log.error)(
            "calibration %s: %d ran, %d skipped, %d acquisitions%s",
            report.status,
            report.count("ran"),
            report.count("skipped"),
            report.acquisitions,
            f"; {report.reason}" if report.reason else "",
        )
        return report

    def _not_run(self, name: str, report: GraphReport) -> NodeReport:
        failed = report.failed_node
        assert failed is not None
        what = "failed" if report.status == "failed" else "was interrupted"
        if name in self.descendants(failed):
            return NodeReport(name, "not run", f"dependency {failed!r} {what}")
        return NodeReport(name, "not run", f"calibration stopped: {failed!r} {what}")

    def _visit(
        self,
        name: str,
        ctx: CalibrationContext,
        forced: str | None,
        rerun: set[str],
        dry_run: bool,
    ) -> NodeReport:
        """Decide, check and/or run one node."""
        rep = NodeReport(name)
        ctx._enter(name, self._ancestors[name] | {name})
        start = time.perf_counter()
        phase = "deciding"
        try:
            reason = forced or self._stale(name, ctx, rerun, dry_run)
            if reason is None:
                if dry_run:
                    rep.status, rep.reason = "would check", "stored result; check would decide"
                    return rep
                phase = "check"
                try:
                    chk = self._check(name, ctx, rep)
                except _CheckFault as fault:
                    self._check_fault(name, ctx, rep, fault)
                    return rep
                if chk.valid:
                    rep.status, rep.reason = "skipped", f"valid: {chk.reason}".rstrip(": ")
                    ctx.log.info("%s: skipped (%s)", name, rep.reason)
                    return rep
                reason = f"check: {chk.reason}" if chk.reason else "check failed"
            if dry_run:
                rep.status, rep.reason = "would run", reason
                return rep
            phase = "run"
            self._run(name, ctx, rep, reason)
            return rep
        except KeyboardInterrupt as exc:
            what = "SIGTERM" if type(exc).__name__ == "Terminated" else "Ctrl-C"
            rep.status, rep.reason = "interrupted", f"{what} during {phase}"
            raise _Interrupted(rep) from exc
        finally:
            rep.duration_s = time.perf_counter() - start
            rep.acquisitions = ctx._node_acquisitions
            ctx._leave()

    def _stale(
        self, name: str, ctx: CalibrationContext, rerun: set[str], dry_run: bool
    ) -> str | None:
        """Why ``name`` must run without checking, or ``None`` if its check decides."""
        nd = self._nodes[name]
        rec = ctx.state.get(name)
        if rec is None:
            return "no stored result"
        again = [d for d in nd.depends_on if d in rerun]
        if again:
            return f"dependency {'would re-run' if dry_run else 're-run'}: {', '.join(again)}"
        changed = [d for d in nd.depends_on if rec.inputs.get(d) != _revision(ctx.state, d)]
        if changed:
            return f"dependency changed since this result: {', '.join(changed)}"
        if nd.max_age is not None:
            age = (ctx.now() - rec.timestamp).total_seconds()
            if age > nd.max_age:
                return f"result expired: {_duration(age)} old (max_age {_duration(nd.max_age)})"
        return None

    def _check(self, name: str, ctx: CalibrationContext, rep: NodeReport) -> CheckResult:
        """Run the node's check; a check that raises counts as invalid, except an
        instrument or storage fault, which is raised as :class:`_CheckFault`."""
        try:
            chk = self._nodes[name].check(ctx)
            if isinstance(chk, bool):
                chk = CheckResult(chk)
            if not isinstance(chk, CheckResult):
                raise TypeError(f"check() returned {type(chk).__name__}, expected CheckResult")
            ctx.state.record_check(name, chk.valid, chk.reason, chk.data, now=ctx.now())
        except Exception as exc:  # noqa: BLE001 - a broken check means: measure again ...
            if is_instrument_fault(exc):  # ... unless the lab itself failed: stop safely
                raise _CheckFault(_error(exc, ctx)) from exc
            ctx.log.warning("%s: check raised %s; running the node", name, _error(exc))
            chk = CheckResult.invalid(f"check raised {_error(exc)}")
        rep.run_ids += [r for r in chk.run_ids if r not in rep.run_ids]
        rep.check = {
            "valid": chk.valid,
            "reason": chk.reason,
            "data": dict(chk.data),
            "acquisitions": ctx._node_acquisitions,
        }
        return chk

    def _check_fault(self, name: str, ctx: CalibrationContext, rep: NodeReport,
                     fault: _CheckFault) -> None:  # fmt: skip
        """A check that raised an instrument fault: the node fails, unrun; safe state."""
        safe = getattr(ctx.lab, "safe_state", None)
        if callable(safe):
            try:
                safe()
            except Exception:  # noqa: BLE001 - safe_state never raises; a fake lab might
                ctx.log.exception("%s: safe state after the check's fault failed", name)
        rep.status = "failed"
        rep.reason = f"check failed with an instrument fault, node not run: {fault}"
        ctx.log.error("%s: %s", name, rep.reason)
        ctx.log.debug("%s: traceback", name, exc_info=fault)
        ctx.state.record_failure(name, rep.reason, now=ctx.now())

    def _run(self, name: str, ctx: CalibrationContext, rep: NodeReport, reason: str) -> None:
        """Run the node and store its result, or record its failure."""
        nd = self._nodes[name]
        ctx.log.info("%s: running (%s)", name, reason)
        start = time.perf_counter()
        if nd.timeout is not None:
            ctx._deadline = (start, float(nd.timeout))
        try:
            res = _as_result(nd.run(ctx))
            if res.failed:
                raise _NodeFailed(res.reason or "the node reported a failure")
            run_ids = list(dict.fromkeys([*res.run_ids, *ctx._run_ids]))
            ctx.state.set(
                name,
                res.result,
                run_ids=run_ids,
                summary=res.summary,
                duration_s=time.perf_counter() - start,
                acquisitions=ctx._node_acquisitions,
                inputs={d: r for d in nd.depends_on if (r := _revision(ctx.state, d)) is not None},
                now=ctx.now(),
            )
        except Exception as exc:  # noqa: BLE001 - any error fails the node, not the program
            msg = str(exc) if isinstance(exc, _NodeFailed) else _error(exc, ctx)
            rep.status, rep.reason = "failed", msg
            rep.run_ids += [r for r in ctx._run_ids if r not in rep.run_ids]
            ctx.log.error("%s: failed: %s", name, msg)
            ctx.log.debug("%s: traceback", name, exc_info=True)
            ctx.state.record_failure(name, msg, now=ctx.now())
            return
        elapsed = time.perf_counter() - start
        if nd.timeout is not None and elapsed > nd.timeout:
            reason += f"; took {elapsed:.1f} s, over its {nd.timeout:g} s timeout"
            ctx.log.warning("%s: took %.1f s, over its %g s timeout", name, elapsed, nd.timeout)
        rep.status, rep.reason, rep.summary = "ran", reason, res.summary
        rep.run_ids += [r for r in run_ids if r not in rep.run_ids]
        ctx.log.info("%s: done in %.1f s: %s", name, elapsed, res.summary)


class _NodeFailed(Exception):
    """A node returned ``NodeResult.failure(...)``."""


def _as_result(out: Any) -> NodeResult:
    if isinstance(out, NodeResult):
        return out
    if isinstance(out, Mapping):
        return NodeResult(dict(out))
    raise TypeError(f"run() returned {type(out).__name__}, expected NodeResult (or a dict)")


def _revision(state: CalibrationState, node: str) -> int | None:
    rec = state.get(node)
    return None if rec is None else rec.revision


def _error(exc: BaseException, ctx: CalibrationContext | None = None) -> str:
    """One line for ``exc``; a storage failure names the path (the lab's database)."""
    database = getattr(getattr(ctx, "lab", None), "database", None)
    storage = describe_storage_error(exc, database)
    if storage is not None:
        return storage
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if abs(seconds) >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _path_str(state: CalibrationState) -> str | None:
    return None if state.path is None else str(state.path)
