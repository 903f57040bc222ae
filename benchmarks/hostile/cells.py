"""The hostile matrix: what each cell does to labnr, and the entry points it attacks.

A :class:`Cell` names an entry point (``labnr calibrate``, ``labnr lock``, a
sweep script of ``experiments/``, a user's script calling
:func:`labnr.session.open_lab`), what is done to it (a signal or kill -9 at
a random moment, a swapped station, a tampering proxy rule, a broken config,
a planted symlink, a second process ...) and the extra check the attack
calls for on top of the five every cell gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hostile.probe import DATA_QUERY, LEVEL_QUERY

__all__ = ["ENTRIES", "Cell", "RuleSpec", "matrix"]

#: Entry points: argv templates (CFG = config, STORAGE = storage folder, CELL = cell folder).
ENTRIES: dict[str, list[str]] = {
    "calibrate": ["-m", "labnr", "calibrate", "CFG", "--no-report"],
    "calibrate-dry": ["-m", "labnr", "calibrate", "CFG", "--dry-run"],
    "lock": ["-m", "labnr", "lock", "CFG", "--duration", "LOCKDUR"],
    "sweep": ["REPO/experiments/pump_phase_sweep.py", "--config", "CFG", "--output", "STORAGE",
              "--points", "9", "--freq-points", "101", "--no-progress"],
    "sweep-flux": ["REPO/experiments/pump_phase_sweep.py", "--config", "CFG", "--output",
                   "STORAGE", "--points", "3", "--freq-points", "101", "--no-progress",
                   "--flux", "0"],
    "sweep-short": ["REPO/experiments/pump_phase_sweep.py", "--config", "CFG", "--output",
                    "STORAGE", "--points", "3", "--freq-points", "21", "--no-progress"],
    "user": ["CELL/user_script.py", "CFG"],
}  # fmt: skip

#: A user's own script: the public session API, a pump-phase sweep.
USER_SCRIPT = '''\
"""A user's script: open the lab, pumps on, sweep a phase (no signal handling of its own)."""
import sys

import numpy as np

from labnr.measure import sweep_pump_phase
from labnr.session import open_lab

with open_lab(sys.argv[1]) as lab:
    lab.pump.set_tones({t: {"amplitude": 0.1} for t in lab.config.pumps.tones})
    lab.pump.output(True)
    sweep_pump_phase(lab, "bc", np.linspace(-np.pi, np.pi, 9), points=101, progress=False)
'''


@dataclass(frozen=True)
class RuleSpec:
    """A tampering rule for one instrument's proxy (see :class:`labnr.sim.proxy.TamperProxy`).

    ``value`` for ``rewrite`` may be ``("offset", delta)``; for ``delay`` it is
    ``("timeout+", seconds)``: the instrument's VISA timeout plus ``seconds``.
    """

    instrument: str
    action: str
    pattern: str
    value: Any = None
    count: int | None = None
    skip: int = 0


@dataclass
class Cell:
    """One cell of the matrix.

    Attributes
    ----------
    name, attack : str
        Short id and what is done.
    entry : str
        Key of :data:`ENTRIES`.
    stop : str or None
        ``"kill9"``, ``"SIGTERM"`` or ``"SIGINT"`` at ``frac`` of the entry's clean
        duration, or ``at`` seconds after the start (after ``trigger``, if given).
    trigger : str or None
        ``"pumps_on"``: start counting ``at`` when a pump output first reads on;
        ``"connect"``: when the process first talks to an instrument.
    restart : bool
        After the stop, start the same entry again (the next start must switch
        the pumps off before anything else, complete the killed runs and clean
        its temporary files).
    disk_full : bool
        Writes fail with EFBIG past half the reference run's database size (as
        on a full disk); the point being written when it fills may be lost.
    """

    name: str
    attack: str
    entry: str
    stop: str | None = None
    frac: float | None = None
    at: float | None = None
    trigger: str | None = None
    swap: tuple[str, str] | None = None
    config_edit: dict[str, Any] | None = None
    raw_config: str | None = None
    rules: tuple[RuleSpec, ...] = ()
    pumps_on: bool = False
    state: bool = False
    restart: bool = False
    setup: str | None = None
    extra: tuple[str, ...] = ()
    timeout: float = 240.0
    disk_full: bool = False
    notes: list[str] = field(default_factory=list)


def _alias_bomb(depth: int = 12) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]" for k in range(1, depth)]
    return "\n".join(lines) + f"\nname: *a{depth - 1}\n"


def _big_list(n: int = 3_000_000) -> str:
    return "name: x\nmodes: [" + ", ".join(["1"] * n) + "]\n"


#: Config values that reach an instrument or a file name, and must be refused before connecting.
BAD_VALUES: dict[str, dict[str, Any]] = {
    "vna power 20 dBm": {"vna": {"power": "20 dBm"}},
    "ramp_rate 1e-15 A/s": {"flux": {"ramp_rate": 1e-15}},
    "averages 1e12": {"vna": {"averages": 10**12}},
    "if_bandwidth 1e-9 Hz": {"vna": {"if_bandwidth": 1e-9}},
    "max_step below resolution": {"flux": {"max_step": "1 nA"}},
    "huge integer points": {"vna": {"points": 10**40}},
    "phase 1e30 deg": {"pumps": {"tones": {"bc": {"phase": "1e30 deg"}}}},
    "mode name with newline": {"modes": {"a\nb": {"frequency": "5 GHz", "vna_port": 4}}},
    "empty mode name": {"modes": {"": {"frequency": "5 GHz", "vna_port": 4}}},
    "linewidth 25 mHz": {"modes": {"a": {"linewidth": "25 mHz"}}},
    "span 1000 GHz": {"vna": {"span": "1000 GHz"}},
}


def matrix(quick: bool, rng: np.random.Generator) -> list[Cell]:
    """Every cell, in run order (random moments drawn from ``rng``)."""
    n_kill = 2 if quick else 10
    n_sig = 1 if quick else 3
    cells = [
        Cell("base-calibrate", "none (reference run, kept state)", "calibrate"),
        Cell("base-sweep", "none (reference run)", "sweep"),
        Cell("base-user", "none (reference run)", "user"),
        Cell("base-lock", "none (reference run)", "lock", state=True),
    ]
    cells += _identity_cells()
    cells += _tamper_cells()
    cells += _data_cells()
    cells += _config_cells(quick)
    for entry in ("calibrate", "lock", "sweep"):
        for k in range(n_kill):
            cells.append(Cell(f"kill9-{entry}-{k}", "kill -9 at a random moment, then restart",
                              entry, stop="kill9", frac=float(rng.uniform(0.05, 0.95)),
                              state=entry == "lock", restart=True))  # fmt: skip
    for entry in ("calibrate", "lock", "sweep", "user"):
        for sig in ("SIGTERM", "SIGINT"):
            for k in range(n_sig):
                cells.append(Cell(f"{sig.lower()}-{entry}-{k}", f"{sig} at a random moment",
                                  entry, stop=sig, frac=float(rng.uniform(0.05, 0.95)),
                                  state=entry == "lock"))  # fmt: skip
    cells.append(Cell("sigterm-connect", "pumps left on; SIGTERM while connecting", "calibrate",
                      stop="SIGTERM", trigger="connect", at=0.1, pumps_on=True))  # fmt: skip
    return cells


def _identity_cells() -> list[Cell]:
    swaps = {"pump_ab": "flux", "pump_bc": "vna", "pump_ca": "awg", "vna": "flux"}
    cells = [Cell("wrong-pump-dry", "pump_ab's address is the GS200; --dry-run", "calibrate-dry",
                  swap=("pump_ab", "flux"), extra=("flux_held",))]  # fmt: skip
    for a, b in swaps.items():
        cells.append(Cell(f"wrong-{a}", f"{a} replaced by the {b} (station addresses swapped)",
                          "calibrate", swap=(a, b), extra=("flux_held",)))  # fmt: skip
    cells.append(Cell("dead-vna", "pumps left on; VNA address dead", "calibrate", pumps_on=True,
                      setup="dead_vna"))  # fmt: skip
    return cells


def _tamper_cells() -> list[Cell]:
    return [
        Cell("lying-level", "GS200 level reads back +50 uA (ramp at start)", "sweep-flux",
             rules=(RuleSpec("flux", "rewrite", LEVEL_QUERY, ("offset", 50e-6)),)),
        Cell("lying-level-cal", "GS200 level reads back +50 uA (calibrate)", "calibrate",
             rules=(RuleSpec("flux", "rewrite", LEVEL_QUERY, ("offset", 50e-6)),)),
        Cell("late-level", "GS200 level reply arrives after the timeout (stale reply)",
             "sweep-flux", rules=(RuleSpec("flux", "delay", LEVEL_QUERY, ("timeout+", 0.3),
                                           count=1, skip=1),)),  # fmt: skip
        Cell("drop-point", "one VNA trace reply dropped", "sweep",
             rules=(RuleSpec("vna", "drop", DATA_QUERY, count=1, skip=10),)),
        Cell("late-point", "one VNA trace reply arrives after the timeout", "sweep",
             rules=(RuleSpec("vna", "delay", DATA_QUERY, ("timeout+", 0.3), count=1, skip=10),)),
        Cell("check-fault", "VNA traces lost during the calibration's checks", "calibrate",
             state=True, rules=(RuleSpec("vna", "drop", DATA_QUERY, count=20, skip=2),),
             extra=("flux_held",)),
    ]


def _data_cells() -> list[Cell]:
    return [
        Cell("symlink-part", "symlinks planted as run_<n>.h5(.part) and state temp names",
             "sweep", setup="symlinks"),
        Cell("new-db-same-dir", "a new database with the same data_dir", "user",
             setup="same_data_dir", extra=("exports_kept",)),
        Cell("db-locked", "database locked by another process", "sweep", setup="db_locked"),
        Cell("disk-full", "disk full mid-run (file size limit: half the reference database)",
             "sweep", disk_full=True),
        Cell("data-dir-file", "output folder not writable (a file stands there)", "sweep",
             setup="data_dir_file", extra=("no_hardware",)),
        Cell("two-calibrate", "two labnr calibrate on one lab", "calibrate",
             setup="second:calibrate", extra=("exclusive",)),
        Cell("lock-vs-calibrate", "labnr lock, then labnr calibrate on the same lab", "lock",
             state=True, setup="second:calibrate", extra=("exclusive",)),
    ]


def _config_cells(quick: bool) -> list[Cell]:
    cells = [
        Cell("yaml-alias-bomb", "YAML alias bomb", "calibrate", raw_config=_alias_bomb(),
             extra=("no_hardware", "fast_refusal"), timeout=30),
        Cell("yaml-3M-list", "3-million-item list", "calibrate", raw_config=_big_list(),
             extra=("no_hardware", "fast_refusal"), timeout=60),
    ]
    values = list(BAD_VALUES.items())
    if quick:
        values = values[:4]
    for label, edit in values:
        name = "cfg-" + "-".join(label.split()[:2]).replace("\n", "")
        cells.append(Cell(name, f"config: {label}", "calibrate", config_edit=edit,
                          extra=("no_hardware", "vna_power"), timeout=30))  # fmt: skip
    return cells
