"""``labnr lock CONFIG --duration 24h [--json]``: hold the calibrated device at its operating point.

Opens the lab, runs (or, with a valid state, just checks) the calibration,
applies the operating point, builds the model Jacobian from the calibrated
device model, supervises the lock for ``--duration`` of plant time (virtual
time in simulation), stores the lock log as a QCoDeS run and a report PNG
next to the data, and with ``--json`` prints the lock summary as the last
stdout line. On loss of lock the calibration is re-run from its
``operating_point`` node; success means isolation >= 30 dB.

The calibration and the session are imported lazily: this module is part of
``labnr.lock`` and must not import the virtual lab (truth firewall); the
virtual clock reaches it only as callables via ``session.virtual_lab``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from labnr.lock.controller import (
    ControllerSettings,
    LockController,
    model_jacobian,
    network_elements,
)
from labnr.lock.lab import LabPlant
from labnr.lock.log import LockLog, write_qcodes
from labnr.lock.plant import ErrorSignal, element_name
from labnr.lock.supervisor import LockSupervisor, Reacquisition, SupervisorSettings

__all__ = ["add_lock_arguments", "cmd_lock", "parse_duration", "run_lock"]

NOISE_READS = 4  # reads at lock start that estimate the read noise

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from ``"24h"``, ``"90m"``, ``"3600s"``, ``"1.5d"`` or a bare number of seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(s|m|min|h|d)?\s*", str(text))
    if not m:
        raise ValueError(f"duration {text!r}: use e.g. 24h, 90m, 3600s")
    value = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not value > 0:
        raise ValueError(f"duration {text!r} must be positive")
    return value


def add_lock_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``labnr lock``."""
    parser.add_argument("config", help="experiment config (YAML)")
    parser.add_argument("--duration", default="24h", help="how long to lock (24h, 90m, 3600s)")
    parser.add_argument(
        "--json", action="store_true", help="print the summary as one JSON object, last on stdout"
    )


class _LabLock:
    """Everything the lock needs from the calibration, rebuilt after every re-calibration."""

    def __init__(self, lab: Any, ctx: Any) -> None:
        self.lab, self.cfg = lab, lab.config
        fwd, rev = self.cfg.target.paths()
        self.fwd = [tuple(p) for p in fwd]
        self.rev = [tuple(p) for p in rev]
        self.signal = ErrorSignal.from_paths(self.fwd, self.rev)
        vl = getattr(lab, "virtual_lab", None)
        self.clock = None if vl is None else (lambda: float(vl.clock.now))
        self.sleep = None if vl is None else vl.clock.advance
        self.load(ctx)

    def load(self, ctx: Any) -> None:
        from labnr.calibrate.circulator_helpers import apply_settings, device_model

        op = ctx.result("operating_point")
        lp = ctx.result("loop_phase")
        self.op = op
        apply_settings(self.lab, op["settings"])
        self.model = device_model(ctx, lp["theta"])
        self.convention = "vna" if ctx.result("modes").get("conjugate") else "model"
        self.phase_tone = str(lp["tone"])
        self.plant = LabPlant(self.lab, op, self.rev + self.fwd, phase_tones=[self.phase_tone],
                              clock=self.clock, sleep=self.sleep)  # fmt: skip
        # measurement chain per element: reverse from the loop-phase fit, forward from a read
        chain: dict[str, complex] = {}
        for o, i in self.rev:
            kf = complex(*lp["factors"][f"{o},{i}"])
            chain[element_name(o, i)] = np.conj(kf) if self.convention == "vna" else kf
        first = self.plant.read()
        self.first = first
        # read noise of one error component, from a few repeated reads (the
        # controller's innovation test and drift estimate need the real one;
        # its default 1e-3 is a single unaveraged reading at unit forward gain)
        errs = [self.signal.error(first.s)] + [
            self.signal.error(self.plant.read().s) for _ in range(NOISE_READS - 1)
        ]
        self.read_noise = float(np.sqrt(np.mean(np.var(errs, axis=0, ddof=1))))
        model_s = network_elements(self.network_of(self.values()), convention=self.convention)  # type: ignore[arg-type]
        for o, i in self.fwd:
            n = element_name(o, i)
            chain[n] = complex(first.s[n]) / model_s[n] if abs(model_s[n]) > 0 else 1.0
        self.chain = chain
        self.reference_forward = float(
            np.median([abs(first.s[n]) for n in self.signal.forward_names])
        )

    def values(self) -> dict[str, float]:
        return {n: k.value for n, k in self.plant.knobs().items()}

    def network_of(self, values: Mapping[str, float]) -> Any:
        from labnr.calibrate.operating_point import Settings

        st = self.op["settings"]
        amp = {t: float(v["amplitude"]) for t, v in st.items()}
        ph = {t: float(v["phase"]) for t, v in st.items()}
        freq = {t: float(v["frequency"]) for t, v in st.items()}
        for name, v in values.items():
            _, tone, kind = name.split("_", 2)
            (amp if kind == "amplitude" else ph)[tone] = float(v)
        return self.model.network(Settings(amp, ph, freq))[0]

    def jacobian(self) -> np.ndarray:
        return model_jacobian(self.network_of, self.plant.knobs(), self.signal, chain=self.chain,
                              convention=self.convention)  # type: ignore[arg-type]  # fmt: skip

    def isolation_db(self) -> float:
        return float(np.min(self.signal.isolation_db(self.plant.read().s)))


def run_lock(lab: Any, duration: float, *, out: Any = None) -> tuple[dict[str, Any], LockLog, Path]:
    """Calibrate (or check), lock for ``duration`` s of plant time, store the log.

    Returns (summary, log, path of the report PNG).
    """
    from labnr.calibrate.run import calibrate

    out = out or sys.stderr
    report, ctx = calibrate(lab, out=out)
    if report.exit_code != 0 or "operating_point" not in ctx.state:
        raise RuntimeError("calibration failed; nothing to lock")
    lock = _LabLock(lab, ctx)
    holder: dict[str, Any] = {"lock": lock}

    def reacquire() -> Reacquisition:
        try:
            rep, c = calibrate(lab, from_node="operating_point", out=out)
            if rep.exit_code != 0:
                return Reacquisition(False, message="re-calibration failed")
            # the supervisor keeps its plant: move the new settings into it
            new = _LabLock(lab, c)
            plant = holder["plant"]
            plant.adopt_operating_point(new.plant)
            iso = lock.isolation_db()
            return Reacquisition(iso >= 30.0, jacobian=new.jacobian(),
                                 message=f"re-ran operating_point: {iso:.1f} dB")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a failed re-acquisition parks the device
            return Reacquisition(False, message=f"re-calibration raised {exc!r}")

    plant = lock.plant
    holder["plant"] = plant
    tuning = ControllerSettings(read_noise=lock.read_noise)
    controller = LockController(list(plant.knobs()), lock.jacobian(), tuning)
    settings = SupervisorSettings(reference_forward=lock.reference_forward)
    sup = LockSupervisor(plant, controller, lock.signal, reacquire, settings)
    try:
        summary = sup.run(duration)
    except KeyboardInterrupt:
        plant.safe_state()
        raise
    cfg = lab.config
    meta = {"labnr_config": cfg.name, "labnr_operating_point": lock.op["settings"]}
    run_id = write_qcodes(sup.log, lab.database, sample=cfg.name, metadata=meta)
    png = Path(lab.data_dir) / f"lock_run_{run_id}.png"
    plot_lock(sup.log, png)
    print(f"lock log: run {run_id} in {lab.database}; report {png}", file=out)
    return summary, sup.log, png


def plot_lock(log: LockLog, path: Path) -> None:
    """Isolation vs time, knob corrections and events, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reads = log.reads()
    t0 = log.start_time or 0.0
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    if reads:
        t = (np.array([r.time for r in reads]) - t0) / 3600
        ax1.plot(t, [r.worst_isolation_db for r in reads], ".", ms=2, label="worst path")
    for lvl in (30, 40):
        ax1.axhline(lvl, color="grey", lw=0.8, ls="--")
    ax1.set_ylabel("isolation (dB)")
    ax1.grid(alpha=0.3)
    rows = [r for r in log.rows if r.knobs]
    for k in log.knob_names:
        pts = [(r.time, r.knobs[k]) for r in rows if k in r.knobs]  # type: ignore[index]
        if pts:
            tk, vk = np.array(pts).T
            ax2.plot((tk - t0) / 3600, vk - vk[0], drawstyle="steps-post", label=k)
    ax2.set_ylabel("knob change from start")
    ax2.set_xlabel("time (h)")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    for ev in log.events():
        if ev.event in ("start", "stop"):
            continue
        for ax in (ax1, ax2):
            ax.axvline((ev.time - t0) / 3600, color="red", lw=0.8)
        ax1.text((ev.time - t0) / 3600, ax1.get_ylim()[1], ev.event, fontsize=6, rotation=90,
                 va="top", color="red")  # fmt: skip
    fig.suptitle("labnr lock")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_lock(args: argparse.Namespace) -> int:
    """``labnr lock CONFIG --duration 24h [--json]``."""
    from labnr.session import open_lab

    duration = parse_duration(args.duration)
    with open_lab(args.config) as lab:
        summary, _, _ = run_lock(lab, duration)
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(json.dumps(summary, indent=2))
    return 0
