"""Run one hostile cell: a fresh served lab, the attack, and the checks from outside.

Each cell gets its own folder (config, station, storage, cwd, TMPDIR) and its
own ``labnr sim serve --realtime`` process with a tampering proxy in front of
every instrument. labnr runs as a child process in its own process group;
signals go to it as a terminal (Ctrl-C: the group) or ``kill`` would send them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hostile import checks, probe
from hostile.cells import ENTRIES, USER_SCRIPT, Cell
from hostile.lab import REPO, ServedLab, write_cell_files
from labnr.sim.proxy import offset_reply

__all__ = ["Context", "Result", "run_cell"]

#: Seconds after an abnormal exit within which every pump must read off.
PUMPS_OFF_WITHIN = 2.0
#: Seconds a stopped process may take to exit before it counts as hung (then kill -9).
EXIT_WITHIN = 30.0
#: Lock-log rows may lag a kill by this much ("all but the last few seconds").
LOCK_GRACE = 5.0
#: A refused config must be refused within this (well under a second, plus Python's start).
REFUSAL_WITHIN = 5.0


@dataclass
class Context:
    """What cells share: output root, seeded draws, reference durations, the calibrated state."""

    root: Path
    lock_duration: str = "25s"
    durations: dict[str, float] = field(default_factory=dict)
    state_files: list[Path] = field(default_factory=list)
    db_sizes: dict[str, int] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)


@dataclass
class Proc:
    """One labnr process as seen from outside."""

    popen: subprocess.Popen[bytes]
    start: float
    out: Path
    err: Path
    stop_time: float | None = None
    end: float | None = None
    hung: bool = False
    role: str = "main"

    @property
    def rc(self) -> int | None:
        return self.popen.returncode

    def text(self) -> tuple[str, str]:
        return (self.out.read_text(errors="replace"), self.err.read_text(errors="replace"))


@dataclass
class Result:
    """Measured values and verdicts of one cell."""

    cell: Cell
    max_step: float = 0.0
    step_limit: float = 0.0
    flux_on: bool = True
    pumps_s: float | None = 0.0
    pumps_ok: bool = True
    lost: int = 0
    lost_how: str = ""
    stray: list[str] = field(default_factory=list)
    tracebacks: int = 0
    extra_fail: list[str] = field(default_factory=list)
    rc: list[int | None] = field(default_factory=list)
    duration: float = 0.0
    last_line: str = ""

    @property
    def flux_ok(self) -> bool:
        return self.max_step <= self.step_limit * (1 + 1e-9) and self.flux_on

    @property
    def safe(self) -> bool:
        return (self.flux_ok and self.pumps_ok and self.lost == 0 and not self.stray
                and self.tracebacks == 0 and not self.extra_fail)  # fmt: skip


def _argv(cell: Cell, ctx: Context, config: Path, storage: Path, folder: Path) -> list[str]:
    subs = {"CFG": str(config), "STORAGE": str(storage), "CELL": str(folder),
            "REPO": str(REPO), "LOCKDUR": ctx.lock_duration}  # fmt: skip
    out = [sys.executable]
    for arg in ENTRIES[cell.entry]:
        for key, value in subs.items():
            arg = arg.replace(key, value) if arg.startswith(key) or arg == key else arg
        out.append(arg)
    return out


def _size_limited(argv: list[str], limit: int) -> list[str]:
    """``argv`` with file writes limited to ``limit`` bytes (EFBIG, like a full disk)."""
    code = ("import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")  # fmt: skip
    return [argv[0], "-c", code, *argv[1:]]


def _launch(argv: list[str], folder: Path, tag: str) -> Proc:
    env = dict(os.environ, TMPDIR=str(folder / "tmp"), PYTHONUNBUFFERED="1", MPLBACKEND="Agg",
               LABNR_LOCK_DIR=str(folder / "locks"))
    env.pop("PYTHONSTARTUP", None)
    out, err = folder / f"{tag}.stdout", folder / f"{tag}.stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        popen = subprocess.Popen(argv, cwd=folder / "cwd", env=env, stdout=o, stderr=e,
                                 stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    return Proc(popen, time.monotonic(), out, err)


def _stop(proc: Proc, how: str) -> None:
    proc.stop_time = time.monotonic()
    try:
        if how == "kill9":
            os.killpg(proc.popen.pid, signal.SIGKILL)
        elif how == "SIGINT":  # Ctrl-C at a terminal: the foreground process group
            os.killpg(proc.popen.pid, signal.SIGINT)
        else:  # kill <pid>
            os.kill(proc.popen.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _wait(proc: Proc, timeout: float) -> None:
    try:
        proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.hung = True
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(timeout=30)
    proc.end = time.monotonic()


def _triggered(cell: Cell, proc: Proc, watch: probe.PumpWatch, lab: ServedLab) -> bool:
    if cell.trigger == "pumps_on":
        return any(v and t >= proc.start for t, v in watch.samples)
    return any(e.time >= proc.start for p in lab.proxies.values() for e in p.events()[-50:])


def _run_process(proc: Proc, cell: Cell, at: float | None, watch: probe.PumpWatch,
                 lab: ServedLab) -> None:  # fmt: skip
    """Wait for the trigger and the stop moment (if any), stop, wait for the exit."""
    if cell.trigger is not None:
        deadline = time.monotonic() + cell.timeout
        while proc.popen.poll() is None and time.monotonic() < deadline:
            if _triggered(cell, proc, watch, lab):
                break
            time.sleep(0.02)
        else:
            cell.notes.append(f"trigger: {cell.trigger} never happened")
    if cell.stop is not None and at is not None:
        try:
            proc.popen.wait(timeout=at)
        except subprocess.TimeoutExpired:
            _stop(proc, cell.stop)
        _wait(proc, EXIT_WITHIN)
    else:
        _wait(proc, cell.timeout)


def _apply_rules(lab: ServedLab, cell: Cell, station: dict[str, Any]) -> None:
    for r in cell.rules:
        value = r.value
        if isinstance(value, tuple) and value[0] == "offset":
            value = offset_reply(value[1])
        elif isinstance(value, tuple) and value[0] == "timeout+":
            init = station[r.instrument].get("init") or {}
            value = float(init.get("timeout", 5.0)) + value[1]
        proxy = lab.proxies[r.instrument]
        if r.action == "drop":
            proxy.drop(r.pattern, count=r.count, skip=r.skip)
        elif r.action == "delay":
            proxy.delay(r.pattern, value, count=r.count, skip=r.skip)
        else:
            proxy.rewrite(r.pattern, value, count=r.count, skip=r.skip)


def _flux_setup(lab: ServedLab, config: Path) -> tuple[float, float]:
    """Put the coil where a previous run left it; return (level, the step limit)."""
    cfg = yaml.safe_load(config.read_text()) if config.is_file() else {}
    init = lab.entries["flux"].get("init") or {}
    step = min(float(init.get("max_step", 1.0)), _amps((cfg.get("flux") or {}).get("max_step")))
    limits = [abs(float(v)) for v in init.get("current_limits", [1e-3])]
    level = round(0.1 * min(limits), 8)  # a tenth of the narrower limit, on the 10 nA grid
    probe.prepare_flux(lab.ports["flux"], level)
    return level, step


def _adopt(cell: Cell, ctx: Context, lab: ServedLab, folder: Path, storage: Path) -> None:
    """``labnr flux adopt`` on a clean copy of the config: labnr's record of the coil's level.

    As after an earlier labnr run that left the flux there (the cell's own
    config may be broken or its station swapped: the adoption uses neither).
    """
    config, _ = write_cell_files(lab, folder / "adopt")
    cfg = yaml.safe_load(config.read_text())
    cfg["storage"] = {"database": str(storage / "labnr.db"), "data_dir": str(storage / "data")}
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = _launch([sys.executable, "-m", "labnr", "flux", "adopt", str(config)], folder, "adopt")
    _wait(proc, 60.0)
    if proc.rc != 0:
        cell.notes.append(f"flux adopt rc={proc.rc}")


def _stored_flux(state_files: list[Path], default: float) -> float:
    """The flux-bias current the reference calibration calibrated (its sweet spot), A."""
    for f in state_files:
        data = yaml.safe_load(f.read_text()) or {}
        found = _find_key(data, "offset_current")
        if found is not None:
            return round(float(found), 8)  # on the GS200's 10 nA grid
    return default


def _find_key(data: Any, key: str) -> Any:
    if isinstance(data, dict):
        if key in data:
            return data[key]
        data = list(data.values())
    if isinstance(data, list):
        for v in data:
            found = _find_key(v, key)
            if found is not None:
                return found
    return None


def _amps(value: Any) -> float:
    if value is None:
        return float("inf")
    if isinstance(value, (int, float)):
        return float(value)
    number, unit = re.match(r"\s*([-+0-9.eE]+)\s*([a-zA-Z]*)", str(value)).groups()  # type: ignore[union-attr]
    return float(number) * {"": 1, "A": 1, "mA": 1e-3, "uA": 1e-6, "nA": 1e-9}.get(unit, 1.0)


def run_cell(cell: Cell, ctx: Context) -> Result:
    """Run ``cell`` on a fresh served lab and measure the five checks (and its extras)."""
    folder = ctx.root / cell.name
    shutil.rmtree(folder, ignore_errors=True)
    for sub in ("cwd", "tmp", "outside", "locks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    lab = ServedLab(folder / "lab").start()
    t0 = time.monotonic()
    try:
        return _run(cell, ctx, folder, lab)
    finally:
        lab.stop()
        cell.notes.append(f"{time.monotonic() - t0:.0f}s")


def _run(cell: Cell, ctx: Context, folder: Path, lab: ServedLab) -> Result:
    from hostile.setups import after_checks, prepare, start_second

    config, storage = write_cell_files(lab, folder / "files", swap=cell.swap,
                                       config_edit=cell.config_edit)  # fmt: skip
    if cell.raw_config is not None:
        config.write_text(cell.raw_config)
    (folder / "user_script.py").write_text(USER_SCRIPT)
    station = yaml.safe_load((folder / "files" / "station.yaml").read_text())["instruments"]
    level, step = _flux_setup(lab, folder / "files" / "config.yaml")
    if cell.state and ctx.state_files:  # a previous calibration left the coil at its sweet spot
        level = _stored_flux(ctx.state_files, level)
        probe.prepare_flux(lab.ports["flux"], level)
    _adopt(cell, ctx, lab, folder, storage)
    if cell.state and ctx.state_files:
        (storage / "data").mkdir(parents=True, exist_ok=True)
        for f in ctx.state_files:
            shutil.copy2(f, storage / "data" / f.name)
    if cell.pumps_on:
        probe.switch_pumps_on(lab.pump_ports())
    prepare(cell, ctx, lab, folder, config, storage)
    excluded = [storage, folder / "lab", folder / "locks"]
    before = checks.snapshot(folder, excluded)
    _apply_rules(lab, cell, station)
    argv = _argv(cell, ctx, config, storage, folder)
    if cell.disk_full:
        argv = _size_limited(argv, max(4096, ctx.db_sizes.get(cell.entry, 1 << 20) // 2))
    at = cell.at
    if at is None and cell.frac is not None:
        at = cell.frac * ctx.durations.get(cell.entry, 60.0)
    watch = probe.PumpWatch(lab.pump_ports()).start()
    res = Result(cell, step_limit=step)
    procs: list[Proc] = []
    try:
        proc = _launch(argv, folder, "run")
        procs.append(proc)
        second = start_second(cell, ctx, folder, config, storage, proc, lab)
        procs += second
        for p in second:
            _wait(p, EXIT_WITHIN)
        _run_process(proc, cell, at, watch, lab)
        if cell.restart:
            time.sleep(0.5)
            again = _launch(argv, folder, "restart")
            again.role = "restart"
            procs.append(again)
            _restart_until_safe(again, watch, res)
        time.sleep(PUMPS_OFF_WITHIN + 0.5)
    finally:
        watch.stop()
    _measure(res, cell, ctx, lab, folder, storage, procs, watch, before, excluded, level)
    after_checks(res, cell, ctx, lab, folder, storage, procs)
    return res


def _restart_until_safe(proc: Proc, watch: probe.PumpWatch, res: Result) -> None:
    """Let the next start run until the pumps read off (then 3 s more), then Ctrl-C it."""
    deadline = proc.start + 60.0
    while time.monotonic() < deadline and proc.popen.poll() is None:
        off = watch.first_off_after(proc.start)
        if off is not None and time.monotonic() > off + 3.0:
            break
        time.sleep(0.1)
    if proc.popen.poll() is None:
        _stop(proc, "SIGINT")
    _wait(proc, EXIT_WITHIN)


def _measure(res: Result, cell: Cell, ctx: Context, lab: ServedLab, folder: Path, storage: Path,
             procs: list[Proc], watch: probe.PumpWatch, before: dict[str, Any],
             excluded: list[Path], level: float) -> None:  # fmt: skip
    rec = probe.flux_record(lab.ports["flux"])
    res.max_step, res.flux_on = rec.max_step, rec.output
    _pumps(res, procs, watch, lab)
    events = lab.proxies["vna"].events()
    first = procs[0]
    end = first.stop_time if first.stop_time is not None else (first.end or time.monotonic())
    traces, points = checks.delivered_traces(events, float("inf"))
    traces = [t for t in traces if t >= first.start]  # not a set-up's earlier run
    points = [t for t in points if t >= first.start]
    killed = first.stop_time is not None and cell.stop == "kill9"
    if killed:  # what the dead process received; the restart's own after it
        restart = procs[-1].start
        traces = [t for t in traces if t < end or t >= restart]
        points = [t for t in points if t < end or t >= restart]
    stops = [p.stop_time for p in procs if p.stop_time is not None]
    if cell.disk_full:  # the point being written when the disk filled
        stops += [p.end for p in procs if p.end is not None and p.rc != 0]
    kills = [p.stop_time for p in procs if p.stop_time is not None and p.rc == -signal.SIGKILL]
    db = checks.db_contents(storage / "labnr.db")
    last_end = max(p.end or 0.0 for p in procs)
    to_wall = time.time() - time.monotonic()
    res.lost, res.lost_how = checks.points_lost(db, traces, points, stops, kills,
                                                end if killed else last_end, LOCK_GRACE,
                                                to_wall)  # fmt: skip
    res.stray = checks.stray_files(before, checks.snapshot(folder, excluded))
    res.stray = [s for s in res.stray if not s.endswith((".stdout", ".stderr"))]
    locks = folder / "locks"  # the lab lock folder ($LABNR_LOCK_DIR) holds lock files only
    res.stray += [f"locks/{f.name}" for f in locks.iterdir() if not f.name.endswith(".lock")]
    texts = [t for p in procs for t in p.text()]
    res.tracebacks = checks.count_tracebacks(*texts)
    res.rc = [p.rc for p in procs]
    res.duration = (first.end or first.start) - first.start
    res.last_line = next((ln for t in reversed(texts) for ln in reversed(t.splitlines())
                          if ln.strip() and not ln.startswith("INFO")), "")[:100]  # fmt: skip
    if cell.stop is not None and first.stop_time is None:
        res.extra_fail.append(f"not attacked: the run ended (rc {first.rc}) before the {cell.stop}")
    if any(p.hung for p in procs):
        res.extra_fail.append(f"hung>{EXIT_WITHIN:.0f}s")
    power = probe.max_power_written(events)
    if power is not None and power > probe.DEFAULT_MAX_VNA_POWER:
        res.extra_fail.append(f"VNA power {power:g} dBm written")
    if cell.restart:
        res.extra_fail += _recovered(db, storage)
    if "flux_held" in cell.extra and abs(rec.effective - level) > res.step_limit:
        res.extra_fail.append(f"flux moved {abs(rec.effective - level) * 1e6:.1f} uA")


def _recovered(db: checks.DbContents, storage: Path) -> list[str]:
    """After the next start: no run left incomplete, no temporary file left in storage."""
    out = []
    if db.incomplete:
        out.append(f"{db.incomplete} run(s) left is_completed=0")
    temps = [p.name for p in storage.rglob("*") if p.is_file()
             and (".part" in p.name or ".tmp" in p.name or p.name.endswith("~"))]  # fmt: skip
    if temps:
        out.append(f"temp files left: {temps[:3]}")
    return out


def _pumps(res: Result, procs: list[Proc], watch: probe.PumpWatch, lab: ServedLab) -> None:
    """Every abnormal exit: pumps read off within 2 s and stay off; a restart after kill -9
    switches them off before it writes to anything else. ``pumps_s``: the worst delay."""
    worst, ok = 0.0, True
    mains = [p for p in procs if p.role != "second"]  # a refused second must not touch them
    for k, p in enumerate(mains):
        if p.stop_time is None and p.rc == 0:
            continue
        if p.rc == -signal.SIGKILL and k + 1 < len(mains):
            continue  # a dead process switches nothing off: the next start must
        end = p.end or time.monotonic()
        since = p.stop_time if p.stop_time is not None else p.start
        if k > 0 and mains[k - 1].rc == -signal.SIGKILL:
            off = watch.first_off_after(p.start)
            res.extra_fail += _first_write_check(lab, p, watch)
            worst = max(worst, float("inf") if off is None else off - p.start)
            ok &= off is not None
        off = watch.first_off_after(since)
        late = watch.on_after(end + PUMPS_OFF_WITHIN)
        delay = float("inf") if off is None else max(0.0, off - end)
        if late:
            delay = max(delay, watch.samples[-1][0] - end)
        worst = max(worst, delay)
        ok &= off is not None and not late
    res.pumps_s = worst
    res.pumps_ok = ok and not any(probe.pumps_on(lab.pump_ports()).values())


def _first_write_check(lab: ServedLab, proc: Proc, watch: probe.PumpWatch) -> list[str]:
    """At the next start, no other instrument is written before every pump is off.

    A pump is off from the restart's start if it read off then, else from the
    output-off write it receives (the proxy's log) or the poll that saw it off. IEEE common
    commands (``*CLS``, ...) do not count as writes to another instrument.
    """
    regex = re.compile(probe.OUTPUT_WRITE.encode(), re.IGNORECASE)
    offs: list[float | None] = []
    for name, px in lab.proxies.items():
        if not name.startswith("pump"):
            continue
        if watch.pump_off_at(name, proc.start):
            offs.append(proc.start)
            continue
        times = [e.time for e in px.events() if e.kind == "write" and e.time >= proc.start
                 and any(regex.search(u.strip()) for u in e.text.split(b";"))]  # fmt: skip
        polled = watch.pump_first_off(name, proc.start)
        offs.append(min([*times, *([polled] if polled is not None else [])], default=None))
    off = None if any(t is None for t in offs) else max(offs)  # type: ignore[type-var]
    others = [e.time for n, px in lab.proxies.items() if not n.startswith("pump")
              for e in px.events() if e.kind == "write" and e.time >= proc.start
              and not e.text.lstrip().startswith(b"*")]  # fmt: skip
    first = min(others, default=None)
    if first is not None and (off is None or first < off):
        return [f"restart wrote to another instrument {first - proc.start:.2f}s in, "
                "before every pump was switched off"]  # fmt: skip
    return []


def locked_db(path: Path) -> sqlite3.Connection:
    """Hold an exclusive lock on a (new) sqlite database, as another process would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=1, isolation_level=None)
    con.execute("create table if not exists holder (x)")
    con.execute("begin exclusive")
    return con
