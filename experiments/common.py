"""Shared command-line plumbing of the lab scripts in experiments/ (public API only)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from labnr.session import LabSession, open_lab

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sim_jpc_circulator.yaml"


def parser(description: str) -> argparse.ArgumentParser:
    """Arguments every script takes: config, output folder, flux calibration."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="labnr experiment config")
    p.add_argument("--output", default="labnr_output", help="folder for database, .h5 and PNGs")
    p.add_argument(
        "--offset-current",
        type=float,
        default=None,
        help="flux calibration: coil current at zero flux, A (from flux_spectroscopy.py)",
    )
    p.add_argument(
        "--current-per-flux-quantum",
        type=float,
        default=None,
        help="flux calibration: A per flux quantum",
    )
    p.add_argument("--flux", type=float, default=None, help="flux to ramp to first, Phi0")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def open_session(args: argparse.Namespace) -> LabSession:
    """Open the lab with data under ``--output`` and apply the flux calibration given."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.output)
    session = open_lab(args.config, database=out / "labnr.db", data_dir=out / "data")
    try:
        if session.flux is not None:
            if args.current_per_flux_quantum is not None:
                session.flux.current_per_flux_quantum(args.current_per_flux_quantum)
            if args.offset_current is not None:
                session.flux.offset_current(args.offset_current)
            if args.flux is not None:
                if not session.flux.output():
                    session.flux.output(True)
                session.flux.flux(args.flux)
    except BaseException:
        session.close()
        raise
    return session


def figure_path(args: argparse.Namespace, name: str) -> Path:
    """Where a script saves its PNG."""
    path = Path(args.output) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
