"""``labnr sim ...``: serve a virtual lab, inject faults into a running one."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``labnr sim serve`` and ``labnr sim fault``."""
    sim = sub.add_parser("sim", help="the virtual lab")
    simsub = sim.add_subparsers(dest="sim_command", required=True)
    serve = simsub.add_parser("serve", help="serve a simulated device behind emulated instruments")
    serve.add_argument(
        "device", help="device preset name (jpc_circulator, em_circulator) or device YAML"
    )
    serve.add_argument("--seed", type=int, default=0, help="seed of every random process")
    serve.add_argument(
        "--station",
        default="station_sim_live.yaml",
        help="where to write the QCoDeS station YAML (default ./station_sim_live.yaml)",
    )
    serve.add_argument("--realtime", action="store_true", help="sleep for instrument operations")
    serve.add_argument("--port-base", type=int, default=None,
                       help="serve instruments on consecutive ports from this one, in the order "
                       "vna, sources..., awg, flux (default: ephemeral ports)")
    serve.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many wall-clock seconds (default: until Ctrl-C)",
    )
    serve.set_defaults(func=cmd_serve)
    fault = simsub.add_parser("fault", help="inject a fault into a running emulated instrument")
    fault.add_argument("address", help="VISA address or port of the instrument")
    fault.add_argument(
        "kind", choices=["drop", "latency", "freeze", "malformed", "error", "nan", "clear"]
    )
    fault.add_argument("value", nargs="*", help="count, seconds, or CODE MESSAGE for 'error'")
    fault.set_defaults(func=cmd_fault)


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the lab, print addresses, write the station file, wait."""
    from labnr.sim.lab import VirtualLab

    stop = threading.Event()
    lab = VirtualLab(args.device, seed=args.seed, realtime=args.realtime)
    ports = None
    if args.port_base is not None:
        ports = {name: args.port_base + k for k, name in enumerate(lab.instruments)}
    lab.start(ports)
    try:
        station = lab.write_station_yaml(Path(args.station))
        print(f"virtual lab {lab.spec.name!r} (seed {args.seed}) serving on 127.0.0.1:")
        for name, address in lab.addresses.items():
            print(f"  {name:<10} {address}")
        print(f"QCoDeS station file: {station}")
        sys.stdout.flush()
        old = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait(args.duration)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, old)
    finally:
        lab.stop()
    print("virtual lab stopped")
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    """Send one fault command to a running emulator."""
    from labnr.sim.faults import inject_fault

    values = args.value
    value: object
    if args.kind == "error":
        if len(values) < 2:
            raise ValueError("'error' needs CODE MESSAGE, e.g. -222 'Data out of range'")
        value = (int(values[0]), " ".join(values[1:]))
    elif args.kind == "clear":
        value = None
    else:
        if len(values) != 1:
            raise ValueError(f"{args.kind!r} needs one number (count or seconds), got {values}")
        value = float(values[0]) if args.kind in ("latency", "freeze") else int(values[0])
    inject_fault(args.address, args.kind, value)
    print(f"injected {args.kind} into {args.address}")
    return 0
