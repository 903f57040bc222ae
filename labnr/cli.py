"""The ``labnr`` command line.

Subcommands
-----------
demo
    Print the S-matrix of an ideal three-mode circulator and save a plot of
    it versus frequency (the model in one screen).

calibrate CONFIG [--from NODE] [--json]
    Run the calibration graph of the config's device (labnr.calibrate.run).

lock CONFIG [--duration 24h] [--json]
    Calibrate (or check) and lock the device (labnr.lock.cli).

sim serve DEVICE
    Serve a virtual lab (simulated device + emulated instruments on loopback).
sim fault ADDRESS KIND [VALUE]
    Inject a fault into a running emulated instrument.

Every ending is one line on stderr naming what went wrong and what the safe
state confirmed by read-back; tracebacks go to ``<data_dir>/labnr.log``
(``--debug`` shows them). Exit status: see :func:`main`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labnr import __version__


def _format_matrix(S: np.ndarray, ports: Sequence[str]) -> str:
    """|S_ij| in dB and arg S_ij in degrees, one row per output port."""
    head = "out\\in " + "".join(f"{p:>22}" for p in ports)
    rows = [head]
    with np.errstate(divide="ignore"):
        for i, out in enumerate(ports):
            cells = "".join(
                f"{20 * np.log10(abs(S[i, j])):>10.1f} dB {np.degrees(np.angle(S[i, j])):>6.1f}°"
                if abs(S[i, j]) > 1e-12
                else f"{'< -240 dB':>22}"
                for j in range(len(ports))
            )
            rows.append(f"{out:>6} {cells}")
    return "\n".join(rows)


def cmd_demo(args: argparse.Namespace) -> int:
    """Print and plot the S-matrix of the ideal three-mode circulator."""
    from labnr.model import circulator3, isolation_db

    kappa = args.kappa
    net = circulator3(kappa)
    ports = net.ports
    S0 = net.scattering(0.0, nambu=False)
    print(
        f"Three-mode parametric circulator: kappa = {kappa / 1e6:g} MHz, |g| = kappa/2, "
        "loop flux = pi/2"
    )
    print("S-matrix at band centre (|S| in dB, phase in degrees):")
    print(_format_matrix(S0, ports))
    offsets = np.linspace(-2 * kappa, 2 * kappa, 801)
    S = net.scattering(offsets, nambu=False)
    iso = isolation_db(S, ("b", "a"), ("a", "b"), ports=ports)
    band = offsets[iso >= 20]
    centre = float(isolation_db(S0, (1, 0), (0, 1)))
    centre_txt = "> 200 dB (ideal)" if centre > 200 else f"{centre:.1f} dB"
    print(
        f"isolation a->b vs b->a at centre: {centre_txt}; "
        f">= 20 dB over {(band.max() - band.min()) / 1e6:.2f} MHz"
    )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "circulator_smatrix.png"
    _plot_smatrix(offsets, S, ports, path)
    print(f"plot saved to {path}")
    return 0


def _plot_smatrix(offsets: np.ndarray, S: np.ndarray, ports: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(ports)
    fig, axes = plt.subplots(n, n, figsize=(3.2 * n, 2.6 * n), sharex=True, sharey=True)
    with np.errstate(divide="ignore"):
        db = 20 * np.log10(np.maximum(np.abs(S), 1e-6))
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            ax.plot(offsets / 1e6, db[:, i, j])
            ax.set_title(f"S({ports[i]}←{ports[j]})", fontsize=9)
            ax.set_ylim(-60, 3)
            ax.grid(alpha=0.3)
            if i == n - 1:
                ax.set_xlabel("offset from band centre (MHz)")
            if j == 0:
                ax.set_ylabel("|S| (dB)")
    fig.suptitle("labnr.model: ideal three-mode circulator")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_flux_adopt(args: argparse.Namespace) -> int:
    """``labnr flux adopt CONFIG``: record the flux level as read (nothing is written to it)."""
    from labnr.session import open_lab

    with open_lab(args.config) as lab:
        if lab.flux_record is None:
            raise ValueError(f"{lab.config.name}: no flux source in the config (instruments.flux)")
        level = lab.flux_record.adopt()
        said = ("output off: nothing to adopt, record cleared" if level is None else
                f"level {level:.9g} A (read twice, agreeing) recorded")  # fmt: skip
        print(f"labnr flux adopt: {lab.flux.name} {said} ({lab.flux_record.path})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``labnr`` command."""
    parser = argparse.ArgumentParser(
        prog="labnr", description="Calibrate and lock nonreciprocal parametric devices."
    )
    parser.add_argument("--version", action="version", version=f"labnr {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show every log record and tracebacks on stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="print and plot an ideal circulator's S-matrix")
    demo.add_argument(
        "--kappa", type=float, default=20e6, help="mode linewidth in Hz (default 20e6)"
    )
    demo.add_argument(
        "--output", default="demo_output", help="folder for the plot (default ./demo_output)"
    )
    demo.set_defaults(func=cmd_demo)
    from labnr.calibrate import add_calibrate_arguments
    from labnr.calibrate.run import cmd_calibrate

    cal = sub.add_parser(
        "calibrate", help="calibrate a device from cold start to its operating point"
    )
    add_calibrate_arguments(cal)
    cal.set_defaults(func=cmd_calibrate)
    from labnr.lock.cli import add_lock_arguments, cmd_lock

    lock = sub.add_parser("lock", help="hold a calibrated device at its operating point")
    add_lock_arguments(lock)
    lock.set_defaults(func=cmd_lock)
    flux = sub.add_parser("flux", help="the flux source's record (what labnr last set)")
    flux_sub = flux.add_subparsers(dest="flux_command", required=True)
    adopt = flux_sub.add_parser(
        "adopt", help="take the flux source's level as read now as what labnr last set "
        "(after changing it on purpose outside labnr)",
    )  # fmt: skip
    adopt.add_argument("config", help="labnr experiment config (YAML)")
    adopt.set_defaults(func=cmd_flux_adopt)
    for p in (cal, lock, adopt):  # also after the subcommand; SUPPRESS keeps a top-level --debug
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show every log record and tracebacks on stderr")  # fmt: skip
    from labnr.sim.cli import add_parser as add_sim_parser

    add_sim_parser(sub)
    return parser


class _TerminalFormatter(logging.Formatter):
    """One line per record on the terminal: no traceback (it goes to the log file)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


class _OnlyLabnr(logging.Filter):
    """labnr's own records (other libraries' go to the log file, or with ``--debug``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "labnr" or record.name.startswith("labnr.")


def setup_logging(debug: bool = False, level: int = logging.WARNING) -> logging.Handler:
    """Terminal logging of a labnr command: labnr's records at ``level`` and up, one line
    each and no traceback; with ``debug`` every record of every library, tracebacks too.

    Returns the terminal handler (installed on the root logger).
    """
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.DEBUG if debug else level)
    if debug:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_TerminalFormatter())
        handler.addFilter(_OnlyLabnr())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    return handler


class _QuietFileHandler(logging.FileHandler):
    """A log file whose own failures (a full disk) never print a traceback on the terminal."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


def _log_file(args: argparse.Namespace) -> logging.Handler | None:
    """``<data_dir>/labnr.log`` of the command's config (every record, tracebacks included).

    None without a config, for ``--dry-run`` (which writes nothing) or when the
    folder cannot be written (the command then reports that itself).
    """
    config = getattr(args, "config", None)
    if not config or getattr(args, "dry_run", False):
        return None
    try:
        from labnr.config import load_config

        cfg = load_config(config)
        folder = cfg.path(cfg.storage.data_dir)
        folder.mkdir(parents=True, exist_ok=True)  # as the session's storage check would
        handler = _QuietFileHandler(folder / "labnr.log", encoding="utf-8")
    except Exception:  # noqa: BLE001 - the command reports a bad config or folder itself
        return None
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _safe_line(always: bool = True) -> str:
    """``; <what the safe state confirmed>`` (or that nothing was connected, if ``always``)."""
    from labnr.safety import last_safe_state

    report = last_safe_state()
    if report is not None:
        return f"; {report.line()}"
    return "; no instrument was connected" if always else ""


def _fail(args: argparse.Namespace, text: str, code: int, where: logging.Handler | None) -> int:
    hint = f" (details: {where.baseFilename})" if isinstance(where, logging.FileHandler) else ""
    print(f"labnr {args.command}: {text}{hint}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labnr`` console script.

    SIGTERM (``kill <pid>``, a batch system's stop) raises
    :class:`labnr.safety.Terminated`, a ``KeyboardInterrupt``: the same cleanup
    as Ctrl-C runs (whole points kept, pump outputs off and read back, flux
    held). Every ending is one line on stderr, never a traceback (it goes to
    ``<data_dir>/labnr.log``; ``--debug`` shows it). Exit status: 0 ok; 1 a
    node or run failed, or an instrument could not be connected; 2 a config
    error (found before connecting) or a storage error (a folder or the database
    not writable, found before connecting; a full disk or a locked database later);
    3 below target; 75
    (:data:`labnr.lablock.EXIT_LAB_BUSY`) another process holds the lab;
    130 Ctrl-C; 143 SIGTERM.
    """
    from labnr.lablock import EXIT_LAB_BUSY, LabBusy, StorageError, describe_storage_error
    from labnr.safety import clear_last_safe_state, interrupt_exit_code, sigterm_as_interrupt

    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    clear_last_safe_state()
    handlers = [setup_logging(debug)]
    log_file = _log_file(args)
    handlers += [log_file] if log_file is not None else []
    log = logging.getLogger("labnr.cli")
    try:
        with sigterm_as_interrupt():
            code = int(args.func(args))
        if _safe_line(False):  # a lab was opened: say what its close confirmed
            print(f"labnr {args.command}: lab closed{_safe_line()}", file=sys.stderr, flush=True)
        return code
    except KeyboardInterrupt as exc:
        log.debug("interrupted", exc_info=True)
        code = interrupt_exit_code(exc)
        what = "terminated (SIGTERM)" if code == 143 else "interrupted (Ctrl-C)"
        return _fail(args, f"{what}{_safe_line()}; measured data kept", code, None)
    except LabBusy as exc:
        return _fail(args, str(exc), EXIT_LAB_BUSY, None)
    except StorageError as exc:
        log.debug("storage error", exc_info=True)
        return _fail(args, f"error: {exc}{_safe_line(False)}", 2, None)
    except ValueError as exc:
        log.debug("error", exc_info=True)
        if debug:
            raise
        return _fail(args, f"error: {exc}{_safe_line(False)}", 2, None)
    except Exception as exc:
        log.debug("error", exc_info=True)
        if debug:
            raise
        from labnr.session import InstrumentConnectError

        line = describe_storage_error(exc) or (
            str(exc) if isinstance(exc, InstrumentConnectError) else f"{type(exc).__name__}: {exc}"
        ).splitlines()[0]
        return _fail(args, f"error: {line}{_safe_line()}", 1, log_file)
    finally:
        for h in handlers:
            logging.getLogger().removeHandler(h)
            h.close()


if __name__ == "__main__":
    sys.exit(main())
