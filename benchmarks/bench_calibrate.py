"""Benchmark: the circulator calibration from cold start on many seeds, against two baselines.

Run: ``python benchmarks/bench_calibrate.py [--seeds 1-10] [--grid 41] [--nm-reads 400]``.

Per seed (``virtual_lab: {seed: N}`` in a copy of ``configs/sim_jpc_circulator.yaml``,
storage in a temporary directory), in process:

- the calibration graph (:func:`labnr.calibrate.run.calibrate`): measured isolation,
  insertion loss, VNA acquisitions and virtual time;
- baselines on the same lab (same seed and noise) from the same starting point, the
  state after the flux/modes/pump nodes (η, Stark shifts and line gains known; the
  model's operating point with loop phase 0):

  (a) grid scan of one tone's phase x a common amplitude scale (``grid`` x ``grid``),
      reverse and forward transmissions by point reads at band centre;
  (b) scipy Nelder–Mead on the sum of |S_rev| (point reads) over the three phases and
      three amplitudes, budget ``nm_reads`` reads.

  Each reports the acquisitions to first reach 40 dB isolation (None if never), and the
  final isolation (the best setting found, re-measured).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sim_jpc_circulator.yaml"
TARGET_DB = 40.0


def config_for_seed(seed: int, directory: Path) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["station"] = str(CONFIG.parent / cfg["station"])
    cfg["virtual_lab"] = {**cfg.get("virtual_lab", {}), "seed": int(seed)}
    cfg["storage"] = {"database": str(directory / "labnr.db"), "data_dir": str(directory / "data")}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Reader:
    """Point reads of the forward and reverse paths, line gains removed, counted."""

    def __init__(self, ctx: Any, centres: dict[str, float]) -> None:
        from labnr.calibrate.circulator_helpers import PointReads, line_gains

        self.fwd, self.rev = ctx.config.target.paths()
        self.gains = line_gains(ctx)
        self.rev_reads = PointReads(ctx, self.rev, centres)
        self.fwd_reads = PointReads(ctx, self.fwd, centres)
        self.ctx = ctx
        self.start = ctx.acquisitions
        self.first_hit: int | None = None

    @property
    def used(self) -> int:
        return self.ctx.acquisitions - self.start

    def _norm(self, z: np.ndarray, paths: list[tuple[str, str]]) -> np.ndarray:
        return np.abs(z) / np.array([self.gains.get(f"{o},{i}", 1.0) for o, i in paths])

    def reverse(self) -> np.ndarray:
        return self._norm(self.rev_reads.read(), self.rev)

    def forward(self) -> np.ndarray:
        return self._norm(self.fwd_reads.read(), self.fwd)

    def isolation(self, rev: np.ndarray | None = None) -> float:
        rev = self.reverse() if rev is None else rev
        fwd = self.forward()
        iso = float(np.min(20 * np.log10(fwd / np.maximum(rev, 1e-15))))
        if iso >= TARGET_DB and self.first_hit is None:
            self.first_hit = self.used
        return iso


def start_point(ctx: Any) -> tuple[Any, Any, dict[str, float]]:
    """The model's operating point with η known and loop phase 0 (where loop_phase starts)."""
    from labnr.calibrate.circulator_helpers import device_model
    from labnr.calibrate.operating_point import solve_operating_point

    fwd, rev = ctx.config.target.paths()
    model = device_model(ctx)
    op = solve_operating_point(model, fwd, rev)
    return model, op.settings, dict(op.band_centres)


def _set(lab: Any, amps: dict[str, float], phases: dict[str, float],
         freqs: dict[str, float]) -> None:  # fmt: skip
    lab.pump.set_tones({t: {"amplitude": float(amps[t]), "phase": float(phases[t]),
                            "frequency": float(freqs[t])} for t in amps})  # fmt: skip
    lab.pump.output(True)


def grid_baseline(ctx: Any, n: int = 41, scale_range: tuple[float, float] = (0.7, 1.3)
                  ) -> dict[str, Any]:  # fmt: skip
    """(a) one tone's phase x common amplitude scale, n x n, reverse + forward point reads."""
    _, s0, centres = start_point(ctx)
    lab = ctx.lab
    tones = list(s0.amplitude)
    tone = tones[0]
    limits = {t: float(ctx.config.pumps.tones[t].max_amplitude) for t in tones}
    reader = Reader(ctx, centres)
    best = (-np.inf, None)
    for ph in np.linspace(-np.pi, np.pi, n, endpoint=False):
        for sc in np.linspace(*scale_range, n):
            amps = {t: min(s0.amplitude[t] * sc, limits[t]) for t in tones}
            phases = {**s0.phase, tone: s0.phase[tone] + ph}
            _set(lab, amps, phases, s0.frequency)
            iso = reader.isolation()
            if iso > best[0]:
                best = (iso, (amps, phases))
    used = reader.used
    _set(lab, *best[1], s0.frequency)  # type: ignore[misc]
    final = Reader(ctx, centres).isolation()
    return {"acquisitions": used, "to_target": reader.first_hit, "best_db": best[0],
            "final_db": final}  # fmt: skip


def nelder_mead_baseline(ctx: Any, max_reads: int = 400) -> dict[str, Any]:
    """(b) Nelder–Mead on sum |S_rev| over three phases and three amplitudes."""
    from scipy.optimize import minimize

    _, s0, centres = start_point(ctx)
    lab = ctx.lab
    tones = list(s0.amplitude)
    limits = {t: float(ctx.config.pumps.tones[t].max_amplitude) for t in tones}
    reader = Reader(ctx, centres)
    a0 = np.array([s0.amplitude[t] for t in tones])
    p0 = np.array([s0.phase[t] for t in tones])

    def settings(v: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
        amps = {t: float(np.clip(a0[k] * (1 + v[3 + k]), 0.0, limits[t]))
                for k, t in enumerate(tones)}  # fmt: skip
        return amps, {t: float(p0[k] + v[k]) for k, t in enumerate(tones)}

    n_reads = 0
    best = (np.inf, np.zeros(6))

    class Budget(Exception):
        pass

    def cost(v: np.ndarray) -> float:
        nonlocal n_reads, best
        if n_reads >= max_reads:
            raise Budget
        _set(lab, *settings(v), s0.frequency)
        rev = reader.reverse()
        n_reads += 1
        c = float(np.sum(rev))
        if c < best[0]:
            best = (c, np.array(v))
            if reader.first_hit is None:  # is the target reached? (costs the forward reads)
                reader.isolation(rev)
        return c

    simplex = np.vstack([np.zeros(6)] + [np.eye(6)[k] * (0.5 if k < 3 else 0.1)
                                         for k in range(6)])  # fmt: skip
    try:
        minimize(cost, np.zeros(6), method="Nelder-Mead",
                 options={"initial_simplex": simplex, "maxfev": 10**6, "xatol": 1e-6,
                          "fatol": 1e-9})  # fmt: skip
    except Budget:
        pass
    used = reader.used
    _set(lab, *settings(best[1]), s0.frequency)
    final = Reader(ctx, centres).isolation()
    return {"acquisitions": used, "reads": n_reads, "to_target": reader.first_hit,
            "final_db": final}  # fmt: skip


def run_seed(seed: int, grid: int = 41, nm_reads: int = 400,
             baselines: bool = True) -> dict[str, Any]:  # fmt: skip
    """Calibrate seed ``seed`` from cold start; then the baselines on the same lab."""
    from labnr.calibrate.run import calibrate
    from labnr.session import open_lab

    with tempfile.TemporaryDirectory() as tmp:
        path = config_for_seed(seed, Path(tmp))
        with open_lab(path) as lab:
            report, ctx = calibrate(lab, out=_Null())
            op = ctx.state.result("operating_point") if report.ok else {}
            meas = op.get("measured", {})
            out: dict[str, Any] = {
                "seed": seed, "ok": report.ok,
                "isolation_db": meas.get("isolation_db"),
                "insertion_loss_db": meas.get("insertion_loss_db"),
                "acquisitions": ctx.acquisitions,
                "virtual_time_s": float(lab.virtual_lab.clock.now),
            }  # fmt: skip
            if baselines and report.ok:
                out["grid"] = grid_baseline(ctx, grid)
                out["nelder_mead"] = nelder_mead_baseline(ctx, nm_reads)
    return out


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1-10")
    ap.add_argument("--grid", type=int, default=41)
    ap.add_argument("--nm-reads", type=int, default=400)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="seeds in parallel processes")
    args = ap.parse_args(argv)
    seeds = _seeds(args.seeds)
    run: Callable[[int], dict[str, Any]] = _Runner(args.grid, args.nm_reads,
                                                   not args.no_baselines)  # fmt: skip
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(run, seeds))
    else:
        rows = [run(s) for s in seeds]
    fmt = lambda v, f="{:.1f}": "-" if v is None else f.format(v)  # noqa: E731
    print(
        f"{'seed':>4} {'iso dB':>7} {'IL dB':>6} {'acq':>4} {'t_virt s':>8} | "
        f"{'grid acq->40':>12} {'grid final':>10} | {'NM acq->40':>10} {'NM final':>8}"
    )
    for r in rows:
        g, nm = r.get("grid", {}), r.get("nelder_mead", {})
        print(
            f"{r['seed']:>4} {fmt(r['isolation_db']):>7} {fmt(r['insertion_loss_db'], '{:.2f}'):>6}"
            f" {r['acquisitions']:>4} {r['virtual_time_s']:>8.1f} | "
            f"{fmt(g.get('to_target'), '{}'):>12} {fmt(g.get('final_db')):>10} | "
            f"{fmt(nm.get('to_target'), '{}'):>10} {fmt(nm.get('final_db')):>8}"
        )
    iso = np.array([np.nan if r["isolation_db"] is None else r["isolation_db"] for r in rows])
    il = np.array([np.nan if r["insertion_loss_db"] is None else r["insertion_loss_db"]
                   for r in rows])  # fmt: skip
    acq = np.array([r["acquisitions"] for r in rows])
    print(
        f"median: isolation {np.median(iso):.1f} dB, insertion loss {np.median(il):.2f} dB, "
        f"acquisitions {np.median(acq):.0f}"
    )
    print(
        f"worst:  isolation {np.min(iso):.1f} dB, insertion loss {np.max(il):.2f} dB, "
        f"acquisitions {np.max(acq)}"
    )
    for key in ("grid", "nelder_mead"):
        res = [r[key] for r in rows if key in r]
        if res:
            fin = np.array([x["final_db"] for x in res])
            hit = [x["to_target"] for x in res if x["to_target"] is not None]
            print(
                f"{key}: final isolation median {np.median(fin):.1f} / worst {np.min(fin):.1f} dB;"
                f" reached 40 dB on {len(hit)}/{len(res)} seeds"
                + (
                    f", acquisitions to 40 dB median {np.median(hit):.0f}, worst {max(hit)}"
                    if hit
                    else ""
                )
            )
    return 0


class _Runner:
    def __init__(self, grid: int, nm_reads: int, baselines: bool) -> None:
        self.grid, self.nm_reads, self.baselines = grid, nm_reads, baselines

    def __call__(self, seed: int) -> dict[str, Any]:
        return run_seed(seed, self.grid, self.nm_reads, self.baselines)


if __name__ == "__main__":
    raise SystemExit(main())
