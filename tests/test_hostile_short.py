"""Short hostile matrix: one cell of each class of benchmarks/bench_hostile.py (issue #12).

Each cell serves the virtual lab as a separate real-time process, runs a labnr
entry point against it through tampering proxies, attacks it, and measures
from outside: the GS200's own output history, the pump outputs read straight
from the emulators, the database against the traces that reached labnr, the
folder tree, and the terminal output. Every property is asserted for every
cell; a cell that fails names the check and the measured value.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from hostile.cells import BAD_VALUES, Cell, RuleSpec, _alias_bomb  # noqa: E402
from hostile.probe import LEVEL_QUERY  # noqa: E402
from hostile.run import PUMPS_OFF_WITHIN, Context, Result, run_cell  # noqa: E402

CELLS = [
    # identity: a pump's address is the GS200 (its "pump off" would switch the flux off)
    Cell("wrong-pump_ab", "pump_ab is the GS200", "sweep-short", swap=("pump_ab", "flux"),
         extra=("flux_held",)),
    # startup safe state: pumps left on by a crashed run, the VNA is dead
    Cell("dead-vna", "pumps left on; VNA dead", "sweep-short", pumps_on=True, setup="dead_vna"),
    # signals in a user's script (open_lab): SIGTERM while the pumps are on
    Cell("sigterm-user", "SIGTERM, pumps on", "user", stop="SIGTERM", trigger="pumps_on",
         at=0.5),
    # kill -9 while the pumps are on, then the next start
    Cell("kill9-sweep", "kill -9, pumps on, restart", "sweep-short", stop="kill9",
         trigger="pumps_on", at=0.5, restart=True),
    # a lying read-back: the GS200's level reads 50 uA off while the script ramps the flux
    Cell("lying-level", "GS200 level +50 uA", "sweep-flux",
         rules=(RuleSpec("flux", "rewrite", LEVEL_QUERY, ("offset", 50e-6)),)),
    # config bombs and range checks: refused fast, before any instrument is touched
    Cell("yaml-alias-bomb", "alias bomb", "calibrate", raw_config=_alias_bomb(),
         extra=("no_hardware", "fast_refusal"), timeout=30),
    Cell("cfg-vna-power", "vna power 20 dBm", "sweep-short",
         config_edit=BAD_VALUES["vna power 20 dBm"], extra=("no_hardware",), timeout=30),
    # one process per lab: a second script on the same lab is refused without writing
    Cell("two-scripts", "second process", "sweep", setup="second:sweep-short",
         extra=("exclusive",)),
    # data: symlinks planted where exports go
    Cell("symlink-part", "symlinks as run_<n>.h5(.part)", "sweep-short", setup="symlinks"),
]  # fmt: skip


def _why(r: Result) -> str:
    return (f"{r.cell.name}: flux {r.max_step * 1e6:.2f}/{r.step_limit * 1e6:.2f} uA "
            f"(output on: {r.flux_on}), pumps {r.pumps_s}, lost {r.lost} ({r.lost_how}), "
            f"stray {r.stray[:4]}, tracebacks {r.tracebacks}, extra {r.extra_fail}, "
            f"rc {r.rc}, last line {r.last_line!r}")  # fmt: skip


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """Every cell, two at a time (each has its own served lab and folder)."""
    ctx = Context(tmp_path_factory.mktemp("hostile"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c.name for c in CELLS], pool.map(lambda c: run_cell(c, ctx), CELLS),
                        strict=True))  # fmt: skip


@pytest.mark.parametrize("cell", CELLS, ids=[c.name for c in CELLS])
def test_hostile_cell_is_safe(cell: Cell, results: dict[str, Result]) -> None:
    r = results[cell.name]
    why = _why(r)
    assert r.step_limit > 0, why
    assert r.max_step <= r.step_limit * (1 + 1e-9), why  # never a step above max_step
    assert r.flux_on, why  # never switched off
    assert r.pumps_ok and r.pumps_s is not None, why  # off within 2 s / at the next start
    assert r.pumps_s <= PUMPS_OFF_WITHIN or cell.restart, why
    assert r.lost == 0, why  # every measured point is in the database
    assert r.stray == [], why  # nothing written outside the configured folders
    assert r.tracebacks == 0, why  # no traceback on the terminal
    assert r.extra_fail == [], why
    if cell.stop is not None:
        assert not any(n.startswith("trigger") for n in cell.notes), why  # the attack happened


# ---------------------------------------------------------------- the detectors themselves
def test_loss_detector_counts_unstored_run_points() -> None:
    from hostile.checks import DbContents, points_lost

    # one run open 100..200 (wall) holding 4 traces, 2 per point; 6 traces delivered in it
    db = DbContents(windows=((100.0, 200.0, 4, 2),), traces=4, per_point=2)
    traces = [110.0, 120.0, 130.0, 140.0, 150.0, 160.0]  # monotonic; to_wall 0
    assert points_lost(db, traces, [], [], [], 300.0, 5.0, 0.0)[0] == 2
    # a stop inside the run allows its one point in flight
    assert points_lost(db, traces, [], [155.0], [], 300.0, 5.0, 0.0)[0] == 0
    # a trace outside every run (a check's sweep) is not a run's point
    assert points_lost(db, [*traces[:4], 250.0], [], [], [], 300.0, 5.0, 0.0)[0] == 0
    # a killed run that a re-run completed later: only traces up to the kill are its own
    db = DbContents(windows=((100.0, 400.0, 4, 2),), traces=4, per_point=2)
    later = [*traces[:4], 350.0, 360.0]  # the re-run's, after the kill at 200
    assert points_lost(db, later, [], [200.0], [200.0], 200.0, 5.0, 0.0)[0] == 0


def test_lock_log_detector_allows_only_the_last_seconds() -> None:
    from hostile.checks import DbContents, points_lost

    db = DbContents(lock_times=(10.0, 20.0, 30.0))
    reads = [12.0, 22.0, 29.0, 33.0, 38.0]  # 33 and 38 come after the last row
    assert points_lost(db, [], reads, [40.0], [40.0], 40.0, 5.0, 0.0)[0] == 1  # 33 < 40 - 5
    assert points_lost(db, [], reads, [40.0], [40.0], 40.0, 10.0, 0.0)[0] == 0


def test_stray_detector_sees_new_changed_and_removed_files(tmp_path: Path) -> None:
    from hostile.checks import snapshot, stray_files

    (tmp_path / "storage").mkdir()
    (tmp_path / "keep.txt").write_text("a")
    (tmp_path / "gone.txt").write_text("b")
    before = snapshot(tmp_path, [tmp_path / "storage"])
    (tmp_path / "storage" / "ok.h5").write_text("inside the configured folder")
    (tmp_path / "new.txt").write_text("c")
    (tmp_path / "gone.txt").unlink()
    (tmp_path / "keep.txt").write_text("changed, longer")
    assert stray_files(before, snapshot(tmp_path, [tmp_path / "storage"])) == [
        "gone.txt", "keep.txt", "new.txt"]  # fmt: skip
