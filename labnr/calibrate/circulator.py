"""Calibration nodes of a pumped multi-mode circulator (JPC-type), built from the config.

The graph (see :func:`labnr.calibrate.run.build_graph`)::

    flux_sweet_spot -> modes -> pump_<tone> (one per tone) -> loop_phase -> operating_point

- ``flux_sweet_spot`` (7 acquisitions): reflection vs flux of the first
  flux-tunable port mode, 5 coarse points over the safe range then 2 around
  the highest; a parabola gives the sweet spot, which becomes flux 0
  (``offset_current``).
- ``modes`` (one per port): pumps off, reflection of every port mode,
  :func:`fit_resonance`: frequency, κ_ext, κ_int, and each reflection's line gain.
- ``pump_<tone>`` (8 each): that tone alone at two amplitudes, the three
  reflections and one conversion direction, :func:`labnr.fit.calibrate_amplitude`:
  coupling per volt η, Stark coefficients of every mode, line gains.
- ``loop_phase`` (9): all tones on at the model's operating point, one tone's
  phase at 3 values, complex point reads of the reverse transmissions; the
  model is fitted to them for the loop phase (put on that tone's θ) and a
  complex line factor per reverse path.
- ``operating_point`` (9-15): :func:`solve_operating_point` with the fitted
  model, applied, then damped Gauss-Newton steps on the measured complex
  reverse transmissions (Jacobian from the model times the fitted line
  factors; a step is kept only if the measured reverse power drops, else
  halved), then point reads of the forward paths and reflections give the
  measured figures.

Every VNA acquisition is counted with ``ctx.count_acquisition``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labnr.calibrate.circulator_helpers import (
    PointReads,
    apply_flux,
    apply_settings,
    device_model,
    fit_reflection,
    line_gains,
    measured_figures,
    model_convention,
    plan_acquisitions,
    point_figures,
    pump_off,
    settings_dict,
    solve_realisable,
    sweep_tone_alone,
)
from labnr.calibrate.flux import resonance_offsets, sweet_spot
from labnr.calibrate.node import CalibrationContext, CheckResult, Node, NodeResult
from labnr.calibrate.operating_point import Settings
from labnr.measure import (
    acquire_smatrix,
    load,
    make_plan,
    measure_smatrix,
    sweep_flux,
)
from labnr.measure.acquire import port_modes

__all__ = [
    "FluxSweetSpot",
    "LoopPhase",
    "Modes",
    "OperatingPoint",
    "PumpTone",
    "plan_acquisitions",
]

#: Trace points of every swept acquisition.
POINTS = 201

# ---------------------------------------------------------------------- nodes


class FluxSweetSpot(Node):
    """Reflection vs flux; the highest resonance of the tunable modes becomes flux 0."""

    name = "flux_sweet_spot"
    n_coarse = 5  # then 2 fine points around the highest
    max_range = 1e-3  # A, either side of 0 A

    def tunable(self, ctx: CalibrationContext) -> list[str]:
        return [m for m, c in ctx.config.modes.items() if c.flux_tunable and c.vna_port]

    def run(self, ctx: CalibrationContext) -> NodeResult:
        lab, cfg = ctx.lab, ctx.config
        flux = lab.flux
        # one tunable mode suffices to find the sweet spot (they share the loop's flux)
        tunable = self.tunable(ctx)[:1]
        pump_off(lab)
        if not flux.output():
            flux.output(True)  # switches on at 0 A
        lo, hi = flux.current_limits
        r = min(self.max_range, 0.5 * (hi - lo) / 2)
        # a coarse scan, then two points either side of its highest resonance
        coarse = np.linspace(-r, r, self.n_coarse)
        fl_all, f_all, run_ids = [], {m: [] for m in tunable}, []

        def scan(currents: np.ndarray) -> None:
            values = np.array([flux.current_to_flux(i) for i in currents])
            ds = sweep_flux(lab, values, points=401, ports=tunable, progress=False)
            ctx.count_acquisition(len(values) * len(tunable))
            ctx.record_run(ds.run_id)
            run_ids.append(ds.run_id)
            data = load(ds.run_id)
            fl_all.extend(data["flux"].values.tolist())
            delta = data["frequency"].values
            for m in tunable:
                f_all[m].extend(
                    resonance_offsets(data["S"].sel(out=m, **{"in": m}).values, delta).tolist()
                )

        scan(coarse)
        f0 = np.asarray(f_all[tunable[0]], dtype=float)
        if np.isfinite(f0).any():
            k = int(np.nanargmax(f0))
            h = (coarse[1] - coarse[0]) / 3
            fine = np.array([c for c in (coarse[k] - h, coarse[k] + h) if lo <= c <= hi])
            if fine.size:
                scan(fine)
        order = np.argsort(fl_all)
        fl = np.asarray(fl_all)[order]
        tops, freqs = [], {}
        for m in tunable:
            f_res = np.asarray(f_all[m], dtype=float)[order]
            found = sweet_spot(fl, f_res)
            if found is not None:
                tops.append(found[0])
                freqs[m] = float(cfg.modes[m].frequency + found[1])
        if not tops:
            return NodeResult.failure("no resonance of the tunable modes found at any flux",
                                      run_ids=run_ids)  # fmt: skip
        i_top = float(flux.flux_to_current(float(np.mean(tops))))
        flux.offset_current(i_top)
        flux.flux(0.0)
        return NodeResult(
            {"offset_current": i_top, "frequencies": freqs, "tunable": tunable},
            summary=f"sweet spot at {i_top * 1e6:.1f} uA; "
            + ", ".join(f"{m} {f / 1e9:.4f} GHz" for m, f in freqs.items()),
        )

    def check(self, ctx: CalibrationContext) -> CheckResult:
        lab, cfg = ctx.lab, ctx.config
        r = ctx.result(self.name)
        pump_off(lab)
        apply_flux(lab, r["offset_current"])
        m, f = next(iter(r["frequencies"].items()))
        width = float(cfg.modes[m].linewidth or 20e6)
        delta, S, meta = acquire_smatrix(lab, span=20 * width, points=401, centres={m: f},
                                         paths=[(m, m)], ports=[m])  # fmt: skip
        ctx.count_acquisition(plan_acquisitions(meta))
        off = float(resonance_offsets(S[:, 0, 0], delta))
        ok = np.isfinite(off) and abs(off) < width / 4
        return CheckResult(bool(ok), f"{m} at {off / 1e6:+.2f} MHz from stored", {"offset": off})


class Modes(Node):
    """Pumps off: fit every port mode's reflection (frequency, κ_ext, κ_int, line gain)."""

    name = "modes"
    depends_on = ("flux_sweet_spot",)

    def centres(self, ctx: CalibrationContext) -> dict[str, float]:
        out = {m: float(c.frequency) for m, c in ctx.config.modes.items() if c.vna_port}
        if "flux_sweet_spot" in self.depends_on:
            out.update(ctx.result("flux_sweet_spot")["frequencies"])
        return out

    @staticmethod
    def span(ctx: CalibrationContext) -> float:
        """The config's VNA span if it covers 4 expected linewidths, else 6 linewidths.

        A device whose directional band is far narrower than its port modes
        (an electromechanical isolator: kHz band, MHz cavities) configures the
        VNA for that band; the pumps-off resonances need the wider span.
        """
        cfg = ctx.config
        widths = [float(c.linewidth) for c in cfg.modes.values() if c.vna_port and c.linewidth]
        if not widths or cfg.vna.span >= 4 * max(widths):
            return float(cfg.vna.span)
        return 6 * max(widths)

    def run(self, ctx: CalibrationContext) -> NodeResult:
        from labnr.fit import fit_resonance

        lab, cfg = ctx.lab, ctx.config
        pump_off(lab)
        centres = self.centres(ctx)
        ports = list(port_modes(cfg))
        paths = [(m, m) for m in ports]
        span = self.span(ctx)
        ds = measure_smatrix(lab, span=span, points=POINTS, centres=centres,
                             paths=paths, progress=False)  # fmt: skip
        meta = make_plan(lab, span=span, points=POINTS, centres=centres, paths=paths)
        ctx.count_acquisition(plan_acquisitions(meta))
        ctx.record_run(ds.run_id)
        data = load(ds.run_id)
        delta = data["frequency"].values
        out = {}
        conjugate = None
        for m in ports:
            trace = data["S"].sel(out=m, **{"in": m}).values
            fit, conjugate = fit_reflection(fit_resonance, delta, trace, ds.run_id, conjugate)
            v = fit.values
            out[m] = {"frequency": centres[m] + v["f0"], "kappa_ext": v["kappa_ext"],
                      "kappa_int": v["kappa_int"], "line_gain": abs(v["a"])}  # fmt: skip
        return NodeResult({"modes": out, "conjugate": bool(conjugate)}, summary="; ".join(
            f"{m} {v['frequency'] / 1e9:.5f} GHz k_ext {v['kappa_ext'] / 1e6:.2f} MHz"
            for m, v in out.items()))  # fmt: skip

    def check(self, ctx: CalibrationContext) -> CheckResult:
        lab = ctx.lab
        pump_off(lab)
        modes = ctx.result("modes")["modes"]
        span = 20 * max(v["kappa_ext"] + v["kappa_int"] for v in modes.values())
        centres = {m: v["frequency"] for m, v in modes.items()}
        delta, S, meta = acquire_smatrix(lab, span=span, points=401, centres=centres,
                                         paths=[(m, m) for m in modes])  # fmt: skip
        ctx.count_acquisition(plan_acquisitions(meta))
        bad, offs = [], {}
        for k, m in enumerate(meta.ports):
            off = float(resonance_offsets(S[:, k, k], delta))
            offs[m] = off
            kappa = modes[m]["kappa_ext"] + modes[m]["kappa_int"]
            if not (np.isfinite(off) and abs(off) < kappa / 4):
                bad.append(m)
        reason = ", ".join(f"{m} {o / 1e6:+.2f} MHz" for m, o in offs.items())
        return CheckResult(not bad, reason, {"offsets": offs})


class PumpTone(Node):
    """One tone alone at two amplitudes: coupling per volt, Stark shifts, conversion line gains."""

    depends_on = ("modes",)
    fractions = (1 / 6, 1 / 3)  # of the tone's amplitude limit

    def __init__(self, tone: str) -> None:
        super().__init__(f"pump_{tone}")
        self.tone = tone

    def run(self, ctx: CalibrationContext) -> NodeResult:
        from labnr.calibrate.pump_window import run_window_tone, window_tone
        from labnr.fit import calibrate_amplitude, guesses_from_config

        if window_tone(ctx, self.tone):
            return run_window_tone(ctx, self.tone, self.fractions)
        cfg, tone = ctx.config, self.tone
        tc = cfg.pumps.tones[tone]
        modes = ctx.result("modes")["modes"]
        centres = {m: v["frequency"] for m, v in modes.items()}
        a, b = tc.modes
        f = abs(centres[b] - centres[a]) if tc.kind == "conversion" else centres[a] + centres[b]
        amps = [float(tc.max_amplitude) * x for x in self.fractions]
        # the coupled pair's 2x2 S-matrix, and the other modes' reflections (Stark shifts)
        ports = list(port_modes(cfg))
        # one conversion direction suffices: with the reflections it fixes every port's
        # input and output gain, hence the other direction's line gain too
        paths = [(m, m) for m in ports] + [(b, a)]
        span = 5 * max(modes[m]["kappa_ext"] + modes[m]["kappa_int"] for m in ports)
        ds, _ = sweep_tone_alone(ctx, tone, f, amps, centres=centres, span=span, points=POINTS,
                                 paths=paths)  # fmt: skip
        fmodes, links = guesses_from_config(cfg, centres, pump_mode=True, tones=[tone])
        fmodes = [
            type(m)(m.name, modes[m.name]["kappa_ext"], modes[m.name]["kappa_int"], m.detuning,
                    m.stark)
            for m in fmodes if m.name in ports
        ]  # fmt: skip
        data = load(ds.run_id)
        if ctx.result("modes").get("conjugate"):
            data["S"] = np.conj(data["S"])  # into the model's convention
        try:
            fit = calibrate_amplitude(data, tone, fmodes, links, convention="physics")
        except TypeError:  # a labnr.fit without the convention argument
            fit = calibrate_amplitude(data, tone, fmodes, links)
        v = fit.values
        eta = float(v[f"eta_{tone}"])
        stark = {m: float(v.get(f"{m}_stark_{tone}", 0.0)) for m in ports}
        gains = {f"{o},{i}": float(v[f"gain_out_{o}"] * v[f"gain_in_{i}"])
                 for o, i in ((b, a), (a, b))}  # fmt: skip
        return NodeResult(
            {"eta": eta, "stark": stark, "line_gain": gains, "frequency": f},
            summary=f"eta {eta / 1e6:.2f} MHz/V; Stark "
            + ", ".join(f"{m} {s / 1e6:.1f} MHz/V^2" for m, s in stark.items()),
        )


class LoopPhase(Node):
    """Loop phase from complex reverse transmissions vs one tone's phase, fitted with the model."""

    name = "loop_phase"
    n_phase = 3
    grid = 720

    def __init__(self, tones: Sequence[str]) -> None:
        super().__init__(depends_on=("modes", *(f"pump_{t}" for t in tones)))
        self.tones = list(tones)

    def run(self, ctx: CalibrationContext) -> NodeResult:
        lab, cfg = ctx.lab, ctx.config
        fwd, rev = cfg.target.paths()
        model = device_model(ctx)
        op = solve_realisable(ctx, model, fwd, rev)
        st = settings_dict(op.settings)
        tone = self.tones[0]
        apply_settings(lab, st)
        reads = PointReads(ctx, rev, op.band_centres)
        step = self.grid // self.n_phase
        u = 2 * np.pi * np.arange(self.grid) / self.grid
        y = []
        try:
            for k in range(self.n_phase):
                lab.pump.set_tones({tone: {"phase": st[tone]["phase"] + u[k * step]}})
                y.append(model_convention(ctx, reads.read()))
        finally:
            lab.pump.set_tones({tone: {"phase": st[tone]["phase"]}})
        y = np.array(y)  # (n_phase, paths)
        base = op.settings
        ms = []
        for uu in u:
            s = Settings(
                base.amplitude, {**base.phase, tone: base.phase[tone] + uu}, base.frequency
            )
            S = model.smatrix(s)
            ms.append([S[model.ports.index(o), model.ports.index(i)] for o, i in rev])
        ms = np.array(ms)  # (grid, paths)
        cost = np.zeros(self.grid)
        factors = np.zeros((self.grid, len(rev)), complex)
        norm = np.sum(np.abs(y) ** 2, axis=0)
        for j in range(self.grid):
            m = ms[(np.arange(self.n_phase) * step + j) % self.grid]
            kf = np.sum(np.conj(m) * y, axis=0) / np.maximum(np.sum(np.abs(m) ** 2, axis=0), 1e-30)
            factors[j] = kf
            cost[j] = np.sum(np.sum(np.abs(y - kf * m) ** 2, axis=0) / norm)
        j = int(np.argmin(cost))
        theta = float(np.angle(np.exp(1j * u[j])))
        kf = factors[j]
        return NodeResult(
            {"tone": tone, "theta": {t: (theta if t == tone else 0.0) for t in cfg.pumps.tones},
             "factors": {f"{o},{i}": [float(c.real), float(c.imag)]
                         for (o, i), c in zip(rev, kf, strict=True)},
             "residual": float(cost[j]) / len(rev)},
            summary=f"loop phase {np.degrees(theta):+.1f} deg on {tone} "
                    f"(relative misfit {cost[j] / len(rev):.2g})",
        )  # fmt: skip


class OperatingPoint(Node):
    """Solve with the fitted model, apply, refine on the reverse transmissions, measure."""

    name = "operating_point"
    depends_on = ("loop_phase",)
    max_reads = 9  # reverse point reads of the refinement (3 per read)
    min_isolation_db = 30.0
    goal_db = 45.0

    def __init__(self, tones: Sequence[str]) -> None:
        super().__init__(depends_on=("modes", "loop_phase", *(f"pump_{t}" for t in tones)))
        self.tones = list(tones)

    def run(self, ctx: CalibrationContext) -> NodeResult:
        lab, cfg = ctx.lab, ctx.config
        fwd, rev = cfg.target.paths()
        lp = ctx.result("loop_phase")
        model = device_model(ctx, lp["theta"])
        op = solve_realisable(ctx, model, fwd, rev)
        base = op.settings
        st = settings_dict(base)
        apply_settings(lab, st)
        reads = PointReads(ctx, rev, op.band_centres)
        kf = np.array([complex(*lp["factors"][f"{o},{i}"]) for o, i in rev])
        tone0 = lp["tone"]
        knobs = [("phase", tone0)] + [("amplitude", t) for t in self.tones]
        limits = {t: float(cfg.pumps.tones[t].max_amplitude) for t in self.tones}

        def settings_at(x: np.ndarray) -> Settings:
            amp, ph = dict(base.amplitude), dict(base.phase)
            for (kind, t), dx in zip(knobs, x, strict=True):
                if kind == "phase":
                    ph[t] += dx
                else:
                    amp[t] = float(np.clip(amp[t] + dx, 0.0, limits[t]))
            return Settings(model.within_budgets(amp), ph, base.frequency)

        def predicted(x: np.ndarray) -> np.ndarray:
            S = model.smatrix(settings_at(x))
            return kf * np.array([S[model.ports.index(o), model.ports.index(i)] for o, i in rev])

        def real(z: np.ndarray) -> np.ndarray:
            return np.r_[z.real, z.imag]

        scale = np.array([1e-4] + [1e-4 * max(base.amplitude[t], 1e-3) for t in self.tones])

        def jacobian(x: np.ndarray) -> np.ndarray:
            """Model Jacobian (times the fitted line factors) of the reverse reads at ``x``."""
            cols = []
            for k in range(len(x)):
                e = np.eye(len(x))[k] * scale[k]
                cols.append((real(predicted(x + e)) - real(predicted(x - e))) / (2 * scale[k]))
            return np.stack(cols, axis=1)

        level = np.abs(kf)  # |S_rev| of a fully transmitted path, in raw units

        def iso_db(z: np.ndarray) -> np.ndarray:
            return 20 * np.log10(level / np.maximum(np.abs(z), 1e-15))

        def apply(x: np.ndarray) -> None:
            s = settings_at(x)
            lab.pump.set_tones({t: {"amplitude": s.amplitude[t], "phase": s.phase[t]}
                                for t in self.tones})  # fmt: skip

        y_raw = reads.read()
        y = model_convention(ctx, y_raw)
        ctx.log.info("refine start: measured %s, predicted %s", y / kf,
                     predicted(np.zeros(len(knobs))) / kf)  # fmt: skip
        history = [float(np.min(iso_db(y)))]
        max_step = np.array([0.1] + [0.1 * max(base.amplitude[t], 1e-3) for t in self.tones])
        n_reads = len(rev)
        x_best, y_best, y_best_raw = np.zeros(len(knobs)), y, y_raw
        cost_best = float(np.sum(np.abs(y / level) ** 2))
        dx = None
        # damped Gauss-Newton on the measured reverse reads with the model's Jacobian:
        # a step is kept only if the measured reverse transmission falls, else halved
        while n_reads + len(rev) <= self.max_reads and history[-1] < self.goal_db:
            if dx is None:
                J = jacobian(x_best)
                dx = -np.linalg.lstsq(J, real(y_best), rcond=None)[0]
                over = np.max(np.abs(dx) / max_step)
                if over > 1:
                    dx = dx / over
            x_new = x_best + dx
            apply(x_new)
            y_raw = reads.read()
            y_new = model_convention(ctx, y_raw)
            n_reads += len(rev)
            cost = float(np.sum(np.abs(y_new / level) ** 2))
            history.append(float(np.min(iso_db(y_new))))
            ctx.log.info("refine: dx %s, per path %s dB", np.round(dx, 4),
                         np.round(iso_db(y_new), 1))  # fmt: skip
            if cost < cost_best:
                x_best, y_best, y_best_raw, cost_best = x_new, y_new, y_raw, cost
                dx = None  # a new Gauss-Newton step from here
            else:
                dx = dx / 2
        x = x_best
        final = settings_at(x)
        apply(x)  # the best settings read (a rejected step may have been the last)
        st = {t: {"amplitude": float(final.amplitude[t]), "phase": float(final.phase[t]),
                  "frequency": float(final.frequency[t])} for t in self.tones}  # fmt: skip
        gains = line_gains(ctx)
        # the figures: reverse from the best read (taken at these settings), forward and
        # reflections by point reads at the band centres
        meas = point_figures(ctx, op.band_centres, gains, dict(zip(rev, y_best_raw, strict=True)))
        return NodeResult(
            {"settings": st, "band_centres": op.band_centres, "line_gain": gains,
             "predicted": {"isolation_db": op.isolation_db,
                           "insertion_loss_db": op.insertion_loss_db,
                           "reflection_db": op.reflection_db},
             "refine_isolation_db": history, "measured": meas,
             "acquisitions": ctx.acquisitions},
            summary=f"isolation {meas['isolation_db']:.1f} dB, insertion loss "
                    f"{meas['insertion_loss_db']:.2f} dB, "
                    f"reflection {meas['reflection_db']:.1f} dB "
                    f"(refine: {' -> '.join(f'{h:.1f}' for h in history)})",
        )  # fmt: skip

    def check(self, ctx: CalibrationContext) -> CheckResult:
        r = ctx.result(self.name)
        apply_settings(ctx.lab, r["settings"])
        meas = measured_figures(ctx, r["band_centres"], r["line_gain"])
        ok = meas["isolation_db"] >= self.min_isolation_db
        return CheckResult(bool(ok), f"isolation {meas['isolation_db']:.1f} dB", meas,
                           run_ids=[meas["run_id"]])  # fmt: skip
