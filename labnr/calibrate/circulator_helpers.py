"""Helpers of the circulator calibration nodes: point reads, the device model, figures.

Split from :mod:`labnr.calibrate.circulator` (which documents the graph).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from labnr.calibrate.node import CalibrationContext
from labnr.calibrate.operating_point import (
    DeviceModel,
    ModeModel,
    OperatingPoint,
    Settings,
    ToneModel,
    figures,
    realise,
    solve_operating_point,
)
from labnr.measure import load, make_plan, measure_smatrix, sweep_pump_amplitude
from labnr.measure.acquire import port_modes

__all__ = [
    "PointReads",
    "apply_flux",
    "apply_settings",
    "device_model",
    "fit_reflection",
    "line_gains",
    "measured_figures",
    "model_convention",
    "plan_acquisitions",
    "point_figures",
    "pump_off",
    "settings_dict",
    "settings_of",
    "solve_realisable",
    "sweep_tone_alone",
]


def plan_acquisitions(meta: Any) -> int:
    """VNA acquisitions a plan makes: one per plain group, one per other element."""
    plan = meta.plan
    grouped = {(o, i) for g in plan.groups for o in g for i in g}
    n_groups = sum(any((o, i) in plan.elements for o in g for i in g) for g in plan.groups)
    return n_groups + sum(e not in grouped for e in plan.elements)


def pump_off(lab: Any) -> None:
    if lab.pump is not None:
        lab.pump.output(False)


def sweep_tone_alone(ctx: CalibrationContext, tone: str, frequency: float,
                     amplitudes: Sequence[float], **plan: Any) -> tuple[Any, float]:  # fmt: skip
    """Every other tone at 0 V, ``tone`` at ``frequency`` swept over ``amplitudes``.

    ``plan``: ``centres``, ``span``, ``points``, ``paths`` of the acquisition. The
    acquisitions are counted and the run recorded; the pump is left off. Returns
    the dataset and the tone's frequency as the pump really plays it.
    """
    lab = ctx.lab
    lab.pump.set_tones({t: {"amplitude": 0.0} for t in ctx.config.pumps.tones}
                       | {tone: {"amplitude": 0.0, "frequency": frequency}})  # fmt: skip
    lab.pump.output(True)
    played = float(lab.pump.tone(tone).frequency())
    try:
        meta = make_plan(lab, **plan)
        ds = sweep_pump_amplitude(lab, tone, list(amplitudes), progress=False, **plan)
    finally:
        lab.pump.set_tones({tone: {"amplitude": 0.0}})
        pump_off(lab)
    ctx.count_acquisition(len(amplitudes) * plan_acquisitions(meta))
    ctx.record_run(ds.run_id)
    return ds, played


def apply_flux(lab: Any, offset_current: float) -> None:
    flux = lab.flux
    if abs(flux.offset_current() - offset_current) > 1e-12:
        flux.offset_current(offset_current)
    if not flux.output():
        flux.output(True)
    if abs(flux.flux()) > 1e-6:
        flux.flux(0.0)


def apply_settings(lab: Any, st: Mapping[str, Mapping[str, float]]) -> None:
    lab.pump.set_tones({t: dict(v) for t, v in st.items()})
    lab.pump.output(True)


def settings_dict(s: Settings) -> dict[str, dict[str, float]]:
    return {
        t: {"amplitude": float(s.amplitude[t]), "phase": float(s.phase[t]),
            "frequency": float(s.frequency[t])}
        for t in s.amplitude
    }  # fmt: skip


def settings_of(d: Mapping[str, Mapping[str, float]]) -> Settings:
    return Settings(
        {t: v["amplitude"] for t, v in d.items()},
        {t: v["phase"] for t, v in d.items()},
        {t: v["frequency"] for t, v in d.items()},
    )


class PointReads:
    """Complex point reads of chosen (out, in) elements at the band centres (1 acquisition each)."""

    def __init__(self, ctx: CalibrationContext, paths: Sequence[tuple[str, str]],
                 centres: Mapping[str, float]) -> None:  # fmt: skip
        lab = ctx.lab
        self.ctx, self.lab, self.paths = ctx, lab, list(paths)
        ports = sorted({m for p in paths for m in p}, key=list(port_modes(lab.config)).index)
        meta = make_plan(lab, span=1e3, points=2, centres=dict(centres), paths=self.paths,
                         ports=ports)  # fmt: skip
        self.meta = meta
        num = meta.port_numbers
        self.reads = []
        for o, i in self.paths:
            m = meta.plan.maps[(o, i)]
            self.reads.append(
                (
                    (num[o], num[i]),
                    float(meta.plan.centres[i]),
                    float(m.offset),
                    float(m.multiplier),
                )
            )

    def read(self) -> np.ndarray:
        out = []
        for pair, f, offset, mult in self.reads:
            out.append(complex(self.lab.vna.point([pair], f, offset, mult)[0]))
            self.ctx.count_acquisition()
        return np.array(out)


def device_model(ctx: CalibrationContext, theta: Mapping[str, float] | None = None) -> DeviceModel:
    """The :class:`DeviceModel` from the ``modes`` and ``pump_<tone>`` results."""
    cfg = ctx.config
    modes_r = ctx.result("modes")["modes"]
    from labnr.calibrate.pump_window import internal_modes

    modes = {
        m: ModeModel(v["frequency"], v["kappa_ext"], v["kappa_int"]) for m, v in modes_r.items()
    }
    # modes without a VNA port, as the pump nodes measured them (sideband windows)
    for m, v in internal_modes(ctx).items():
        modes[m] = ModeModel(v["frequency"], 0.0, v["kappa_int"])
    tones = {}
    for t, tc in cfg.pumps.tones.items():
        r = ctx.result(f"pump_{t}")
        tones[t] = ToneModel(tuple(tc.modes), tc.kind, r["eta"], float((theta or {}).get(t, 0.0)),
                             float(tc.max_amplitude), dict(r["stark"]))  # fmt: skip
    pump = getattr(ctx.lab, "pump", None)
    budgets = pump.amplitude_budgets() if hasattr(pump, "amplitude_budgets") else []
    return DeviceModel(modes, tones, list(port_modes(cfg)), budgets)


def line_gains(ctx: CalibrationContext) -> dict[str, float]:
    """|line gain| of every measured element ``"out,in"`` from the mode and pump fits."""
    out = {f"{m},{m}": v["line_gain"] for m, v in ctx.result("modes")["modes"].items()}
    for t in ctx.config.pumps.tones:
        out.update(ctx.result(f"pump_{t}")["line_gain"])
    if "loop_phase" in ctx.state:
        # |factor| of a reverse path fitted with the model is that path's line gain
        for key, (re, im) in ctx.result("loop_phase")["factors"].items():
            out.setdefault(key, float(abs(complex(re, im))))
    # a path measured only the other way: |G_oi| = |G_oo| |G_ii| / |G_io|
    # (input and output line gains of each port, from the reflections)
    fwd, rev = ctx.config.target.paths()
    for o, i in [*fwd, *rev]:
        if f"{o},{i}" not in out and f"{i},{o}" in out and f"{o},{o}" in out \
                and f"{i},{i}" in out:  # fmt: skip
            out[f"{o},{i}"] = out[f"{o},{o}"] * out[f"{i},{i}"] / out[f"{i},{o}"]
    return out


def measured_figures(
    ctx: CalibrationContext, centres: Mapping[str, float], gains: Mapping[str, float]
) -> dict[str, Any]:
    """One stored S-matrix at band centre (narrow span); figures with the line gains removed."""
    lab, cfg = ctx.lab, ctx.config
    ds = measure_smatrix(lab, centres=dict(centres), span=2e6, points=5, progress=False)
    ctx.record_run(ds.run_id)
    meta = make_plan(lab, centres=dict(centres), span=2e6, points=5)
    ctx.count_acquisition(plan_acquisitions(meta))
    data = load(ds.run_id)
    ports = [str(p) for p in data["out"].values]
    S = data["S"].isel(frequency=data.sizes["frequency"] // 2).sel(out=ports, **{"in": ports})
    S = np.asarray(S.values, dtype=complex)
    for a, o in enumerate(ports):
        for b, i in enumerate(ports):
            S[a, b] /= gains.get(f"{o},{i}", 1.0)
    fwd, rev = cfg.target.paths()
    iso, loss, refl = figures(S, SimpleNamespace(ports=ports), fwd, rev)  # type: ignore[arg-type]
    return {"isolation_db": iso, "insertion_loss_db": loss, "reflection_db": refl,
            "run_id": ds.run_id,
            "S_db": (20 * np.log10(np.maximum(np.abs(S), 1e-15))).round(2).tolist()}  # fmt: skip


def point_figures(
    ctx: CalibrationContext,
    centres: Mapping[str, float],
    gains: Mapping[str, float],
    known: Mapping[tuple[str, str], complex] | None = None,
) -> dict[str, Any]:
    """Figures from point reads at band centre of the forward, reverse and reflection paths.

    ``known``: elements already read at the present settings (not read again).
    One acquisition per element read; line gains removed as in :func:`measured_figures`.
    """
    cfg = ctx.config
    fwd, rev = cfg.target.paths()
    ports = list(port_modes(cfg))
    used = [p for p in [*fwd, *rev, *((m, m) for m in ports)]]
    known = dict(known or {})
    todo = [p for p in dict.fromkeys(used) if p not in known]
    values = dict(known)
    if todo:
        values.update(zip(todo, PointReads(ctx, todo, centres).read(), strict=True))
    S = np.zeros((len(ports), len(ports)), complex)
    for (o, i), z in values.items():
        S[ports.index(o), ports.index(i)] = z / gains.get(f"{o},{i}", 1.0)
    iso, loss, refl = figures(S, SimpleNamespace(ports=ports), fwd, rev)  # type: ignore[arg-type]
    return {"isolation_db": iso, "insertion_loss_db": loss, "reflection_db": refl,
            "run_id": None, "reads": len(todo),
            "S_db": (20 * np.log10(np.maximum(np.abs(S), 1e-15))).round(2).tolist()}  # fmt: skip


def fit_reflection(fit_resonance: Any, delta: np.ndarray, trace: np.ndarray, run_id: Any,
                    conjugate: bool | None) -> tuple[Any, bool]:  # fmt: skip
    """Fit a reflection in the model's phasor convention; find the VNA's convention once.

    The model works with e^{-i w t}; an analyser reporting e^{+j w t} (engineering
    convention) shows the complex conjugate. Both are tried the first time.
    """
    tries = [conjugate] if conjugate is not None else [False, True]
    err: Exception | None = None
    for conj in tries:
        try:
            return fit_resonance(delta, np.conj(trace) if conj else trace, run_id=run_id), conj
        except Exception as exc:  # noqa: BLE001 - try the other convention
            err = exc
    assert err is not None
    raise err


def model_convention(ctx: CalibrationContext, z: np.ndarray) -> np.ndarray:
    """Measured phasors in the model's convention (conjugated if the VNA's is the other)."""
    return np.conj(z) if ctx.result("modes").get("conjugate") else z


def solve_realisable(ctx: CalibrationContext, model: DeviceModel,
                     forward: Sequence[tuple[str, str]],
                     reverse: Sequence[tuple[str, str]]) -> OperatingPoint:  # fmt: skip
    """:func:`solve_operating_point`, then again at the pump frequencies the pump can play.

    A pump on a frequency grid (AWG records) moves each tone by up to half a
    step and may leave a loop unclosed; :func:`realise` puts the tones on the
    grid with every loop closed, and amplitudes and phases are solved again for
    those fixed frequencies.
    """
    op = solve_operating_point(model, forward, reverse)
    pump = getattr(ctx.lab, "pump", None)
    if not hasattr(pump, "realisable_frequency"):
        return op
    st = realise(model, op.settings, pump.realisable_frequency)
    moved = max(abs(st.frequency[t] - op.settings.frequency[t]) for t in st.frequency)
    if moved < 1e-3:
        return op
    ctx.log.info("pump frequencies moved by up to %.3g Hz to the pump's grid; solving again",
                 moved)  # fmt: skip
    return solve_operating_point(model, forward, reverse, start=st, retune_pumps=False)
