"""Shared command-line plumbing of the lab scripts in experiments/ (public API only).

Every script ends with ``raise SystemExit(run(main))``: SIGINT and SIGTERM then
finish or abandon the current point, switch the pumps off (read back), mark the
run and keep its data (:func:`labnr.session.open_lab` does that for the session),
and the script exits with one line on stderr and 130 (Ctrl-C) or 143 (SIGTERM),
no traceback; a lab held by another labnr process exits 75 with one line naming
it (nothing touched), an unwritable output folder or a locked database 2, any
other error 1 (one line; ``LABNR_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from labnr.cli import setup_logging
from labnr.lablock import EXIT_LAB_BUSY, LabBusy, StorageError, describe_storage_error
from labnr.safety import interrupt_exit_code, last_safe_state, sigterm_as_interrupt
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
    if not logging.getLogger().handlers:  # a script run from the shell (not under pytest)
        setup_logging(level=logging.INFO)
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


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a script's ``main``; interrupts, a busy lab and storage errors end in one line."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "experiment"
    try:
        with sigterm_as_interrupt():
            return int(main(argv))
    except KeyboardInterrupt as exc:
        code = interrupt_exit_code(exc)
        what = "terminated (SIGTERM)" if code == 143 else "interrupted (Ctrl-C)"
        report = last_safe_state()
        safe = report.line() if report is not None else "no instrument was connected"
        print(f"{name}: {what}; {safe}; measured data kept", file=sys.stderr, flush=True)
        return code
    except LabBusy as exc:
        print(f"{name}: {exc}", file=sys.stderr, flush=True)
        return EXIT_LAB_BUSY
    except StorageError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # one line, as labnr's CLI; LABNR_DEBUG=1 keeps the traceback
        if os.environ.get("LABNR_DEBUG"):
            raise
        logging.getLogger("labnr.experiments").debug("error", exc_info=True)
        text = describe_storage_error(exc) or f"{type(exc).__name__}: {exc}".splitlines()[0]
        report = last_safe_state()
        safe = f"; {report.line()}" if report is not None else ""
        print(f"{name}: error: {text}{safe}", file=sys.stderr, flush=True)
        return 1
