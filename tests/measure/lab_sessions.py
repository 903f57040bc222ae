"""Lab-session fixtures and truth helpers of the measurement-core tests.

Lab sessions on the embedded virtual lab (``open_lab`` with a temporary
database). Test modules import the fixtures they use from here
(``from lab_sessions import jpc, operating``; tests/measure is on ``sys.path``
under pytest's default import mode). Tests may read the virtual lab's truth
(``session.virtual_lab``); the code under test (labnr.measure) never does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import qcodes as qc

from labnr.session import LabSession, open_lab

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
JPC = CONFIGS / "sim_jpc_circulator.yaml"
EM = CONFIGS / "sim_em_circulator.yaml"


@pytest.fixture
def restore_db() -> Iterator[None]:
    """Put QCoDeS's database location back after the test."""
    old = qc.config.core.db_location
    try:
        yield
    finally:
        qc.config.core.db_location = old


def _open(path: Path, tmp_path: Path) -> LabSession:
    return open_lab(path, database=tmp_path / "labnr.db", data_dir=tmp_path / "data")


@pytest.fixture
def jpc(tmp_path: Path, restore_db: None) -> Iterator[LabSession]:
    """The JPC circulator config's session (flux bias uncalibrated, pumps off)."""
    session = _open(JPC, tmp_path)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def em(tmp_path: Path, restore_db: None) -> Iterator[LabSession]:
    """The electromechanical circulator config's session (pumps off)."""
    session = _open(EM, tmp_path)
    try:
        yield session
    finally:
        session.close()


def circulator_amplitudes(session: LabSession) -> dict[str, float]:
    """Tone amplitudes (V) giving |g| = sqrt(ka kb)/2 on every link (truth, test side)."""
    spec = session.virtual_lab.spec
    kappa = {n: m.kappa_ext + m.kappa_int for n, m in spec.modes.items()}
    out = {}
    for tone, t in session.config.pumps.tones.items():  # the preset names lines like tones
        link = next(lk for lk in spec.links if {lk.a, lk.b} == set(t.modes))
        line = spec.pump_lines[tone]
        g = np.sqrt(kappa[link.a] * kappa[link.b]) / 2
        out[tone] = float(g / (link.coupling_per_volt * 10 ** (-line.attenuation_db / 20)))
    return out


def to_sweet_spot(session: LabSession) -> None:
    """Calibrate the flux bias with the truth and ramp to zero flux (the sweet spot)."""
    truth = session.virtual_lab.spec.flux
    session.flux.current_per_flux_quantum(truth.current_per_flux_quantum)
    session.flux.offset_current(truth.offset_current)
    session.flux.output(True)
    session.flux.flux(0.0)


@pytest.fixture
def operating(jpc: LabSession) -> LabSession:
    """JPC at the sweet spot with the three pumps on at circulator strength."""
    to_sweet_spot(jpc)
    jpc.pump.set_tones({t: {"amplitude": a} for t, a in circulator_amplitudes(jpc).items()})
    jpc.pump.output(True)
    return jpc


def expected_s(session: LabSession, truth: object, out_mode: str, in_mode: str,
               f_in: np.ndarray, f_rx: np.ndarray) -> np.ndarray:  # fmt: skip
    """The model's S(out<-in) at stimulus ``f_in`` (receivers at ``f_rx``) times the lines."""
    lab = session.virtual_lab
    cfg = truth.configuration  # type: ignore[attr-defined]
    ports = list(cfg.network.ports)
    S = cfg.network.scattering(f_in - cfg.frames[in_mode], nambu=False)
    pin, pout = lab.spec.modes[in_mode].vna_port, lab.spec.modes[out_mode].vna_port
    li, lo = lab.spec.chain.input_lines[pin], lab.spec.chain.output_lines[pout]
    line = 10 ** ((li.gain_db + lo.gain_db) / 20) * np.exp(
        1j * (li.phase + lo.phase - 2 * np.pi * (f_in * li.delay + f_rx * lo.delay))
    )
    return np.conj(S[:, ports.index(out_mode), ports.index(in_mode)]) * line  # VNA convention


def noise_sigma(session: LabSession, ifbw: float, power_dbm: float) -> float:
    """RMS complex noise of a measured ratio (the virtual lab's documented model)."""
    base = 10 ** (session.virtual_lab.spec.chain.noise_db / 20)
    return base * np.sqrt(ifbw / 1e3) * 10 ** (-power_dbm / 20)


def loop_flux(session: LabSession) -> float:
    """True synthetic flux arg(g_ab g_bc g_ca) of the present pumps, rad."""
    net = session.virtual_lab.truth().configuration.network

    def hop(x: str, y: str) -> complex:
        c = net.coupling(x, y)
        return c.value if (c.a, c.b) == (x, y) else np.conj(c.value)

    return float(np.angle(hop("a", "b") * hop("b", "c") * hop("c", "a")))


def flux_history(session: LabSession) -> list[tuple[float, float]]:
    return list(session.virtual_lab.flux_source.state.history)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.abs(x) ** 2)))
