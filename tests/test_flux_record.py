"""What labnr last set on the flux survives the process (labnr.flux_record).

A fresh connection (a new process, the next day) to a GS200 whose level
read-back lies must refuse its first ramp, as the process that set the level
would: the record next to the database tells it what labnr left there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qcodes.instrument import Instrument

from labnr.drivers.flux import LevelMismatch
from labnr.drivers.flux_gs200 import GS200FluxBias
from labnr.flux_record import FluxRecord, record_path
from labnr.sim.lab import VirtualLab

STEP = 5e-6  # A, max_step
LIE = 50e-6  # A, the read-back lie (10 max_step)


def connect(lab: VirtualLab, name: str) -> GS200FluxBias:
    return GS200FluxBias(
        name, lab.addresses["flux"], current_per_flux_quantum=1e-3,
        current_limits=(-1e-3, 1e-3), ramp_rate=5e-5, max_step=STEP, poll_interval=0.0,
    )  # fmt: skip


@pytest.fixture
def closing() -> Iterator[None]:
    try:
        yield
    finally:
        Instrument.close_all()


def coil_steps(lab: VirtualLab) -> np.ndarray:
    assert lab.flux_source is not None
    levels = [level for _, level in lab.flux_source.state.history]
    return np.abs(np.diff(levels)) if len(levels) > 1 else np.zeros(1)


def test_a_fresh_connection_refuses_a_lying_readback_from_the_record(
    virtual_lab: VirtualLab, tmp_path: Path, closing: None
) -> None:
    path = record_path(tmp_path / "labnr.db")
    first = connect(virtual_lab, "flux1")
    FluxRecord(path, first).attach()
    first.output(True)
    first.current(40e-6)
    stored = json.loads(path.read_text())
    assert stored["low"] == pytest.approx(40e-6) and stored["high"] == pytest.approx(40e-6)
    first.close()  # the process ends; the output stays on at 40 uA

    gs = virtual_lab.flux_source
    assert gs is not None
    gs.level_offset = LIE  # from now on the level reads 90 uA
    history = list(gs.state.history)
    second = connect(virtual_lab, "flux2")
    assert FluxRecord(path, second).attach() == pytest.approx((40e-6, 40e-6))
    with pytest.raises(LevelMismatch, match="labnr"):
        second.current(0.0)
    virtual_lab.clock.advance(10.0)
    assert gs.state.history == history  # nothing moved
    assert gs.state.level == pytest.approx(40e-6)
    assert coil_steps(virtual_lab).max() <= STEP * (1 + 1e-9)


def test_a_record_of_another_source_is_ignored(
    virtual_lab: VirtualLab, tmp_path: Path, closing: None
) -> None:
    """Another address or identity: the level is adopted as read, the record rewritten."""
    path = record_path(tmp_path / "labnr.db")
    path.write_text(json.dumps({"address": "TCPIP::10.0.0.9::5025::SOCKET", "idn": "x",
                                "low": 0.0, "high": 0.0}))  # fmt: skip
    fb = connect(virtual_lab, "flux3")
    assert FluxRecord(path, fb).attach() is None
    fb.output(True)
    fb.current(10e-6)  # adopted 0 A as read: a normal ramp
    assert json.loads(path.read_text())["low"] == pytest.approx(10e-6)


def test_adopt_takes_the_level_as_read_and_refuses_symlinked_records(
    virtual_lab: VirtualLab, tmp_path: Path, closing: None
) -> None:
    path = record_path(tmp_path / "labnr.db")
    fb = connect(virtual_lab, "flux4")
    rec = FluxRecord(path, fb)
    rec.attach()
    fb.output(True)
    fb.current(30e-6)
    assert rec.adopt() == pytest.approx(30e-6, abs=1e-8)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    path.unlink()
    path.symlink_to(outside)
    assert rec.read() is None  # a planted link is not read ...
    rec.write(1e-6, 1e-6)  # ... nor written through (logged, not raised)
    assert outside.read_text() == "keep"


def test_a_level_nobody_vouched_for_is_refused_until_adopted(
    virtual_lab: VirtualLab, tmp_path: Path, closing: None
) -> None:
    """No record, output on at a level set outside labnr: even a true read-back is refused."""
    path = record_path(tmp_path / "labnr.db")
    setter = connect(virtual_lab, "by_hand")
    setter.output(True)
    setter.current(25e-6)  # someone else's tool left it here
    setter.close()
    gs = virtual_lab.flux_source
    assert gs is not None
    history = list(gs.state.history)
    fb = connect(virtual_lab, "fresh")
    rec = FluxRecord(path, fb)
    assert rec.attach() is None
    with pytest.raises(LevelMismatch, match="no record of setting it.*labnr flux adopt"):
        fb.current(0.0)
    assert gs.state.history == history
    assert rec.adopt() == pytest.approx(25e-6, abs=1e-8)
    fb.current(10e-6)  # vouched for: a normal ramp
    assert gs.state.level == pytest.approx(10e-6)
    assert coil_steps(virtual_lab).max() <= STEP * (1 + 1e-9)
