"""2D map: one tone's phase against another tone's amplitude; plot the isolation.

python experiments/pump_map.py --phase-tone bc --amplitude-tone ab [--n 11]
"""

from __future__ import annotations

import numpy as np
from common import figure_path, open_session, parser, run

from labnr.measure import load, map_pumps, plot_map


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--phase-tone", default="bc")
    p.add_argument("--amplitude-tone", default="ab")
    p.add_argument("--amplitude", type=float, default=0.1, help="other tones' amplitude, V")
    p.add_argument("--n", type=int, default=11, help="points per axis")
    p.add_argument("--freq-points", type=int, default=101)
    args = p.parse_args(argv)
    with open_session(args) as lab:
        lab.pump.set_tones({t: {"amplitude": args.amplitude} for t in lab.config.pumps.tones})
        lab.pump.output(True)
        phases = np.linspace(-np.pi, np.pi, args.n)
        amps = np.linspace(0.5, 1.5, args.n) * args.amplitude
        ds = map_pumps(
            lab,
            (args.phase_tone, "phase"),
            phases,
            (args.amplitude_tone, "amplitude"),
            amps,
            points=args.freq_points,
            progress=not args.no_progress,
        )
        fwd, rev = lab.config.target.paths()
    data = load(ds.run_id)
    plot_map(data, "isolation", fwd=fwd[0], rev=rev[0], path=figure_path(args, "pump_map"))
    print(f"run {ds.run_id}: {args.n}x{args.n} map -> {figure_path(args, 'pump_map')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
