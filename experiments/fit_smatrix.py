"""Fit the coupled-mode S-matrix model to a stored run and print the report.

python experiments/fit_smatrix.py --run-id 7 [--db labnr_output/labnr.db]
python experiments/fit_smatrix.py --h5 labnr_output/data/run_7.h5 [--pump-mode] [--plot fit.png]

The model structure and starting values come from the config stored with the
run (modes: expected frequency and linewidth; pump tones: which modes they
link). Coupling mode (default) fits each link's coupling and phase at every
point of the run; ``--pump-mode`` fits each tone's coupling per volt and line
phase with the tone amplitudes and phases recorded in the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from labnr.fit import FitError, FitLink, SMatrixData, fit_smatrix, guess_etas, guesses_from_config
from labnr.measure import load


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run-id", type=int, help="run id in the QCoDeS database")
    src.add_argument("--h5", help="a run's .h5 file (labnr.measure.export_hdf5)")
    p.add_argument("--db", default=None, help="QCoDeS database (default: QCoDeS's current one)")
    p.add_argument("--pump-mode", action="store_true", help="fit eta and line phase per tone")
    p.add_argument("--sigma", type=float, default=None, help="noise per quadrature (default: est.)")
    p.add_argument("--plot", default=None, help="save data vs fit of every trace to this PNG")
    p.add_argument("--report", action="store_true", help="also print lmfit's full report")
    return p.parse_args(argv)


def summary(result, data: SMatrixData, centres: dict[str, float]) -> list[str]:
    """Human-readable lines: modes, couplings, loop phases, goodness of fit."""
    v, e = result.values, result.errors
    lines = [f"S-matrix fit of run {data.run_id}: {data.settings} setting(s), ports {data.ports}"]
    for m in result.model.par.modes:
        f0 = centres.get(m.name, 0.0) + v[f"{m.name}_detuning"]
        lines.append(
            f"  mode {m.name}: f = {f0 / 1e9:.6f} GHz, "
            f"kappa_ext = {v.get(f'{m.name}_kappa_ext', 0.0) / 1e6:.4f} "
            f"+/- {e.get(f'{m.name}_kappa_ext', 0.0) / 1e6:.4f} MHz, "
            f"kappa_int = {v[f'{m.name}_kappa_int'] / 1e6:.4f} "
            f"+/- {e[f'{m.name}_kappa_int'] / 1e6:.4f} MHz"
        )
    for name in v:
        if name.startswith(("g_", "eta_")):
            unit, scale = ("MHz", 1e6) if name.startswith("g_") else ("MHz/V", 1e6)
            lines.append(
                f"  coupling {name} = {v[name] / scale:.4f} +/- {e[name] / scale:.4f} {unit}"
            )
    for name in v:
        if name.startswith("loop_"):
            lines.append(
                f"  loop phase {name} = {np.degrees(v[name]):.3f} +/- {np.degrees(e[name]):.3f} deg"
            )
    status = "ok" if result.success else f"FAILED: {result.message}"
    lines.append(f"  reduced chi-square = {result.redchi:.4g}; {status}")
    lines += [f"  warning: {w}" for w in result.warnings]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    ds = load(Path(args.h5) if args.h5 else args.run_id, db=args.db)
    data = SMatrixData.from_dataset(ds)
    centres = dict(ds.attrs.get("band_centres") or {})
    on = [t for t, a in data.amplitudes.items() if np.any(a != 0)]
    modes, links = guesses_from_config(ds.attrs["config"], centres, pump_mode=args.pump_mode,
                                       tones=on)  # fmt: skip
    try:
        if args.pump_mode:  # couplings per volt are unknown: from the strongest point first
            etas = guess_etas(data, modes, links, sigma=args.sigma)
            links = [FitLink(lk.a, lk.b, tone=lk.tone, eta=etas[lk.tone]) for lk in links]
        result = fit_smatrix(data, modes, links, sigma=args.sigma)
    except FitError as err:
        print(f"fit failed: {err}", file=sys.stderr)
        if err.result is not None:
            print("\n".join(summary(err.result, data, centres)), file=sys.stderr)
        return 1
    if args.report:
        print(result.fit_report())
    print("\n".join(summary(result, data, centres)))
    if args.plot:
        result.plot().savefig(args.plot, dpi=90)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
