"""One-page PNG report of a calibration: S-matrix before/after, fits, isolation vs frequency.

``labnr calibrate CONFIG`` writes it to the lab's data dir as
``calibration_<name>_<UTC timestamp>.png`` (``--no-report`` skips it):

- (a) |S_ij| in dB (line gains removed) vs offset from the band centres for every
  port pair: *before* = pumps off (the ``modes`` node's reflections), *after* = at
  the operating point (the verification sweep);
- (b) every mode's pumps-off reflection with its resonance fit re-evaluated from the
  stored parameters (:func:`labnr.fit.resonance.reflection`; the mismatch angle φ is
  not stored and taken as 0), and the pump calibration (η, Stark coefficients per
  tone, loop phase) as a table;
- (c) forward and reverse |S| and their ratio (isolation) vs frequency for every
  directional path at the operating point, with the 40 dB target;
- (d) the figures measured at band centre, acquisitions, virtual time, node statuses.

The *after* traces come from one verification sweep (:func:`verification_sweep`)
made after the calibration: its acquisitions are counted apart from the
calibration's (``report_acquisitions`` in the ``--json`` line) and its run id is
added to ``run_ids``. After a failed calibration the report shows what exists;
a missing piece leaves a note in its panel, never an exception.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from labnr import fileio

__all__ = ["TARGET_DB", "build_report", "make_report", "report_path", "verification_sweep"]

log = logging.getLogger("labnr.calibrate.report")

TARGET_DB = 40.0  #: isolation target line in panel (c), dB
SPAN_LINEWIDTHS = 4.0  #: verification sweep span in units of the widest mode's κ
POINTS = 201  #: verification sweep points

Loader = Callable[[Any], Any]
Pair = tuple[str, str]
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")


# ------------------------------------------------------------------ measuring


def verification_sweep(lab: Any, state: Any, *, span_linewidths: float = SPAN_LINEWIDTHS,
                       points: int = POINTS) -> dict[str, Any]:  # fmt: skip
    """Measure forward, reverse and reflections over a few linewidths at the operating point.

    Applies the stored operating-point settings and stores one ``measure_smatrix``
    run around its band centres. Nothing is counted in the calibration context.

    Returns
    -------
    dict
        ``run_id`` and ``acquisitions`` (VNA acquisitions the sweep made).
    """
    from labnr.calibrate.circulator_helpers import apply_settings, plan_acquisitions
    from labnr.measure import make_plan, measure_smatrix

    op = state.result("operating_point")
    modes = state.result("modes")["modes"]
    fwd, rev = lab.config.target.paths()
    ports = [m for m in lab.config.modes if lab.config.modes[m].vna_port and m in modes]
    kappa = max(float(v["kappa_ext"]) + float(v["kappa_int"]) for v in modes.values())
    paths = list(dict.fromkeys([*fwd, *rev, *((m, m) for m in ports)]))
    # the directional band of a device with unseen modes (mechanical windows) is far
    # narrower than its cavities: then the config's VNA span, which is set for it
    span = min(span_linewidths * kappa, float(lab.config.vna.span))
    kw = {"centres": dict(op["band_centres"]), "span": span,
          "points": points, "paths": paths}  # fmt: skip
    apply_settings(lab, op["settings"])
    meta = make_plan(lab, **kw)
    ds = measure_smatrix(lab, progress=False, **kw)
    return {"run_id": ds.run_id, "acquisitions": int(plan_acquisitions(meta))}


# ------------------------------------------------------------------ gathering


def _result(state: Any, node: str) -> dict[str, Any] | None:
    try:
        return state.result(node) if node in state else None
    except Exception:  # noqa: BLE001 - a report shows what exists
        return None


def _load(loader: Loader, run_id: Any) -> Any:
    if run_id is None:
        return None
    try:
        return loader(run_id)
    except Exception as exc:  # noqa: BLE001
        log.warning("report: could not load run %s: %s", run_id, exc)
        return None


def _gains(state: Any) -> dict[str, float]:
    """|line gain| per element ``"out,in"`` from the stored results (1 where unknown)."""
    out: dict[str, float] = {}
    modes = _result(state, "modes")
    if modes:
        out.update({f"{m},{m}": float(v["line_gain"]) for m, v in modes["modes"].items()})
    for node in state.nodes():
        if node.startswith("pump_"):
            out.update((_result(state, node) or {}).get("line_gain", {}))
    op = _result(state, "operating_point")
    if op:
        out.update(op.get("line_gain", {}))
    return out


def _trace(ds: Any, o: str, i: str, gain: float = 1.0) -> tuple[np.ndarray, np.ndarray] | None:
    """(offsets Hz, complex S with the line gain removed) of one element, or None."""
    if ds is None or o not in ds["out"].values or i not in ds["in"].values:
        return None
    s = np.asarray(ds["S"].sel(out=o, **{"in": i}).values, dtype=complex)
    if s.ndim != 1 or not np.isfinite(s).any():
        return None
    return np.asarray(ds["frequency"].values, dtype=float), s / (gain or 1.0)


def _db(z: np.ndarray) -> np.ndarray:
    return 20 * np.log10(np.maximum(np.abs(z), 1e-15))


def _unit(span: float) -> tuple[float, str]:
    for scale, name in ((1e6, "MHz"), (1e3, "kHz")):
        if span >= 2 * scale:
            return scale, name
    return 1.0, "Hz"


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9,
            color="0.4", wrap=True)  # fmt: skip


def _paths(config: Any) -> tuple[list[Pair], list[Pair], list[str]]:
    fwd, rev = config.target.paths()
    ports = [m for m in config.modes if config.modes[m].vna_port]
    return list(fwd), list(rev), ports


# ------------------------------------------------------------------ panels


def _panel_smatrix(fig: Figure, spec: Any, config: Any, before: Any, after: Any,
                   gains: Mapping[str, float], scale: tuple[float, str]) -> None:  # fmt: skip
    """(a): an N x N grid of |S_oi| dB, before (pumps off, dashed) and after (solid)."""
    fwd, rev, ports = _paths(config)
    n = len(ports)
    grid = spec.subgridspec(n, n, hspace=0.45, wspace=0.3)
    first: Axes | None = None
    for r, o in enumerate(ports):
        for c, i in enumerate(ports):
            ax = fig.add_subplot(grid[r, c], sharex=first)
            first = first or ax
            kind = "fwd" if (o, i) in fwd else "rev" if (o, i) in rev else "refl" if o == i else ""
            colour = {"fwd": "tab:green", "rev": "tab:red", "refl": "tab:blue"}.get(kind, "0.3")
            ax.set_title(f"S_{o}{i} ({o}<-{i}) {kind}", fontsize=8, color=colour)
            g = gains.get(f"{o},{i}", 1.0)
            tb, ta = _trace(before, o, i, g), _trace(after, o, i, g)
            if tb is not None:
                ax.plot(tb[0] / scale[0], _db(tb[1]), "--", color="0.55", lw=1, label="before")
            if ta is not None:
                ax.plot(ta[0] / scale[0], _db(ta[1]), "-", color=colour, lw=1.3, label="after")
            if tb is None and ta is None:
                _note(ax, "no data" if kind == "refl" else "no data (pumps off: no conversion)")
            ax.tick_params(labelsize=7)
            if r == n - 1:
                ax.set_xlabel(f"offset ({scale[1]})", fontsize=7)
            if c == 0:
                ax.set_ylabel("|S| (dB)", fontsize=7)
            if r == 0 and c == 0 and ax.get_lines():
                ax.legend(fontsize=6, loc="lower left")
    if first is not None:
        first.annotate("(a) S-matrix: before (pumps off) / after (operating point)",
                       (0, 1.35), xycoords="axes fraction", fontsize=11, weight="bold")  # fmt: skip


def _panel_fits(fig: Figure, spec: Any, state: Any, before: Any, scale: tuple[float, str]) -> None:
    """(b): reflections with their resonance fits, and the pump calibration table."""
    from labnr.fit.resonance import reflection

    grid = spec.subgridspec(2, 1, height_ratios=(1.2, 1), hspace=0.35)
    modes = (_result(state, "modes") or {}).get("modes", {})
    names = list(modes) or ["-"]
    row = grid[0].subgridspec(1, len(names), wspace=0.3)
    centres = dict(getattr(before, "attrs", {}).get("band_centres", {}) or {})
    conjugate = bool((_result(state, "modes") or {}).get("conjugate"))
    for k, m in enumerate(names):
        ax = fig.add_subplot(row[0, k])
        ax.set_title(f"mode {m}: reflection phase, pumps off", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(f"offset ({scale[1]})", fontsize=7)
        if k == 0:
            ax.set_ylabel("arg S (deg), line removed", fontsize=7)
            ax.annotate("(b) fits", (0, 1.12), xycoords="axes fraction", fontsize=11,
                        weight="bold")  # fmt: skip
        v = modes.get(m)
        tr = _trace(before, m, m)
        if tr is None or v is None or m not in centres:
            _note(ax, "no modes data")
            continue
        delta, s = tr
        if conjugate:
            s = np.conj(s)  # into the model's phasor convention, as the fit saw it
        f0 = float(v["frequency"]) - float(centres[m])
        fit = reflection(delta, f0, float(v["kappa_ext"]), float(v["kappa_int"]))
        s = s / _background(delta, s, fit)
        ax.plot(delta / scale[0], np.degrees(np.angle(s)), ".", ms=2.5, color="0.35",
                label="data")  # fmt: skip
        ax.plot(delta / scale[0], np.degrees(np.angle(fit)), "-", color="tab:red", lw=1.2,
                label="fit")  # fmt: skip
        ax.set_ylim(-200, 200)
        ax.set_yticks([-180, -90, 0, 90, 180])
        ax.text(0.03, 0.04, f"f0 {float(v['frequency']) / 1e9:.5f} GHz\n"
                f"k_ext {float(v['kappa_ext']) / 1e6:.3g} MHz\n"
                f"k_int {float(v['kappa_int']) / 1e6:.3g} MHz\n"
                f"dip {float(np.ptp(_db(fit))):.2f} dB", transform=ax.transAxes,
                fontsize=6.5, family="monospace", va="bottom")  # fmt: skip
        if k == 0:
            ax.legend(fontsize=6, loc="lower right")  # after the plots: data and fit exist
    ax = fig.add_subplot(grid[1])
    ax.axis("off")
    ax.text(0, 1, _pump_table(state), family="monospace", fontsize=8, va="top",
            transform=ax.transAxes)  # fmt: skip


def _background(delta: np.ndarray, s: np.ndarray, model: np.ndarray) -> np.ndarray:
    """The line's a e^{i(alpha - 2 pi delta tau)} under ``s`` given the resonance ``model``.

    Not stored by the ``modes`` node, so taken from data/model by a straight line
    through the unwrapped phase (a linear fit, not a re-fit of the resonance).
    """
    q = s / model
    slope, alpha = np.polyfit(delta, np.unwrap(np.angle(q)), 1)
    return float(np.median(np.abs(q))) * np.exp(1j * (alpha + slope * delta))


def _pump_table(state: Any) -> str:
    pumps = [n for n in state.nodes() if n.startswith("pump_")]
    if not pumps:
        return "pump calibration: no results"
    modes = sorted({m for p in pumps for m in (_result(state, p) or {}).get("stark", {})})
    theta = (_result(state, "loop_phase") or {}).get("theta", {})
    head = f"{'tone':<6}{'eta MHz/V':>10}" + "".join(f"{'Stark ' + m:>11}" for m in modes)
    etas = [abs((_result(state, p) or {}).get("eta", np.nan)) for p in pumps]
    k_unit = bool(etas) and np.nanmax(etas) < 1e6  # kHz/V couplings (mechanical links)
    if k_unit:
        head = head.replace("eta MHz/V", "eta kHz/V")
    lines = ["pump calibration (Stark in MHz/V^2)", head + f"{'loop ph deg':>12}"]
    internal = []
    for p in pumps:
        r = _result(state, p) or {}
        t = p[len("pump_") :]
        st = "".join(f"{r.get('stark', {}).get(m, np.nan) / 1e6:>11.1f}" for m in modes)
        th = f"{np.degrees(theta[t]):>12.1f}" if t in theta else f"{'-':>12}"
        eta = r.get("eta", np.nan) / (1e3 if k_unit else 1e6)
        lines.append(f"{t:<6}{eta:>10.2f}{st}{th}")
        for m, v in (r.get("internal") or {}).items():
            internal.append(f"  {m} via {t}: {v['frequency'] / 1e6:.6f} MHz, "
                            f"linewidth {v['kappa_int']:.1f} Hz")  # fmt: skip
    if internal:
        lines += ["modes without a port (sideband windows):", *internal]
    return "\n".join(lines)


def isolation_traces(config: Any, after: Any, gains: Mapping[str, float]
                     ) -> list[dict[str, Any]]:  # fmt: skip
    """Per directional path: offsets, forward and reverse |S| in dB and their ratio."""
    fwd, rev, _ = _paths(config)
    out = []
    for f, r in zip(fwd, rev, strict=True):
        tf, tr = _trace(after, *f, gains.get(f"{f[0]},{f[1]}", 1.0)), _trace(
            after, *r, gains.get(f"{r[0]},{r[1]}", 1.0))  # fmt: skip
        if tf is None or tr is None:
            continue
        out.append({"forward": f, "reverse": r, "offset": tf[0], "forward_db": _db(tf[1]),
                    "reverse_db": _db(tr[1]), "isolation_db": _db(tf[1]) - _db(tr[1])})  # fmt: skip
    return out


def _panel_isolation(fig: Figure, spec: Any, traces: Sequence[Mapping[str, Any]],
                     scale: tuple[float, str]) -> None:  # fmt: skip
    """(c): forward and reverse |S| (top) and their ratio (bottom) vs frequency."""
    grid = spec.subgridspec(2, 1, hspace=0.08, height_ratios=(1, 1.2))
    top = fig.add_subplot(grid[0])
    bottom = fig.add_subplot(grid[1], sharex=top)
    top.set_title("(c) isolation vs frequency at the operating point", loc="left",
                  fontsize=11, weight="bold")  # fmt: skip
    if not traces:
        _note(top, "no verification sweep: the calibration did not reach its operating point")
        _note(bottom, "no isolation data")
        bottom.set_ylim(0, TARGET_DB + 20)
    for k, t in enumerate(traces):
        c = _COLOURS[k % len(_COLOURS)]
        (o, i), (ro, ri) = t["forward"], t["reverse"]
        x = t["offset"] / scale[0]
        top.plot(x, t["forward_db"], "-", color=c, lw=1.3, label=f"fwd S_{o}{i}")
        top.plot(x, t["reverse_db"], "--", color=c, lw=1.0, label=f"rev S_{ro}{ri}")
        bottom.plot(x, t["isolation_db"], "-", color=c, lw=1.3, label=f"{i}->{o}")
    bottom.axhline(TARGET_DB, color="k", ls=":", lw=1.2, label=f"target {TARGET_DB:.0f} dB")
    for ax in (top, bottom):
        ax.axvline(0, color="0.7", lw=0.8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    top.set_ylabel("|S| (dB)", fontsize=9)
    top.tick_params(labelbottom=False)
    bottom.set_ylabel("isolation |S_fwd/S_rev| (dB)", fontsize=9)
    bottom.set_xlabel(f"offset from band centre ({scale[1]})", fontsize=9)
    if traces:
        top.legend(fontsize=7, ncol=2, loc="lower center")
        bottom.legend(fontsize=7, loc="upper right")
        hi = max(float(np.nanmax(t["isolation_db"])) for t in traces)
        bottom.set_ylim(min(0.0, *(float(np.nanmin(t["isolation_db"])) for t in traces)),
                        max(hi, TARGET_DB) + 8)  # fmt: skip


def _clip(text: str, width: int = 98) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _fmt(v: Any, f: str = "{:.1f}") -> str:
    try:
        return "-" if v is None or not np.isfinite(float(v)) else f.format(float(v))
    except (TypeError, ValueError):
        return "-"


def _panel_text(fig: Figure, spec: Any, config: Any, state: Any, graph: Any,
                summary: Mapping[str, Any], traces: Sequence[Mapping[str, Any]]
                ) -> None:  # fmt: skip
    """(d): figures at band centre, counts, times, node statuses, operating point."""
    ax = fig.add_subplot(spec)
    ax.axis("off")
    ax.set_title("(d) summary", loc="left", fontsize=11, weight="bold")
    status = getattr(graph, "status", None) or summary.get("status", "unknown")
    lines = [f"device {config.name}   target {config.target.kind}   calibration {status}"]
    if getattr(graph, "reason", ""):
        lines.append(_clip(f"  {graph.reason}"))
    lines += [
        "",
        "measured at band centre (worst over paths; point reads of the calibration):",
        f"  isolation {_fmt(summary.get('isolation_db'))} dB   insertion loss "
        f"{_fmt(summary.get('insertion_loss_db'), '{:.2f}')} dB   reflection "
        f"{_fmt(summary.get('reflection_db'))} dB",
    ]
    if traces:
        at0 = [float(np.interp(0.0, t["offset"], t["isolation_db"])) for t in traces]
        loss = [-float(np.interp(0.0, t["offset"], t["forward_db"])) for t in traces]
        lines.append(f"  verification sweep: isolation {min(at0):.1f} dB, insertion loss "
                     f"{max(loss):.2f} dB at centre")  # fmt: skip
    lines += [
        f"acquisitions: calibration {summary.get('acquisitions', '-')}, "
        f"report sweep {summary.get('report_acquisitions', 0)}   virtual time "
        f"{_fmt(summary.get('virtual_time_s'))} s",
        "",
        f"{'node':<17}{'status':<9}{'acq':>4}  summary",
    ]
    for n in getattr(graph, "nodes", []) or []:
        text = "; ".join(t for t in (n.summary, n.reason) if t)
        lines.append(_clip(f"{n.name:<17}{n.status:<9}{n.acquisitions:>4}  {text}"))
    op = _result(state, "operating_point")
    if op:
        lines += ["", "operating point   amplitude V   phase deg   frequency GHz"]
        for t, v in op["settings"].items():
            lines.append(f"  {t:<15}{v['amplitude']:>11.4f}{np.degrees(v['phase']):>12.2f}"
                         f"{v['frequency'] / 1e9:>16.9f}")  # fmt: skip
    if summary.get("state_file"):
        lines += ["", _clip(f"state: {summary['state_file']}")]
    if summary.get("report_error"):
        lines += [_clip(f"report: {summary['report_error']}")]
    ax.text(0, 1, "\n".join(lines), family="monospace", fontsize=7.6, va="top",
            transform=ax.transAxes)  # fmt: skip


# ------------------------------------------------------------------ the page


def build_report(state: Any, config: Any, *, graph: Any = None,
                 summary: Mapping[str, Any] | None = None, after: Any = None,
                 loader: Loader | None = None) -> Figure:  # fmt: skip
    """The report as a matplotlib :class:`~matplotlib.figure.Figure` (Agg, no GUI).

    Parameters
    ----------
    state
        The :class:`~labnr.calibrate.state.CalibrationState` (results and run ids).
    config
        The experiment config (ports, target paths).
    graph
        The :class:`~labnr.calibrate.graph.GraphReport` (node statuses), optional.
    summary
        The ``--json`` figures (isolation, acquisitions, ...), optional.
    after
        The verification sweep's dataset (``labnr.measure.load``) or ``None``.
    loader
        Loads a run id (default :func:`labnr.measure.load` on the config's database);
        used for the ``modes`` node's pumps-off data.
    """
    summary = dict(summary or {})
    if loader is None:
        loader = _default_loader(config)
    rec = state.get("modes") if "modes" in state else None
    before = _load(loader, rec.run_ids[0] if rec and rec.run_ids else None)
    gains = _gains(state)
    spans = [float(np.ptp(d["frequency"].values)) for d in (before, after) if d is not None]
    scale = _unit(max(spans, default=1e8))
    traces = isolation_traces(config, after, gains)
    fig = Figure(figsize=(17, 12), dpi=100)
    FigureCanvasAgg(fig)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    fig.suptitle(f"labnr calibration report: {config.name} ({stamp})", fontsize=14,
                 weight="bold")  # fmt: skip
    outer = fig.add_gridspec(2, 2, left=0.05, right=0.98, top=0.9, bottom=0.05, hspace=0.3,
                             wspace=0.18)  # fmt: skip
    panels: list[tuple[str, Callable[[], None]]] = [
        ("(a)", lambda: _panel_smatrix(fig, outer[0, 0], config, before, after, gains, scale)),
        ("(b)", lambda: _panel_fits(fig, outer[0, 1], state, before, scale)),
        ("(c)", lambda: _panel_isolation(fig, outer[1, 0], traces, scale)),
        ("(d)", lambda: _panel_text(fig, outer[1, 1], config, state, graph, summary, traces)),
    ]
    for name, draw in panels:
        try:
            draw()
        except Exception as exc:  # noqa: BLE001 - one broken panel must not cost the page
            log.warning("report panel %s failed: %s", name, exc)
            fig.text(0.5, 0.5, f"panel {name} failed: {exc}", fontsize=8, color="red")
    return fig


def _default_loader(config: Any) -> Loader:
    from labnr.measure import load

    db = None
    try:
        db = config.path(config.storage.database)
    except Exception:  # noqa: BLE001
        db = None
    return lambda run_id: load(run_id, db=db)


def report_path(config: Any, now: datetime | None = None) -> Path:
    """``<data_dir>/calibration_<name>_<UTC timestamp>.png``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(config.name)).strip("._") or "device"
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S_%fZ")
    return Path(config.path(config.storage.data_dir)) / f"calibration_{safe}_{stamp}.png"


def make_report(lab: Any, ctx: Any, graph: Any, summary: Mapping[str, Any], *,
                sweep: bool = True) -> dict[str, Any]:  # fmt: skip
    """Verification sweep (if the calibration is complete), then the PNG. Never raises.

    Returns
    -------
    dict
        ``report`` (the PNG path, or ``None``), ``report_acquisitions``,
        ``report_run_id`` and, on a problem, ``report_error``.
    """
    out: dict[str, Any] = {"report": None, "report_acquisitions": 0, "report_run_id": None}
    config, state = ctx.config, ctx.state
    after = None
    done = getattr(graph, "status", "ok") == "ok" and "operating_point" in state
    if sweep and done and lab is not None:
        try:
            got = verification_sweep(lab, state)
            out["report_run_id"], out["report_acquisitions"] = got["run_id"], got["acquisitions"]
            after = _load(_default_loader(config), got["run_id"])
        except Exception as exc:  # noqa: BLE001 - the report must still come out
            log.error("report: verification sweep failed: %s", exc)
            out["report_error"] = f"verification sweep failed: {exc}"
    try:
        fig = build_report(state, config, graph=graph, summary={**summary, **out}, after=after)
        path = report_path(config)
        with fileio.atomic_writer(path) as f:  # atomic, never through a symbolic link
            fig.savefig(f, format="png", dpi=100)
        out["report"] = str(path)
    except Exception as exc:  # noqa: BLE001
        log.error("report: could not write the PNG: %s", exc)
        out["report_error"] = f"report failed: {exc}"
    return out
