"""Hostile matrix: labnr attacked as a hostile user or a dying lab would (issue #12).

Run: ``python benchmarks/bench_hostile.py [--quick] [--only PATTERN] [--seed N]
[--out FOLDER]``.

Every cell serves a fresh virtual lab as a SEPARATE real-time process
(``labnr sim serve jpc_circulator --realtime``; the emulated instruments
outlive a killed labnr, as real ones do), puts a tampering proxy
(:class:`labnr.sim.proxy.TamperProxy`) in front of each instrument, writes a
``simulate: false`` config and a station file into the cell's folder, and
runs one labnr entry point as a child process: ``labnr calibrate``,
``labnr lock``, ``experiments/pump_phase_sweep.py`` or a user's script
calling :func:`labnr.session.open_lab`. The attacks: a pump source or the
VNA replaced by another instrument (station addresses swapped, also with
``--dry-run``), a dead VNA with pumps left on, lying read-backs (GS200 level
+50 uA), late replies after the VISA timeout, dropped trace replies, a fault
during the calibration's checks, symlinks planted where exports go, a new
database over an old data_dir, a locked database, an unwritable output
folder, two processes on one lab, YAML bombs and out-of-range config values,
kill -9 at random moments (then the next start), SIGTERM and SIGINT at
random moments of every entry point.

Checks, all measured from outside labnr (hostile/checks.py):

- flux: the GS200 emulator's own output history (``SIMulation:APPLied?``):
  largest step (jump, segment or program step) <= max_step, output still on;
- pumps: polled straight from the emulators: off within 2 s of any abnormal
  exit and staying off; after kill -9, the next start switches them off
  before it writes anything to another instrument;
- lost: VNA trace replies that reached labnr (proxy log) while a run was open
  (the database's own run start/completion times) but are not stored in that
  run, allowing the one point in flight per stopped process; lock-log rows
  must cover every lock read but those of the last few seconds before a kill
  (traces of check sweeps outside any run are counted, not required stored);
- stray: files created/changed/removed in the cell's tree outside the storage
  folder and the lab lock folder ($LABNR_LOCK_DIR, set per cell; lock files only);
- tb: ``Traceback`` on stdout/stderr;
- extra: per attack (no VNA power above -10 dBm written, flux held, config
  refused before connecting and fast, earlier exports kept, a second process
  refused without writing, no hung exit; after a restart no run left
  incomplete and no temporary file left).

Prints the table and ``N cells, M safe``; exits 1 if a cell is unsafe.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile.cells import Cell, matrix  # noqa: E402
from hostile.run import PUMPS_OFF_WITHIN, Context, Result, run_cell  # noqa: E402


def _fmt_s(value: float | None) -> str:
    if value is None or value == float("inf"):
        return "never"
    return f"{value:.1f}s"


def row(r: Result) -> str:
    """One table row: each check's verdict with its measured value."""
    flux = f"{'ok' if r.flux_ok else 'FAIL'} {r.max_step * 1e6:.1f}/{r.step_limit * 1e6:.0f}uA"
    if not r.flux_on:
        flux += " OFF"
    pumps = f"{'ok' if r.pumps_ok else 'FAIL'} {_fmt_s(r.pumps_s)}"
    if r.cell.restart:
        pumps += "@re"  # at the next start, before it writes to another instrument
    lost = f"{'ok' if r.lost == 0 else 'FAIL'} {r.lost}"
    stray = f"{'ok' if not r.stray else 'FAIL'} {len(r.stray)}"
    tb = f"{'ok' if r.tracebacks == 0 else 'FAIL'} {r.tracebacks}"
    extra = "ok" if not r.extra_fail else "FAIL " + "; ".join(r.extra_fail)
    verdict = "safe" if r.safe else "UNSAFE"
    rc = ",".join("-" if c is None else str(c) for c in r.rc)
    return (f"{r.cell.name:<22} {r.cell.attack[:46]:<46} {flux:<19} {pumps:<11} {lost:<7} "
            f"{stray:<7} {tb:<7} {rc:<9} {verdict:<6} {extra}")  # fmt: skip


HEADER = (f"{'cell':<22} {'attack':<46} {'flux step/max':<19} {'pumps off':<11} {'lost':<7} "
          f"{'stray':<7} {'tb':<7} {'rc':<9} {'result':<6} extra")  # fmt: skip


def details(r: Result) -> list[str]:
    """Lines that explain an unsafe cell."""
    out = [f"  {r.cell.name}: rc {r.rc}, {r.duration:.1f}s, data {r.lost_how}; last line: "
           f"{r.last_line!r}"]  # fmt: skip
    if r.stray:
        out.append(f"    stray: {r.stray[:6]}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the matrix, print the table; 1 if any cell is unsafe."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer random moments and config cells")
    p.add_argument("--only", default=None,
                   help="only cells matching these comma-separated globs (and their references)")
    p.add_argument("--seed", type=int, default=12, help="seed of the random moments")
    p.add_argument("--out", default=None, help="keep the cell folders here (default: a temp dir)")
    p.add_argument("--lock-duration", default="25s", help="labnr lock --duration of lock cells")
    p.add_argument("--jobs", type=int, default=2, help="cells run at once (each has its own lab)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    cells = matrix(args.quick, rng)
    if args.only:
        globs = args.only.split(",")
        keep = [c for c in cells if any(fnmatch.fnmatch(c.name, g) for g in globs)]
        needed = {"base-" + c.entry.split("-")[0] for c in keep
                  if c.frac is not None or c.disk_full}  # fmt: skip
        needed |= {"base-calibrate"} if any(c.state for c in keep) else set()
        cells = [c for c in cells if c.name in needed and c not in keep] + keep
    with tempfile.TemporaryDirectory(prefix="labnr_hostile_") as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        ctx = Context(root, lock_duration=args.lock_duration)
        return _run_all(cells, ctx, max(1, args.jobs))


def _one(cell: Cell, ctx: Context) -> Result:
    try:
        return run_cell(cell, ctx)
    except Exception as exc:  # the harness itself failed: the cell is not shown safe
        r = Result(cell, step_limit=0.0)
        r.extra_fail.append(f"harness: {type(exc).__name__}: {exc}"[:120])
        r.max_step = float("nan")
        return r


def _run_all(cells: list[Cell], ctx: Context, jobs: int) -> int:
    t0 = time.monotonic()
    print(f"hostile matrix: {len(cells)} cells, {jobs} at a time; pumps must read off within "
          f"{PUMPS_OFF_WITHIN:g} s of an abnormal exit", flush=True)  # fmt: skip
    done: dict[str, Result] = {}
    first = [c for c in cells if c.name == "base-calibrate"]
    base = [c for c in cells if c.name.startswith("base-") and c not in first]
    rest = [c for c in cells if not c.name.startswith("base-")]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        # reference runs first: the calibrated state, then every entry's clean duration
        for group in (first, base, rest):
            futures = {pool.submit(_one, c, ctx): c for c in group}
            for future in as_completed(futures):
                r = future.result()
                done[r.cell.name] = r
                _learn(r.cell, r, ctx)
                print(f"[{len(done)}/{len(cells)}] {r.cell.name}: "
                      f"{'safe' if r.safe else 'UNSAFE'}", flush=True)  # fmt: skip
    results = [done[c.name] for c in cells]
    print()
    print(HEADER)
    for r in results:
        print(row(r))
    unsafe = [r for r in results if not r.safe]
    if unsafe:
        print("\nunsafe cells:")
        for r in unsafe:
            print("\n".join(details(r)))
    print("pumps off: s after the abnormal exit; @re: s into the next start (after kill -9); "
          "flux: largest step seen/max_step; rc: exit codes (run, second or restart)")
    print(f"({time.monotonic() - t0:.0f} s)")
    print(f"{len(results)} cells, {len(results) - len(unsafe)} safe")
    return 1 if unsafe else 0


def _learn(cell: Cell, r: Result, ctx: Context) -> None:
    """A reference run gives its entry's duration (random moments) and the calibrated state."""
    if not cell.name.startswith("base-"):
        return
    ctx.durations[cell.entry] = max(r.duration, 5.0)
    if cell.entry == "lock":
        ctx.durations["lock"] = max(r.duration, 5.0)
    db = ctx.root / cell.name / "files" / "storage" / "labnr.db"
    if db.is_file():
        ctx.db_sizes[cell.entry] = db.stat().st_size
    if cell.entry == "calibrate":
        data = ctx.root / cell.name / "files" / "storage" / "data"
        ctx.state_files = sorted(data.glob("calibration_*.yaml")) if data.is_dir() else []


if __name__ == "__main__":
    sys.exit(main())
