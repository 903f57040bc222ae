"""Sweep one pump tone's phase with all pumps on; plot |S| at band centre vs phase.

python experiments/pump_phase_sweep.py --tone bc --amplitude 0.1 [--points 37]
"""

from __future__ import annotations

import numpy as np
from common import figure_path, open_session, parser, run

from labnr.measure import load, plot_sweep, sweep_pump_phase


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--tone", default="bc", help="tone whose phase is swept")
    p.add_argument("--amplitude", type=float, default=0.1, help="every tone's amplitude, V")
    p.add_argument("--points", type=int, default=37, help="phase points over one turn")
    p.add_argument("--freq-points", type=int, default=201, help="frequency points per element")
    args = p.parse_args(argv)
    with open_session(args) as lab:
        lab.pump.set_tones({t: {"amplitude": args.amplitude} for t in lab.config.pumps.tones})
        lab.pump.output(True)
        phases = np.linspace(-np.pi, np.pi, args.points)
        ds = sweep_pump_phase(
            lab, args.tone, phases, points=args.freq_points, progress=not args.no_progress
        )
    data = load(ds.run_id)
    fwd, rev = lab.config.target.paths()
    names = [f"S_{o}_{i}" for o, i in fwd[:1] + rev[:1]]
    plot_sweep(data, names, path=figure_path(args, f"phase_sweep_{args.tone}"))
    at = data["S"].sel(frequency=0.0, method="nearest")
    o, i = rev[0]
    reverse = np.abs(at.sel(out=o).sel({"in": i}).values)
    best = float(data[f"pump_{args.tone}_phase"].values[int(np.argmin(reverse))])
    print(f"run {ds.run_id}: reverse |S({o}<-{i})| is smallest at {args.tone} phase {best:.3f} rad")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
