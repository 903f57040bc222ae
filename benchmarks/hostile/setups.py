"""Special set-ups of some cells, a second labnr process, and the extra checks they call for."""

from __future__ import annotations

import hashlib
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from hostile.cells import Cell
    from hostile.lab import ServedLab
    from hostile.run import Context, Proc, Result

__all__ = ["after_checks", "prepare", "start_second"]

_HELD: dict[str, Any] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare(cell: Cell, ctx: Context, lab: ServedLab, folder: Path, config: Path,
            storage: Path) -> None:  # fmt: skip
    """Plant what the cell's ``setup`` asks for (before the 'before' snapshot)."""
    setup = cell.setup or ""
    data = storage / "data"
    if setup == "symlinks":
        data.mkdir(parents=True, exist_ok=True)
        for k in range(1, 6):
            for suffix in (".h5.part", ".h5.tmp", ".h5"):
                victim = folder / "outside" / f"victim_{k}{suffix}"
                victim.write_text("a file outside data_dir that labnr must never write\n")
                (data / f"run_{k}{suffix}").symlink_to(victim)
    elif setup == "dead_vna":
        station = folder / "files" / "station.yaml"
        entries = yaml.safe_load(station.read_text())
        entries["instruments"]["vna"]["address"] = f"TCPIP::127.0.0.1::{_free_port()}::SOCKET"
        station.write_text(yaml.safe_dump(entries, sort_keys=False))
    elif setup == "data_dir_file":
        storage.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(data, ignore_errors=True)  # (the flux adoption may have made it)
        data.write_text("a file where the data folder should be\n")
    elif setup == "db_locked":
        from hostile.run import locked_db

        _HELD[cell.name] = locked_db(storage / "labnr.db")
    elif setup == "same_data_dir":
        _earlier_run(cell, ctx, folder, config, storage)


def _earlier_run(cell: Cell, ctx: Context, folder: Path, config: Path, storage: Path) -> None:
    """A complete run into another database with the same data_dir; remember its exports."""
    from hostile.run import _argv, _launch, _wait

    cfg = yaml.safe_load(config.read_text())
    old = config.with_name("config_old_db.yaml")
    cfg["storage"] = dict(cfg["storage"], database=str(storage / "old" / "labnr.db"))
    old.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = _launch(_argv(cell, ctx, old, storage, folder), folder, "earlier")
    _wait(proc, cell.timeout)
    files = sorted((storage / "data").glob("*")) if (storage / "data").is_dir() else []
    _HELD[cell.name] = {str(f): _digest(f) for f in files if f.is_file()}
    if proc.rc != 0 or not _HELD[cell.name]:
        cell.notes.append(f"earlier run rc={proc.rc}, {len(_HELD[cell.name])} exports")


def start_second(cell: Cell, ctx: Context, folder: Path, config: Path, storage: Path,
                 first: Proc, lab: ServedLab) -> list[Proc]:  # fmt: skip
    """For ``setup: second:<entry>``: once the first process writes to the lab, start another."""
    if not (cell.setup or "").startswith("second:"):
        return []
    from hostile.cells import Cell as _Cell
    from hostile.run import _argv, _launch

    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and first.popen.poll() is None:
        if any(e.kind == "write" and e.time > first.start
               for p in lab.proxies.values() for e in p.events()):  # fmt: skip
            break
        time.sleep(0.1)
    time.sleep(1.0)
    entry = cell.setup.split(":", 1)[1]  # type: ignore[union-attr]
    argv = _argv(_Cell("second", "", entry), ctx, config, storage, folder)
    proc = _launch(argv, folder, "second")
    proc.role = "second"
    return [proc]


def after_checks(res: Result, cell: Cell, ctx: Context, lab: ServedLab, folder: Path,
                 storage: Path, procs: list[Proc]) -> None:  # fmt: skip
    """The extra checks of ``cell.extra`` (appends to ``res.extra_fail``)."""
    held = _HELD.pop(cell.name, None)
    if hasattr(held, "close"):
        held.close()
    first = procs[0]
    if "no_hardware" in cell.extra:
        touched = [n for n, p in lab.proxies.items()
                   if any(e.time >= first.start for e in p.events())]  # not the set-up's
        if touched:
            res.extra_fail.append(f"connected to {','.join(touched)} before refusing")
        if first.rc == 0:
            res.extra_fail.append("accepted")
    if "fast_refusal" in cell.extra:
        from hostile.run import REFUSAL_WITHIN

        if res.duration > REFUSAL_WITHIN or first.hung:
            res.extra_fail.append(f"refusal took {res.duration:.1f}s")
    if "exports_kept" in cell.extra and isinstance(held, dict):
        changed = [p for p, h in held.items() if not Path(p).is_file() or _digest(Path(p)) != h]
        if changed:
            res.extra_fail.append(f"{len(changed)} earlier export(s) overwritten")
    if "exclusive" in cell.extra:
        res.extra_fail += _exclusive(lab, [p for p in procs if getattr(p, "role", "") == "second"])


def _exclusive(lab: ServedLab, seconds: list[Proc]) -> list[str]:
    """A second process on the same lab exits non-zero without writing to any instrument."""
    out = []
    for p in seconds:
        if p.rc == 0:
            out.append("second process ran to the end")
        end = p.end or time.monotonic()
        for name, proxy in lab.proxies.items():
            events = proxy.events()
            known = {e.connection for e in events if e.time < p.start}
            wrote = [e for e in events if e.connection not in known and p.start <= e.time <= end
                     and e.kind == "write"]  # fmt: skip
            if wrote:
                out.append(f"second process wrote to {name}")
    return out
