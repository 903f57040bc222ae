"""The calibration graph's logic, with fake nodes that count their checks and runs."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from labnr.calibrate import (
    CalibrationContext,
    CalibrationGraph,
    CalibrationInterrupted,
    CalibrationState,
    CheckResult,
    GraphError,
    Node,
    NodeResult,
    add_calibrate_arguments,
    node,
    run_calibration,
)

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    """A settable UTC clock (for timestamps and max_age)."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class Fake(Node):
    """A node that counts its checks and runs; behaviour set per test."""

    def __init__(self, name: str, deps: tuple[str, ...] = (), **kw: object) -> None:
        super().__init__(name, depends_on=deps, **kw)  # type: ignore[arg-type]
        self.checks = self.runs = 0
        self.valid = True
        self.fail: Exception | NodeResult | None = None
        self.interrupt = False
        self.acq_check, self.acq_run = 1, 3
        self.value = 0

    def check(self, ctx: CalibrationContext) -> CheckResult:
        self.checks += 1
        ctx.count_acquisition(self.acq_check)
        return CheckResult(self.valid, "in range" if self.valid else "drifted", {"x": 1.0})

    def run(self, ctx: CalibrationContext) -> NodeResult:
        self.runs += 1
        ctx.count_acquisition(self.acq_run)
        for d in self.depends_on:
            ctx.result(d)  # reading upstream results is allowed
        if self.interrupt:
            raise KeyboardInterrupt
        if isinstance(self.fail, Exception):
            raise self.fail
        if isinstance(self.fail, NodeResult):
            return self.fail
        self.value += 1
        return NodeResult(
            {"value": np.float64(self.value), "n": np.int64(self.runs)},
            run_ids=[f"{self.name}-{self.runs}"],
            summary=f"{self.name} v{self.value}",
        )


def chain() -> dict[str, Fake]:
    """a -> b -> c -> d, and e beside them (depends on a)."""
    return {
        "a": Fake("a"),
        "b": Fake("b", ("a",)),
        "c": Fake("c", ("b",)),
        "d": Fake("d", ("c",)),
        "e": Fake("e", ("a",)),
    }


def make_ctx(path: Path | None = None, clock: FakeClock | None = None) -> CalibrationContext:
    state = (
        CalibrationState("dev", "h1") if path is None else CalibrationState.open(path, "dev", "h1")
    )
    return CalibrationContext(state, clock=clock or FakeClock())


def counts(nodes: dict[str, Fake]) -> dict[str, tuple[int, int]]:
    return {k: (n.checks, n.runs) for k, n in nodes.items()}


def statuses(report) -> dict[str, str]:  # noqa: ANN001
    return {n.name: n.status for n in report.nodes}


def test_first_run_runs_everything_in_dependency_order() -> None:
    nodes = chain()
    ctx = make_ctx()
    report = CalibrationGraph(reversed(list(nodes.values()))).run(ctx)
    assert report.ok and report.exit_code == 0
    order = [n.name for n in report.nodes]
    assert order.index("a") < order.index("b") < order.index("c") < order.index("d")
    assert order.index("a") < order.index("e")
    assert set(statuses(report).values()) == {"ran"}
    assert all(n.reason == "no stored result" for n in report.nodes)
    assert counts(nodes) == {k: (0, 1) for k in nodes}  # nothing stored: no check
    assert ctx.state.result("c") == {"value": 1.0, "n": 1}
    assert type(ctx.state.result("c")["n"]) is int


def test_valid_nodes_are_checked_and_skipped() -> None:
    nodes = chain()
    ctx, graph = make_ctx(), CalibrationGraph(nodes.values())
    graph.run(ctx)
    report = graph.run(ctx)
    assert set(statuses(report).values()) == {"skipped"}
    assert counts(nodes) == {k: (1, 1) for k in nodes}
    assert report["b"].reason == "valid: in range"
    assert report["b"].check == {
        "valid": True,
        "reason": "in range",
        "data": {"x": 1.0},
        "acquisitions": 1,
    }
    assert ctx.state.last_check("b")["valid"] is True


def test_invalid_check_runs_the_node_and_its_descendants() -> None:
    nodes = chain()
    ctx, graph = make_ctx(), CalibrationGraph(nodes.values())
    graph.run(ctx)
    nodes["b"].valid = False
    report = graph.run(ctx)
    assert statuses(report) == {"a": "skipped", "b": "ran", "c": "ran", "d": "ran", "e": "skipped"}
    assert report["b"].reason == "check: drifted"
    assert report["c"].reason == "dependency re-run: b"
    # descendants of a re-run node are not checked: they must run anyway
    assert counts(nodes) == {"a": (1, 1), "b": (1, 2), "c": (0, 2), "d": (0, 2), "e": (1, 1)}


def test_force_from_forces_the_node_and_its_descendants_only() -> None:
    nodes = chain()
    ctx, graph = make_ctx(), CalibrationGraph(nodes.values())
    graph.run(ctx)
    report = graph.run(ctx, force_from="c")
    assert statuses(report) == {
        "a": "skipped",
        "b": "skipped",
        "c": "ran",
        "d": "ran",
        "e": "skipped",
    }
    assert report["c"].reason == "forced (--from c)"
    assert counts(nodes)["c"] == (0, 2) and counts(nodes)["d"] == (0, 2)


def test_failing_node_stops_keeps_results_and_records_the_failure() -> None:
    nodes = chain()
    clock = FakeClock()
    ctx, graph = make_ctx(clock=clock), CalibrationGraph(nodes.values())
    graph.run(ctx)
    good_c = ctx.state.get("c")
    clock.advance(60)
    nodes["b"].valid = False
    nodes["c"].fail = RuntimeError("fit did not converge")
    report = graph.run(ctx)
    assert not report.ok and report.exit_code == 1
    assert report.failed_node == "c"
    assert report.reason == "node 'c' failed: RuntimeError: fit did not converge"
    assert statuses(report) == {
        "a": "skipped",
        "b": "ran",
        "c": "failed",
        "d": "not run",
        "e": "not run",
    }
    assert report["d"].reason == "dependency 'c' failed"
    assert report["e"].reason == "calibration stopped: 'c' failed"
    assert nodes["d"].runs == 1 and nodes["e"].checks == 0  # neither touched
    assert ctx.state.result("b")["value"] == 2.0  # earlier result of this call kept
    assert ctx.state.get("c") == good_c  # previous good result untouched
    fail = ctx.state.last_failure("c")
    assert fail == {
        "timestamp": "2025-05-01T09:01:00.000+00:00",
        "message": "RuntimeError: fit did not converge",
    }
    # next call: c is retried (its result predates b's new one), d after it
    nodes["c"].fail, nodes["b"].valid = None, True
    report = graph.run(ctx)
    assert report["c"].status == "ran"
    assert report["c"].reason == "dependency changed since this result: b"
    assert report["d"].status == "ran" and report["e"].status == "skipped"


def test_failure_result_and_bad_results_fail_the_node() -> None:
    a, b = Fake("a"), Fake("b", ("a",))
    b.fail = NodeResult.failure("resonance not found", run_ids=[7])
    ctx = make_ctx()
    report = CalibrationGraph([a, b]).run(ctx)
    assert report["b"].status == "failed" and report["b"].reason == "resonance not found"
    assert "b" not in ctx.state and ctx.state.last_failure("b")["message"] == "resonance not found"

    @node(depends_on="a")
    def complex_result(ctx: CalibrationContext) -> NodeResult:
        return NodeResult({"s21": 1 + 2j})

    report = CalibrationGraph([a, complex_result]).run(ctx)
    assert report["complex_result"].status == "failed"
    assert "complex_result.result.s21" in report["complex_result"].reason


def test_check_that_raises_counts_as_invalid() -> None:
    # an error of the check's own logic; an instrument fault (OSError, InstrumentFault, ...)
    # fails the node unrun instead: tests/calibrate/test_check_faults.py
    @node
    def a(ctx: CalibrationContext) -> NodeResult:
        return NodeResult({"v": 1})

    @a.checker
    def _(ctx: CalibrationContext) -> CheckResult:
        raise ZeroDivisionError("no points left")

    ctx = make_ctx()
    graph = CalibrationGraph([a])
    graph.run(ctx)
    report = graph.run(ctx)
    assert report["a"].status == "ran"
    assert report["a"].reason == "check: check raised ZeroDivisionError: no points left"


def test_cycles_and_unknown_dependencies_are_named() -> None:
    with pytest.raises(
        GraphError, match=r"cycle.*'a' -> 'c' -> 'b' -> 'a' \(each depends on the next\)"
    ):
        CalibrationGraph([Fake("a", ("c",)), Fake("b", ("a",)), Fake("c", ("b",)), Fake("x")])
    with pytest.raises(
        GraphError,
        match=r"node 'b' depends on unknown node 'flux_spec'.*"
        r"did you mean 'flux_spect'",
    ):
        CalibrationGraph([Fake("flux_spect"), Fake("b", ("flux_spec",))])
    with pytest.raises(GraphError, match="two nodes are named 'a'"):
        CalibrationGraph([Fake("a"), Fake("a")])
    with pytest.raises(GraphError, match="cycle.*'a' -> 'a'"):
        CalibrationGraph([Fake("a", ("a",))])
    graph = CalibrationGraph(chain().values())
    with pytest.raises(GraphError, match="unknown node for --from 'zz'"):
        graph.run(make_ctx(), force_from="zz")
    with pytest.raises(GraphError, match="--from 'e' is not 'd'"):
        graph.run(make_ctx(), target="d", force_from="e")


def test_max_age_expires_a_result_without_checking() -> None:
    a, b = Fake("a", max_age=3600), Fake("b", ("a",))
    clock = FakeClock()
    ctx, graph = make_ctx(clock=clock), CalibrationGraph([a, b])
    graph.run(ctx)
    clock.advance(3000)
    assert statuses(graph.run(ctx)) == {"a": "skipped", "b": "skipped"}
    clock.advance(1000)
    report = graph.run(ctx)
    assert report["a"].status == "ran" and a.checks == 1  # no check once expired
    assert report["a"].reason == "result expired: 1.11 h old (max_age 1 h)"
    assert report["b"].status == "ran"
    assert ctx.state.age("a", clock()) == 0.0


def test_target_runs_only_the_target_and_its_ancestors() -> None:
    nodes = chain()
    ctx = make_ctx()
    report = CalibrationGraph(nodes.values()).run(ctx, target="c")
    assert [n.name for n in report.nodes] == ["a", "b", "c"]
    assert nodes["d"].runs == nodes["e"].runs == 0
    assert sorted(ctx.state.nodes()) == ["a", "b", "c"]


def test_acquisitions_are_counted_per_node_and_in_total() -> None:
    nodes = chain()
    nodes["c"].acq_run = 10
    ctx, graph = make_ctx(), CalibrationGraph(nodes.values())
    report = graph.run(ctx)
    assert report["c"].acquisitions == 10 and report["a"].acquisitions == 3
    assert report.acquisitions == ctx.acquisitions == 4 * 3 + 10
    assert ctx.state.get("c").acquisitions == 10
    nodes["b"].valid = False
    report = graph.run(ctx)  # a, e: 1 check each; b: check + run; c, d: run
    assert report["b"].acquisitions == 1 + 3 and report["b"].check["acquisitions"] == 1
    assert report.acquisitions == 1 + 4 + 10 + 3 + 1
    assert ctx.acquisitions == 22 + 19


def test_dry_run_measures_nothing() -> None:
    nodes = chain()
    ctx, graph = make_ctx(), CalibrationGraph(nodes.values())
    graph.run(ctx, target="b")
    before = ctx.state.to_dict()
    report = graph.run(ctx, dry_run=True, force_from="b")
    assert statuses(report) == {
        "a": "would check",
        "b": "would run",
        "c": "would run",
        "d": "would run",
        "e": "would run",
    }
    assert report["e"].reason == "no stored result"
    assert report["c"].reason == "forced (--from b)"
    assert counts(nodes)["a"] == (0, 1) and report.acquisitions == 0
    assert ctx.state.to_dict() == before
    ctx.state.invalidate("a", "flux jump")
    report = graph.run(ctx, dry_run=True, target="b")
    assert statuses(report) == {"a": "would run", "b": "would run"}
    assert report["b"].reason == "dependency would re-run: a"
    assert counts(nodes)["a"] == (0, 1)


def test_reading_an_undeclared_result_fails_the_node() -> None:
    @node(depends_on=())
    def sneaky(ctx: CalibrationContext) -> NodeResult:
        return NodeResult({"f": ctx.result("a")["value"]})

    report = CalibrationGraph([Fake("a"), sneaky]).run(make_ctx())
    assert report["sneaky"].status == "failed"
    assert "add 'a' to its depends_on" in report["sneaky"].reason


def test_timeout_is_enforced_at_acquisitions() -> None:
    @node(timeout=0.0)
    def slow(ctx: CalibrationContext) -> NodeResult:
        ctx.count_acquisition()
        return NodeResult({})

    report = CalibrationGraph([slow]).run(make_ctx())
    assert report["slow"].status == "failed"
    assert report["slow"].reason.startswith("NodeTimeout: node 'slow' exceeded its timeout of 0 s")


def test_interrupt_saves_finished_nodes_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "calibration_dev.yaml"
    nodes = chain()
    nodes["c"].interrupt = True
    graph = CalibrationGraph(nodes.values())
    with pytest.raises(CalibrationInterrupted) as info:
        graph.run(make_ctx(path))
    assert isinstance(info.value, KeyboardInterrupt)
    report = info.value.report
    assert report.status == "interrupted" and report.exit_code == 130
    assert statuses(report) == {
        "a": "ran",
        "b": "ran",
        "c": "interrupted",
        "d": "not run",
        "e": "not run",
    }
    assert report["c"].reason == "Ctrl-C during run" and report["c"].acquisitions == 3
    assert report["d"].reason == "dependency 'c' was interrupted"
    # a fresh process: nodes a and b were saved; c has no result and no failure
    state = CalibrationState.open(path, "dev", "h1")
    assert state.nodes() == ["a", "b"] and state.last_failure("c") is None
    nodes["c"].interrupt = False
    report = graph.run(CalibrationContext(state, clock=FakeClock()))
    assert statuses(report) == {"a": "skipped", "b": "skipped", "c": "ran", "d": "ran", "e": "ran"}
    assert nodes["a"].runs == nodes["b"].runs == 1


def test_report_lists_run_ids_and_serialises() -> None:
    nodes = chain()
    ctx = make_ctx()
    report = CalibrationGraph(nodes.values()).run(ctx)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["status"] == "ok" and d["acquisitions"] == 15
    assert d["run_ids"] == ["a-1", "b-1", "c-1", "d-1", "e-1"]
    assert d["nodes"][0]["name"] == "a" and d["nodes"][0]["summary"] == "a v1"
    text = report.format()
    assert "calibration ok: 5 ran" in text and "a v1" in text


def test_node_styles_and_record_run() -> None:
    class FluxSpectroscopy(Node):
        def run(self, ctx: CalibrationContext) -> NodeResult:
            ctx.record_run(41)
            return NodeResult({"i0": 1.37e-4}, run_ids=[40], summary="sweet spot")

    @node(depends_on=("flux_spectroscopy",), max_age=60)
    def modes(ctx: CalibrationContext) -> dict:
        """Characterise the modes."""
        return {"f_a": ctx.result("flux_spectroscopy")["i0"] * 1e13}

    assert FluxSpectroscopy().name == "flux_spectroscopy"
    assert modes.name == "modes" and modes.max_age == 60 and modes.__doc__
    ctx = make_ctx()
    report = CalibrationGraph([FluxSpectroscopy(), modes]).run(ctx)
    assert report.ok and ctx.state.get("flux_spectroscopy").run_ids == [40, 41]
    assert ctx.state.result("modes") == {"f_a": pytest.approx(1.37e9)}


def test_run_calibration_prints_table_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    nodes = chain()
    graph, ctx = CalibrationGraph(nodes.values()), make_ctx()
    out = io.StringIO()
    extra = lambda r: {"isolation_db": float("inf"), "n": len(r.nodes)}  # noqa: E731
    report = run_calibration(graph, ctx, json=True, out=out, extra=extra)
    last = json.loads(out.getvalue().strip().splitlines()[-1])
    assert last["isolation_db"] is None and last["n"] == 5 and last["acquisitions"] == 15
    assert "calibration ok" in capsys.readouterr().err
    out = io.StringIO()
    report = run_calibration(graph, ctx, from_node="d", out=out)
    assert report["d"].status == "ran" and "calibration ok" in out.getvalue()
    nodes["a"].interrupt, nodes["a"].valid = True, False
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run_calibration(graph, ctx, json=True, out=out)
    assert json.loads(out.getvalue().splitlines()[-1])["status"] == "interrupted"


def test_calibrate_arguments() -> None:
    parser = add_calibrate_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["cfg.yaml", "--from", "pump_ab", "--json"])
    assert (args.config, args.from_node, args.json) == ("cfg.yaml", "pump_ab", True)
    assert not args.dry_run and not args.reset_state and args.target is None
