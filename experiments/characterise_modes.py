"""Characterise the modes with the pumps off: one S-matrix around every mode, plotted.

python experiments/characterise_modes.py [--config CONFIG] [--offset-current A --flux 0]
"""

from __future__ import annotations

from common import figure_path, open_session, parser, run

from labnr.measure import load, measure_smatrix, plot_smatrix


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    with open_session(args) as lab:
        lab.pump.output(False)
        ds = measure_smatrix(lab, progress=not args.no_progress)
        data = load(ds.run_id)
    plot_smatrix(data, path=figure_path(args, "modes_smatrix"))
    print(
        f"run {ds.run_id}: S-matrix of ports {data['out'].values.tolist()} -> "
        f"{figure_path(args, 'modes_smatrix')}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
