"""Fixtures of the storage tests: a temporary QCoDeS database with synthetic labnr runs.

The runs are written by :mod:`synthetic_runs` in the measurement core's
dataset layout. (The measurement-core tests take their lab-session fixtures
from :mod:`lab_sessions`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import qcodes as qc

# the measurement core's lab-session fixtures (open_lab on the virtual lab)
from lab_sessions import em, jpc, operating, restore_db  # noqa: F401
from qcodes.dataset import initialise_or_create_database_at
from synthetic_runs import (
    MAP_AMPS,
    MAP_PHASES,
    PHASES,
    SyntheticRun,
    circulator_s,
    flux_s,
    write_run,
)

# ============================================================================
# Storage & plots fixtures (test_export.py, test_load.py, test_plots.py).
# ============================================================================

FLUX = np.linspace(-0.45, 0.45, 41)


@pytest.fixture
def measure_db(tmp_path: Path) -> Iterator[Path]:
    """A fresh QCoDeS database, current for the test; the old location is restored."""
    old = qc.config.core.db_location
    path = tmp_path / "labnr.db"
    initialise_or_create_database_at(path)
    try:
        yield path
    finally:
        qc.config.core.db_location = old


@pytest.fixture
def smatrix_run(measure_db: Path) -> SyntheticRun:
    """One ideal-circulator S-matrix (no knobs)."""
    return write_run("measure_smatrix", [], circulator_s)


@pytest.fixture
def phase_run(measure_db: Path) -> SyntheticRun:
    """A loop-phase sweep of 21 points."""
    return write_run("sweep_pump_phase", [("pump_ab_phase", "rad", PHASES)], circulator_s)


def _map_knobs() -> list[tuple[str, str, np.ndarray]]:
    return [("pump_ab_phase", "rad", MAP_PHASES), ("pump_ab_amplitude", "V", MAP_AMPS)]


@pytest.fixture
def map_run(measure_db: Path) -> SyntheticRun:
    """A complete 10 x 10 map of loop phase and pump amplitude."""
    return write_run("map_pumps", _map_knobs(), circulator_s)


@pytest.fixture
def interrupted_map_run(measure_db: Path) -> SyntheticRun:
    """The same map stopped after 47 points."""
    return write_run("map_pumps", _map_knobs(), circulator_s, limit=47)


@pytest.fixture
def flux_run(measure_db: Path) -> SyntheticRun:
    """Flux spectroscopy: 41 flux values, 301 offsets over 120 MHz, reflections only."""
    return write_run(
        "sweep_flux",
        [("flux", "Phi0", FLUX)],
        flux_s,
        elements=[(m, m) for m in ("a", "b", "c")],
        nfreq=301,
        span=120e6,
    )


# ============================================================================
# end of storage & plots fixtures
# ============================================================================
