"""Benchmark: the circulator calibration from cold start on many seeds, against two baselines.

Run: ``python benchmarks/bench_calibrate.py [--config PATH] [--seeds 1-10] [--grid 41]
[--nm-reads 400] [--jobs N]``.

Per seed (``virtual_lab: {seed: N}`` in a copy of ``--config``, default
``configs/sim_jpc_circulator.yaml``; storage in a temporary directory), in process:

- **labnr**: the calibration graph (:func:`labnr.calibrate.run.calibrate`) from cold
  start: measured isolation, insertion loss, VNA acquisitions, virtual time; then the
  isolation read again by point reads at its settings (``reread_db``, not counted).
- **baselines**, each on a *fresh* virtual lab of the same seed (same device, same
  noise), after running only what a hand-tuner would have: the flux sweet spot, the
  modes (pumps off) and the per-tone pump calibration (the graph up to the
  ``pump_<tone>`` nodes; their acquisitions are reported as ``prereq``). A baseline
  knows the mode frequencies, κ's, η and Stark shifts, hence the ideal-formula
  amplitudes :math:`A_t = \\sqrt{\\kappa_a\\kappa_b}/(2\\eta_t)`, but not the loop phase
  (all tone phases start at 0):

  (a) **grid**: the first tone's phase over [-π, π) × a common scale of all tones'
      ideal amplitudes over [0.7, 1.3], ``grid`` × ``grid``; reverse and forward
      transmissions by point reads at band centre (one acquisition per path);
  (b) **Nelder–Mead** (scipy) on the sum of |S_rev| (point reads) over every tone's
      phase and relative amplitude, ``nm_reads`` reverse reads; the forward paths are
      read at every new best point (counted).

  Each reports its acquisitions to first *measure* ≥ 40 dB isolation (prerequisites
  included; ``None`` if never), the best isolation seen, and the final isolation: the
  best settings set again and re-measured.

Pump frequencies of the baselines close every pump loop *on the sources' frequency
grid* (0.01 Hz for CW sources, ``pumps.frequency_resolution`` for an AWG): the mode
frames are rounded to the grid and each tone's frequency is built from them. Rounding
each tone's frequency on its own leaves a loop mismatch Δ of up to a few grid steps,
and the loop phase then turns at 2πΔ (3.6°/s for 0.01 Hz): a point that measured
35 dB is at -7 dB a few hundred virtual seconds later. That was the negative "final"
isolation of the old baselines (seeds 6 and 10).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sim_jpc_circulator.yaml"
TARGET_DB = 40.0
#: frequency grid of a CW source (QCoDeS's SGS100A driver writes 0.01 Hz)
CW_RESOLUTION = 0.01


def config_for_seed(seed: int, directory: Path, config: Path = CONFIG) -> Path:
    """A copy of ``config`` with the virtual lab's seed and storage in ``directory``."""
    config = Path(config).resolve()
    cfg = yaml.safe_load(config.read_text())
    cfg["station"] = str(config.parent / cfg["station"])
    cfg["virtual_lab"] = {**cfg.get("virtual_lab", {}), "seed": int(seed)}
    cfg["storage"] = {"database": str(directory / "labnr.db"), "data_dir": str(directory / "data")}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Reader:
    """Point reads of the forward and reverse paths at band centre, line gains removed.

    Counts with ``ctx.count_acquisition`` (one per path read); ``first_hit`` is the
    count (since ``start``) at which ≥ 40 dB was first measured.
    """

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
        """Worst forward/reverse ratio over the paths, dB (reads what is not given)."""
        rev = self.reverse() if rev is None else rev
        fwd = self.forward()
        iso = float(np.min(20 * np.log10(fwd / np.maximum(rev, 1e-15))))
        if iso >= TARGET_DB and self.first_hit is None:
            self.first_hit = self.used
        return iso


# ------------------------------------------------------------------ the hand-tuner's start


def prerequisites(lab: Any) -> tuple[Any, int]:
    """Run only the graph's flux, modes and pump nodes; (context, their acquisitions)."""
    from labnr.calibrate.cli import run_calibration
    from labnr.calibrate.graph import CalibrationGraph
    from labnr.calibrate.node import CalibrationContext
    from labnr.calibrate.run import build_graph
    from labnr.calibrate.state import CalibrationState

    full = build_graph(lab.config)
    pumps = [f"pump_{t}" for t in lab.config.pumps.tones]
    keep = set(pumps).union(*(full.ancestors(p) for p in pumps))
    graph = CalibrationGraph([full[n] for n in full.order if n in keep])
    ctx = CalibrationContext(CalibrationState.for_config(lab.config, reset=True), lab=lab,
                             config=lab.config)  # fmt: skip
    report = run_calibration(graph, ctx, out=_Null())
    if not report.ok:
        raise RuntimeError(f"baseline prerequisites failed: {report.reason}")
    return ctx, ctx.acquisitions


def _kappa(ctx: Any, mode: str) -> float:
    fitted = ctx.result("modes")["modes"].get(mode)
    if fitted is not None:
        return float(fitted["kappa_ext"] + fitted["kappa_int"])
    return float(ctx.config.modes[mode].linewidth or 1.0)


def _frequency(ctx: Any, mode: str) -> float:
    fitted = ctx.result("modes")["modes"].get(mode)
    return float(fitted["frequency"] if fitted else ctx.config.modes[mode].frequency)


def frequency_grid(config: Any) -> float:
    """Frequency resolution of the pump sources, Hz."""
    if config.pumps.backend == "cw":
        return CW_RESOLUTION
    return float(config.pumps.frequency_resolution)


def start_point(ctx: Any) -> tuple[dict[str, float], dict[str, float], dict[str, float],
                                   dict[str, float]]:  # fmt: skip
    """(ideal amplitudes, zero phases, loop-closing frequencies, band centres) from η, κ, Stark.

    Modes sit on resonance at their Stark-shifted frequencies (at the ideal amplitudes);
    their frames are rounded to the sources' frequency grid and every tone's frequency
    is built from the frames, so that every pump loop closes exactly on that grid.
    """
    cfg = ctx.config
    tones = list(cfg.pumps.tones)
    amps, eta = {}, {}
    for t in tones:
        a, b = cfg.pumps.tones[t].modes
        eta[t] = float(ctx.result(f"pump_{t}")["eta"])
        ideal = np.sqrt(_kappa(ctx, a) * _kappa(ctx, b)) / 2 / max(eta[t], 1e-30)
        amps[t] = float(min(ideal, float(cfg.pumps.tones[t].max_amplitude)))
    shifted = {m: _frequency(ctx, m) for m in cfg.modes}
    for t in tones:
        for m, chi in ctx.result(f"pump_{t}")["stark"].items():
            shifted[m] += float(chi) * amps[t] ** 2
    res = frequency_grid(cfg)
    frames = {m: round(f / res) * res for m, f in shifted.items()}
    freqs = {}
    for t in tones:
        tc = cfg.pumps.tones[t]
        a, b = tc.modes
        kind = getattr(tc, "kind", "conversion")
        freqs[t] = abs(frames[b] - frames[a]) if kind == "conversion" else frames[a] + frames[b]
    centres = {m: frames[m] for m in cfg.modes if cfg.modes[m].vna_port}
    return amps, {t: 0.0 for t in tones}, freqs, centres


def _set(lab: Any, amps: dict[str, float], phases: dict[str, float],
         freqs: dict[str, float]) -> None:  # fmt: skip
    # tones sharing an AWG channel must fit its full scale together (as a hand-tuner's
    # AWG would refuse): scale such a group down to its budget
    amps = dict(amps)
    for names, limit in lab.pump.amplitude_budgets():
        total = sum(amps.get(n, 0.0) for n in names)
        if total > 0.999 * limit:
            for n in names:
                amps[n] *= 0.999 * limit / total
    lab.pump.set_tones({t: {"amplitude": float(amps[t]), "phase": float(phases[t]),
                            "frequency": float(freqs[t])} for t in amps})  # fmt: skip
    lab.pump.output(True)


# ------------------------------------------------------------------ baselines


def grid_baseline(ctx: Any, n: int = 41, scale_range: tuple[float, float] = (0.7, 1.3)
                  ) -> dict[str, Any]:  # fmt: skip
    """(a) first tone's phase × common amplitude scale, n × n, reverse + forward point reads."""
    a0, p0, freqs, centres = start_point(ctx)
    lab = ctx.lab
    tones = list(a0)
    tone = tones[0]
    limits = {t: float(ctx.config.pumps.tones[t].max_amplitude) for t in tones}
    _set(lab, a0, p0, freqs)  # the receivers follow the pump frequencies set now
    reader = Reader(ctx, centres)
    best_db, best = -np.inf, (a0, p0)
    for ph in np.linspace(-np.pi, np.pi, n, endpoint=False):
        for sc in np.linspace(*scale_range, n):
            amps = {t: min(a0[t] * sc, limits[t]) for t in tones}
            phases = {**p0, tone: p0[tone] + ph}
            _set(lab, amps, phases, freqs)
            iso = reader.isolation()
            if iso > best_db:
                best_db, best = iso, (amps, phases)
    used = reader.used
    _set(lab, *best, freqs)
    final = Reader(ctx, centres).isolation()  # re-measured, not counted in ``acquisitions``
    return {"acquisitions": used, "to_target": reader.first_hit, "best_db": float(best_db),
            "final_db": final, "settings": {"amplitude": best[0], "phase": best[1]}}  # fmt: skip


def nelder_mead_baseline(ctx: Any, max_reads: int = 400) -> dict[str, Any]:
    """(b) Nelder–Mead on the sum of |S_rev| over every tone's phase and relative amplitude."""
    from scipy.optimize import minimize

    a0, p0, freqs, centres = start_point(ctx)
    lab = ctx.lab
    tones = list(a0)
    nt = len(tones)
    limits = {t: float(ctx.config.pumps.tones[t].max_amplitude) for t in tones}
    _set(lab, a0, p0, freqs)  # the receivers follow the pump frequencies set now
    reader = Reader(ctx, centres)

    def settings(v: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
        amps = {t: float(np.clip(a0[t] * (1 + v[nt + k]), 0.0, limits[t]))
                for k, t in enumerate(tones)}  # fmt: skip
        return amps, {t: float(p0[t] + v[k]) for k, t in enumerate(tones)}

    n_reads = 0
    best = (np.inf, np.zeros(2 * nt), -np.inf)  # (cost, x, isolation measured there)

    class Budget(Exception):
        pass

    def cost(v: np.ndarray) -> float:
        nonlocal n_reads, best
        if n_reads >= max_reads:
            raise Budget
        _set(lab, *settings(v), freqs)
        rev = reader.reverse()
        n_reads += 1
        c = float(np.sum(rev))
        if c < best[0]:
            best = (c, np.array(v), reader.isolation(rev))  # forward reads: counted
        return c

    simplex = np.vstack([np.zeros(2 * nt)] + [np.eye(2 * nt)[k] * (0.5 if k < nt else 0.1)
                                              for k in range(2 * nt)])  # fmt: skip
    try:
        minimize(cost, np.zeros(2 * nt), method="Nelder-Mead",
                 options={"initial_simplex": simplex, "maxfev": 10**6, "xatol": 1e-6,
                          "fatol": 1e-9})  # fmt: skip
    except Budget:
        pass
    used = reader.used
    _set(lab, *settings(best[1]), freqs)
    final = Reader(ctx, centres).isolation()
    return {"acquisitions": used, "reads": n_reads, "to_target": reader.first_hit,
            "best_db": float(best[2]), "final_db": final}  # fmt: skip


# ------------------------------------------------------------------ one seed


def run_labnr(path: Path) -> dict[str, Any]:
    """labnr's calibration from cold start on the lab of config ``path``."""
    from labnr.calibrate.run import calibrate
    from labnr.session import open_lab

    t0 = time.perf_counter()
    with open_lab(path) as lab:
        report, ctx = calibrate(lab, out=_Null())
        op = ctx.state.result("operating_point") if report.ok else {}
        meas = op.get("measured", {})
        reread = None
        if report.ok:
            n = ctx.acquisitions
            reread = Reader(ctx, op["band_centres"]).isolation()
            ctx.acquisitions = n  # the re-read is the benchmark's, not the calibration's
        iso = meas.get("isolation_db")
        return {
            "ok": report.ok, "isolation_db": iso, "reread_db": reread,
            "insertion_loss_db": meas.get("insertion_loss_db"),
            "acquisitions": ctx.acquisitions,
            "to_target": ctx.acquisitions if iso is not None and iso >= TARGET_DB else None,
            "virtual_time_s": float(lab.virtual_lab.clock.now),
            "wall_s": time.perf_counter() - t0,
        }  # fmt: skip


def run_baseline(path: Path, method: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``method(ctx)`` on a fresh lab of config ``path`` after the prerequisites."""
    from labnr.session import open_lab

    t0 = time.perf_counter()
    with open_lab(path) as lab:
        ctx, prereq = prerequisites(lab)
        out = method(ctx)
    out["prereq"] = prereq
    if out["to_target"] is not None:
        out["to_target"] += prereq
    out["wall_s"] = time.perf_counter() - t0
    return out


def run_seed(seed: int, grid: int = 41, nm_reads: int = 400, baselines: bool = True,
             config: Path = CONFIG) -> dict[str, Any]:  # fmt: skip
    """labnr from cold start, then each baseline on its own fresh lab of the same seed."""
    with tempfile.TemporaryDirectory() as tmp:
        out: dict[str, Any] = {"seed": seed}
        out.update(run_labnr(config_for_seed(seed, Path(tmp) / "labnr", config)))
        if baselines:
            out["grid"] = run_baseline(config_for_seed(seed, Path(tmp) / "grid", config),
                                       lambda ctx: grid_baseline(ctx, grid))  # fmt: skip
            out["nelder_mead"] = run_baseline(
                config_for_seed(seed, Path(tmp) / "nm", config),
                lambda ctx: nelder_mead_baseline(ctx, nm_reads),
            )
    return out


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


# ------------------------------------------------------------------ tables


def _fmt(v: Any, f: str = "{:.1f}") -> str:
    return "-" if v is None else f.format(v)


def seed_table(rows: list[dict[str, Any]]) -> str:
    """One line per seed."""
    lines = [
        f"{'seed':>4} | {'labnr dB':>8} {'reread':>6} {'IL dB':>5} {'acq':>4} {'t_virt':>6} | "
        f"{'prereq':>6} | {'grid best':>9} {'final':>6} {'acq->40':>7} | "
        f"{'NM best':>7} {'final':>6} {'acq->40':>7}"
    ]
    for r in rows:
        g, nm = r.get("grid", {}), r.get("nelder_mead", {})
        lines.append(
            f"{r['seed']:>4} | {_fmt(r['isolation_db']):>8} {_fmt(r['reread_db']):>6} "
            f"{_fmt(r['insertion_loss_db'], '{:.2f}'):>5} {r['acquisitions']:>4} "
            f"{r['virtual_time_s']:>6.0f} | {_fmt(g.get('prereq'), '{}'):>6} | "
            f"{_fmt(g.get('best_db')):>9} {_fmt(g.get('final_db')):>6} "
            f"{_fmt(g.get('to_target'), '{}'):>7} | {_fmt(nm.get('best_db')):>7} "
            f"{_fmt(nm.get('final_db')):>6} {_fmt(nm.get('to_target'), '{}'):>7}"
        )
    return "\n".join(lines)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Median and worst over seeds for labnr and the baselines, in one table."""
    head = (f"{'method':<12} {'final iso dB med/worst':>22} {'best seen med':>13} "
            f"{'>=40 dB':>7} {'acq->40 med/worst':>18} {'acq total med/max':>17} "
            f"{'wall s med':>10}")  # fmt: skip
    lines = [head]
    methods = [("labnr", rows)] + [
        (k, [r[k] for r in rows if k in r]) for k in ("grid", "nelder_mead")
    ]
    for name, res in methods:
        if not res:
            continue
        fin = np.array([np.nan if x.get("isolation_db", x.get("final_db")) is None
                        else x.get("isolation_db", x.get("final_db")) for x in res])  # fmt: skip
        best = [x["best_db"] for x in res if x.get("best_db") is not None]
        hit = [x["to_target"] for x in res if x["to_target"] is not None]
        total = np.array([x["acquisitions"] + x.get("prereq", 0) for x in res])
        miss = len(res) - len(hit)
        worst_hit = "never" if not hit else f"{max(hit)}" + (f" (+{miss} never)" if miss else "")
        lines.append(
            f"{name:<12} {np.nanmedian(fin):>10.1f} / {np.nanmin(fin):<9.1f} "
            f"{_fmt(float(np.median(best)) if best else None):>13} "
            f"{len(hit):>3}/{len(res):<3} "
            f"{_fmt(float(np.median(hit)) if hit else None, '{:.0f}'):>7} / {worst_hit:<9} "
            f"{np.median(total):>8.0f} / {np.max(total):<6} "
            f"{np.median([x['wall_s'] for x in res]):>10.1f}"
        )
    return "\n".join(lines)


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


class _Runner:
    def __init__(self, grid: int, nm_reads: int, baselines: bool, config: Path) -> None:
        self.grid, self.nm_reads, self.baselines, self.config = grid, nm_reads, baselines, config

    def __call__(self, seed: int) -> dict[str, Any]:
        return run_seed(seed, self.grid, self.nm_reads, self.baselines, self.config)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--config", type=Path, default=CONFIG, help="experiment config YAML")
    ap.add_argument("--seeds", default="1-10")
    ap.add_argument("--grid", type=int, default=41)
    ap.add_argument("--nm-reads", type=int, default=400)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="seeds in parallel processes")
    args = ap.parse_args(argv)
    seeds = _seeds(args.seeds)
    run = _Runner(args.grid, args.nm_reads, not args.no_baselines, args.config)
    t0 = time.perf_counter()
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(run, seeds))
    else:
        rows = [run(s) for s in seeds]
    print(f"config {args.config}; seeds {args.seeds}; grid {args.grid}x{args.grid}; "
          f"Nelder-Mead {args.nm_reads} reverse reads; target {TARGET_DB:.0f} dB")  # fmt: skip
    print(seed_table(rows))
    print()
    print(summary_table(rows))
    print(
        "acq->40: VNA acquisitions until >= 40 dB was first measured (baselines: "
        "prerequisites included); final: labnr's measured figure, the baselines' best "
        "settings re-measured; reread: labnr's settings read again after the calibration"
    )
    print(f"wall {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
