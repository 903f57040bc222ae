"""Flux spectroscopy: reflection vs flux; find each mode's resonance and the sweet spot.

    python experiments/flux_spectroscopy.py [--start -0.5 --stop 0.5 --n 41]

The resonance of a port mode is where the reflection phase (cable delay
removed) turns fastest. A SQUID-tuned mode is highest at the sweet spot; the
script prints the flux (in the config's present calibration) where that
happens, and the offset current that would put it at zero flux.
"""

from __future__ import annotations

import numpy as np
from common import figure_path, open_session, parser, run

from labnr.calibrate.flux import resonance_offsets, sweet_spot
from labnr.measure import load, plot_flux_map, sweep_flux


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--start", type=float, default=-0.5, help="first flux, Phi0")
    p.add_argument("--stop", type=float, default=0.5, help="last flux, Phi0")
    p.add_argument("--n", type=int, default=41, help="flux points")
    p.add_argument("--freq-points", type=int, default=1601)
    args = p.parse_args(argv)
    with open_session(args) as lab:
        if not lab.flux.output():
            lab.flux.output(True)
        values = np.linspace(args.start, args.stop, args.n)
        ds = sweep_flux(lab, values, points=args.freq_points, progress=not args.no_progress)
        offset, per_phi0 = lab.flux.offset_current(), lab.flux.current_per_flux_quantum()
        tunable = [m for m, c in lab.config.modes.items() if c.flux_tunable and c.vna_port]
    data = load(ds.run_id)
    plot_flux_map(data, path=figure_path(args, "flux_map"))
    flux = data["flux"].values
    delta = data["frequency"].values
    for mode in tunable:
        f_res = resonance_offsets(data["S"].sel(out=mode, **{"in": mode}).values, delta)
        if not np.isfinite(f_res).any():
            print(f"{mode}: no resonance found in the band at any flux")
            continue
        top = sweet_spot(flux, f_res)[0]  # type: ignore[index]
        print(
            f"{mode}: highest at flux {top:+.4f} Phi0 -> offset_current "
            f"{offset + top * per_phi0:.6g} A puts the sweet spot at 0"
        )
    print(f"run {ds.run_id}: flux map -> {figure_path(args, 'flux_map')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
