"""Seeded synthetic S-matrix data of a pumped three-mode circulator, made with labnr.model.

Independent of labnr.fit's own model code: the device is a
:class:`labnr.model.Network` per pump setting, reported as a VNA (and the
virtual lab) does: in the engineering convention, i.e. the conjugate of the
model's S, times the lines at the absolute stimulus and receiver frequencies
(``e^{-2 pi i (f_in tau_in + f_rx tau_out)}``); the noise is complex Gaussian
with per-quadrature standard deviation ``sigma``.

SNR convention: ``snr_db = 40`` means a complex noise RMS of 1 % of a unit
transmission through the lines (``sigma = 0.01 |G_out G_in| / sqrt 2`` per
quadrature, with the median line gain).

Used by tests/fit and benchmarks/bench_fit_smatrix.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labnr.fit import FitLink, FitMode, SMatrixData
from labnr.model import Mode, Network

PORTS = ("a", "b", "c")
CENTRES = {"a": 5.31e9, "b": 6.47e9, "c": 7.905e9}
KAPPA_EXT = {"a": 24.0e6, "b": 30.0e6, "c": 36.0e6}
KAPPA_INT = {"a": 0.20e6, "b": 0.25e6, "c": 0.30e6}
DETUNING = {"a": -2.9e6, "b": -4.0e6, "c": -1.7e6}
#: link (lower mode, higher mode) -> tone, coupling per instrument volt (Hz/V), line phase
TONES = {
    ("a", "b"): ("ab", 4.0e9 * 10 ** (-30 / 20), 0.70),
    ("b", "c"): ("bc", 5.0e9 * 10 ** (-32 / 20), -2.10),
    ("a", "c"): ("ca", 3.5e9 * 10 ** (-29 / 20), 1.30),
}
GAIN_IN = {"a": 10 ** (-62 / 20), "b": 10 ** (-61 / 20), "c": 10 ** (-63 / 20)}
GAIN_OUT = {"a": 10 ** (50 / 20), "b": 10 ** (51 / 20), "c": 10 ** (49 / 20)}
PHASE_IN = {"a": 0.3, "b": -1.2, "c": 2.0}
PHASE_OUT = {"a": 1.1, "b": -0.4, "c": 0.8}
DELAY_IN = {"a": 41e-9, "b": 44e-9, "c": 39e-9}
DELAY_OUT = {"a": 62e-9, "b": 66e-9, "c": 58e-9}
LINE_PHASE_SUM = 0.70 - 2.10 - 1.30  # theta_ab + theta_bc - theta_ca: the loop phase offset


@dataclass
class Truth:
    """The true parameters of a synthetic data set."""

    detuning: dict[str, float]
    kappa_ext: dict[str, float]
    kappa_int: dict[str, float]
    eta: dict[str, float]  # tone -> Hz/V
    theta: dict[str, float]  # tone -> rad
    amplitudes: dict[str, np.ndarray]
    phases: dict[str, np.ndarray]
    sigma: float
    stark: dict[tuple[str, str], float] = field(default_factory=dict)  # (mode, tone) -> Hz/V^2

    def g(self, link: tuple[str, str], k: int = 0) -> float:
        tone = TONES[link][0]
        return self.eta[tone] * float(self.amplitudes[tone][k])

    def loop_flux(self, k: int = 0) -> float:
        """arg(c_ab c_bc conj(c_ac)) at setting k, wrapped."""
        ph = {t: self.phases[t][k] + self.theta[t] for t in self.theta}
        return float(np.angle(np.exp(1j * (ph["ab"] + ph["bc"] - ph["ca"]))))

    def detuning_at(self, mode: str, k: int) -> float:
        shift = sum(chi * self.amplitudes[t][k] ** 2 for (m, t), chi in self.stark.items()
                    if m == mode)  # fmt: skip
        return self.detuning[mode] + shift


def circulator_phases(k_settings: int, spread: float = 0.5) -> dict[str, np.ndarray]:
    """Tone phases putting the loop flux at pi/2 (middle setting) +- ``spread``."""
    total = np.pi / 2 - LINE_PHASE_SUM  # phi_ab + phi_bc - phi_ca
    bc = total + spread * np.linspace(-1, 1, k_settings) if k_settings > 1 else np.array([total])
    return {"ab": np.zeros(k_settings), "bc": bc, "ca": np.zeros(k_settings)}


def make_truth(
    k_settings: int = 3,
    amplitude: float = 0.1,
    snr_db: float = 40.0,
    amplitudes: dict[str, np.ndarray] | None = None,
    phases: dict[str, np.ndarray] | None = None,
    stark: dict[tuple[str, str], float] | None = None,
) -> Truth:
    if amplitudes is None:
        scale = 1 + 0.1 * np.linspace(-1, 1, k_settings) if k_settings > 1 else np.ones(1)
        amplitudes = {t: amplitude * scale for (t, _, _) in TONES.values()}
    phases = circulator_phases(k_settings) if phases is None else phases
    through = float(np.median([GAIN_OUT[o] * GAIN_IN[i] for o in PORTS for i in PORTS]))
    return Truth(
        dict(DETUNING), dict(KAPPA_EXT), dict(KAPPA_INT),
        {t: eta for (t, eta, _) in TONES.values()},
        {t: th for (t, _, th) in TONES.values()},
        {t: np.asarray(v, float) for t, v in amplitudes.items()},
        {t: np.asarray(v, float) for t, v in phases.items()},
        10 ** (-snr_db / 20) * through / np.sqrt(2),
        dict(stark or {}),
    )  # fmt: skip


def network(truth: Truth, k: int) -> Network:
    modes = [
        Mode(
            m,
            kappa_ext=truth.kappa_ext[m],
            kappa_int=truth.kappa_int[m],
            detuning=truth.detuning_at(m, k),
        )  # fmt: skip
        for m in PORTS
    ]
    net = Network(modes)
    for (a, b), (tone, eta, _) in TONES.items():
        amp = truth.amplitudes[tone][k]
        net.beamsplitter(a, b, eta * amp, truth.phases[tone][k] + truth.theta[tone])
    return net


def simulate(
    truth: Truth,
    rng: np.random.Generator,
    points: int = 401,
    span: float = 150e6,
    noise: bool = True,
    convention: str = "engineering",
) -> SMatrixData:
    """Measured S (K, F, 3, 3) with lines and noise, as SMatrixData.

    ``convention="physics"``: the model's S itself instead of its conjugate.
    """
    delta = np.linspace(-span / 2, span / 2, points)
    K = len(next(iter(truth.amplitudes.values())))
    S = np.empty((K, points, 3, 3), dtype=complex)
    for k in range(K):
        S[k] = network(truth, k).scattering(delta, nambu=False)
    if convention == "engineering":
        S = np.conj(S)
    for o, po in enumerate(PORTS):
        for i, pi in enumerate(PORTS):
            f_in, f_rx = CENTRES[pi] + delta, CENTRES[po] + delta
            line = (
                GAIN_OUT[po]
                * GAIN_IN[pi]
                * np.exp(
                    1j * (PHASE_OUT[po] + PHASE_IN[pi])
                    - 2j * np.pi * (f_in * DELAY_IN[pi] + f_rx * DELAY_OUT[po])
                )
            )
            S[:, :, o, i] *= line
    if noise:
        S = S + truth.sigma * (rng.normal(size=S.shape) + 1j * rng.normal(size=S.shape))
    return SMatrixData(S, delta, PORTS, truth.amplitudes, truth.phases, run_id="synthetic")


def user_guesses(
    truth: Truth, pump_mode: bool = True, detuning_error: float = 0.25, coupling_error: float = 0.3
) -> tuple[list[FitMode], list[FitLink]]:
    """What a user would type: detunings off by a quarter linewidth, couplings off by 30 %.

    Linewidths are the round design values (25, 30, 35 MHz); line phases unknown (0).
    """
    design = {"a": 25e6, "b": 30e6, "c": 35e6}
    sign = {"a": 1, "b": -1, "c": 1}
    modes = [
        FitMode(
            m,
            kappa_ext=design[m],
            kappa_int=0.5e6,
            detuning=truth.detuning[m] + sign[m] * detuning_error * design[m],
        )  # fmt: skip
        for m in PORTS
    ]
    links = []
    for j, ((a, b), (tone, eta, _)) in enumerate(TONES.items()):
        err = 1 + coupling_error * (-1) ** j
        if pump_mode:
            links.append(FitLink(a, b, tone=tone, eta=eta * err))
        else:
            links.append(FitLink(a, b, g=truth.g((a, b)) * err))
    return modes, links
