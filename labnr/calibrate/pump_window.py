"""Pump calibration of a tone that links a port mode to a mode without a VNA port.

Used by :class:`labnr.calibrate.circulator.PumpTone` when the config's tone
couples a port mode (measured in reflection) to a mode no VNA port sees — the
mechanical modes of an electromechanical circulator. The tone alone is set on
the red sideband of the *expected* unseen-mode frequency, at two amplitudes;
the port mode's reflection over the config's (narrow) VNA span shows the
sideband window, and :func:`labnr.fit.fit_sideband_window` gives the coupling
per volt, the unseen mode's actual frequency and its linewidth.

What this cannot measure: the Stark shift of the port mode (a few kHz against
MHz linewidths is not resolved in a kHz-wide span), reported as 0 with
``stark_measured: False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labnr.calibrate.circulator_helpers import sweep_tone_alone
from labnr.calibrate.node import CalibrationContext, NodeResult
from labnr.measure import load
from labnr.measure.acquire import port_modes

__all__ = ["WINDOW_POINTS", "internal_modes", "run_window_tone", "window_span", "window_tone"]

#: Trace points of a sideband-window sweep (the window is a few % of the span).
WINDOW_POINTS = 401


def window_span(ctx: CalibrationContext, port: str) -> float:
    """The config's VNA span, capped at 5 linewidths of the port mode."""
    mode = ctx.result("modes")["modes"][port]
    return float(min(ctx.config.vna.span, 5 * (mode["kappa_ext"] + mode["kappa_int"])))


def run_window_tone(ctx: CalibrationContext, tone: str, fractions: Sequence[float]) -> NodeResult:
    """Measure and fit the sideband window of ``tone`` (module docstring)."""
    from labnr.fit import fit_sideband_window

    cfg = ctx.config
    tc = cfg.pumps.tones[tone]
    if tc.kind != "conversion":
        return NodeResult.failure(
            f"tone {tone!r} couples {tc.modes[0]!r} and {tc.modes[1]!r} with kind "
            f"{tc.kind!r}; a mode without a VNA port can only be calibrated through a "
            "conversion tone (a gain tone's window is not implemented)"
        )
    ports = list(port_modes(cfg))
    port = next(m for m in tc.modes if m in ports)
    hidden = next(m for m in tc.modes if m != port)
    modes = ctx.result("modes")["modes"]
    f_port = float(modes[port]["frequency"])
    f_hidden = float(cfg.modes[hidden].frequency)
    f_pump = abs(f_port - f_hidden)
    amps = [float(tc.max_amplitude) * x for x in fractions]
    centres = {m: float(v["frequency"]) for m, v in modes.items()}
    # f_pump as realised (the AWG's grid): the window's position is relative to it
    ds, f_pump = sweep_tone_alone(ctx, tone, f_pump, amps, centres=centres,
                                  span=window_span(ctx, port), points=WINDOW_POINTS,
                                  paths=[(port, port)])  # fmt: skip
    data = load(ds.run_id)
    S = data["S"].sel(out=port, **{"in": port})
    knob = next(d for d in S.dims if d != "frequency")
    y = np.asarray(S.transpose(knob, "frequency").values, dtype=complex)
    if ctx.result("modes").get("conjugate"):
        y = np.conj(y)  # into the model's convention
    delta = np.asarray(data["frequency"].values, dtype=float)
    measured_amps = np.asarray(data[knob].values, dtype=float)
    fit = fit_sideband_window(delta, y, measured_amps, float(modes[port]["kappa_ext"]),
                              float(modes[port]["kappa_int"]), run_id=ds.run_id)  # fmt: skip
    v, e = fit.values, fit.errors
    # the window sits at probe = f_pump + f_m (port above) or f_m - f_pump (below),
    # delta_m from the port's fitted frequency
    sign = 1.0 if f_port > f_hidden else -1.0
    f_m = f_port - sign * f_pump + float(v["delta_m"])
    internal = {hidden: {"frequency": f_m, "kappa_int": float(v["gamma_m"]),
                         "frequency_error": float(e["delta_m"]),
                         "kappa_int_error": float(e["gamma_m"])}}  # fmt: skip
    return NodeResult(
        {"eta": float(v["eta"]), "eta_error": float(e["eta"]),
         "stark": {m: 0.0 for m in ports}, "stark_measured": False,
         "line_gain": {}, "frequency": f_pump, "internal": internal,
         "redchi": float(fit.redchi)},
        summary=f"eta {v['eta'] / 1e3:.2f} kHz/V; {hidden} at "
                f"{f_m / 1e6:.6f} MHz ({f_m - f_hidden:+.1f} Hz from expected), "
                f"linewidth {v['gamma_m']:.1f} Hz",
    )  # fmt: skip


def window_tone(ctx: CalibrationContext, tone: str) -> bool:
    """Whether ``tone`` links a port mode to a mode without a VNA port."""
    ports = set(port_modes(ctx.config))
    on_port = [m in ports for m in ctx.config.pumps.tones[tone].modes]
    return any(on_port) and not all(on_port)


def internal_modes(ctx: CalibrationContext) -> dict[str, dict[str, Any]]:
    """Unseen modes measured by the pump nodes, averaged over the tones that saw each."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for t in ctx.config.pumps.tones:
        name = f"pump_{t}"
        if name in ctx.state:
            for m, r in (ctx.result(name).get("internal") or {}).items():
                seen.setdefault(m, []).append(r)
    out = {}
    for m, rs in seen.items():
        w = np.array([1 / max(r.get("frequency_error") or 1.0, 1e-3) ** 2 for r in rs])
        out[m] = {
            key: float(np.average([r[key] for r in rs], weights=w))
            for key in ("frequency", "kappa_int")
        }
    return out
