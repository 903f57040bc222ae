"""A synthetic plant for the lock: a three-mode circulator from labnr.model behind pump knobs.

Physics: :func:`labnr.model.circulator3`-type loop (modes a, b, c, linewidth
``kappa``, all external) with couplings ``g_t = eta * A_t * gain_t`` and
phases ``phi_t + line_phase_t`` for the tones ab, bc, ca; loop phase
``Phi = sum_t (phi_t + line_phase_t)``. The lock's knobs are the ab tone's
phase and the three amplitudes.

Drift model (documented for the benchmark): every line's phase is an
independent Gaussian random walk of ``phase_walk`` rad/sqrt(hour) (so the
loop phase walks by sqrt(3) times that), every line's gain a geometric random
walk of ``amplitude_walk`` per sqrt(hour), optionally a steady ramp of the ab
line phase (``phase_ramp`` rad/hour), and optionally each mode's
detuning a random walk of ``detuning_walk`` Hz/sqrt(hour) (flux drift). Reads
carry complex Gaussian noise of rms ``noise`` per element (1e-3: -60 dB) and
a fixed unknown measurement-chain phase per port and direction. The clock is
virtual: ``wait`` advances it, every read takes ``read_duration``.

Faults: :meth:`step_line_phase` (a sudden line-phase step),
:meth:`flux_jump` (modes detuned), :meth:`start_instability` (a two-mode
squeezing term to an idler mode growing linearly in time, past the
parametric threshold eventually; an unstable read saturates at +20 dB).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from labnr.lock import KnobSpec, Reading, check_command, element_name, network_elements
from labnr.model import Mode, Network

HOUR = 3600.0
TONES = ("ab", "bc", "ca")
LINKS = {"ab": ("a", "b"), "bc": ("b", "c"), "ca": ("c", "a")}
KNOBS = ("pump_ab_phase", "pump_ab_amplitude", "pump_bc_amplitude", "pump_ca_amplitude")


@dataclass
class Drift:
    """Random-walk strengths per sqrt(hour)."""

    phase_walk: float = np.radians(3.0)  # rad / sqrt(h), each line
    amplitude_walk: float = 0.005  # fractional / sqrt(h), each line
    detuning_walk: float = 0.0  # Hz / sqrt(h), each mode
    phase_ramp: float = 0.0  # rad / h, steady drift of the ab line (thermal)


def build_network(
    kappa: float,
    g: Mapping[str, float],
    phase: Mapping[str, float],
    detuning: Mapping[str, float] | None = None,
    squeeze: float = 0.0,
) -> Network:
    """The circulator loop (and an idler squeezed with ``c`` when ``squeeze > 0``)."""
    det = detuning or {}
    modes = [Mode(m, kappa_ext=kappa, detuning=det.get(m, 0.0)) for m in "abc"]
    if squeeze > 0:
        modes.append(Mode("idler", kappa_int=kappa))
    net = Network(modes)
    for t in TONES:
        net.beamsplitter(*LINKS[t], g=max(g[t], 0.0), phase=phase[t])
    if squeeze > 0:
        net.squeezing("c", "idler", g=squeeze)
    return net


class SyntheticPlant:
    """Implements :class:`labnr.lock.Plant` on the model; see the module docstring.

    Parameters
    ----------
    rng : numpy.random.Generator
        Drives drifts, noise, chain phases and the initial line phases.
    kappa : float
        Mode linewidth, Hz.
    noise : float
        rms complex noise per read element (S units).
    read_duration : float
        Seconds per read.
    drift : Drift
        Random-walk strengths.
    chain : bool
        Random fixed measurement-chain phases (unknown to the lock unless
        the test passes :attr:`chain` to the model Jacobian).
    """

    amplitude_op = 0.1  # V at the operating point (line gain 1)

    def __init__(
        self,
        rng: np.random.Generator,
        kappa: float = 30e6,
        noise: float = 1e-3,
        read_duration: float = 0.2,
        drift: Drift | None = None,
        chain: bool = True,
    ) -> None:
        self.rng = rng
        self.kappa = kappa
        self.noise = noise
        self.read_duration = read_duration
        self.drift = drift or Drift()
        self.eta = kappa / 2 / self.amplitude_op  # Hz per V
        self.t = 0.0
        self._t_drift = 0.0
        self.line_phase = {t: float(rng.uniform(-np.pi, np.pi)) for t in TONES}
        self.line_gain = {t: 1.0 for t in TONES}
        self.detuning = {m: 0.0 for m in "abc"}
        self.tone_phase = {t: 0.0 for t in TONES}
        self.calibrated_line_phase = dict(self.line_phase)
        self.amplitude = {t: self.amplitude_op for t in TONES}
        self.tone_phase["ab"] = self.operating_phase()
        self.pumps_on = True
        self.squeeze_rate = 0.0  # Hz / s
        self.squeeze_start = 0.0
        self.acquisitions = 0
        self.safe_calls: list[float] = []
        self.writes: list[tuple[float, dict[str, float]]] = []
        ports = "abc"
        cin = {p: np.exp(2j * np.pi * rng.random()) for p in ports} if chain else {}
        cout = {p: np.exp(2j * np.pi * rng.random()) for p in ports} if chain else {}
        self.chain = {
            element_name(o, i): complex(cout.get(o, 1.0) * cin.get(i, 1.0))
            for o in ports
            for i in ports
        }
        self.limits = {
            "pump_ab_phase": (-np.pi, np.pi, 0.25, "rad", True),
            **{f"pump_{t}_amplitude": (0.0, 0.3, 0.012, "V", False) for t in TONES},
        }

    # ------------------------------------------------------------------ truth
    def operating_phase(self) -> float:
        """Knob value of the ab phase that makes the loop phase pi/2 now."""
        phi = np.pi / 2 - sum(self.line_phase.values()) - self.tone_phase["bc"]
        phi -= self.tone_phase["ca"]
        return float((phi + np.pi) % (2 * np.pi) - np.pi)

    def operating_point(self) -> dict[str, float]:
        """Knob values of the true operating point now."""
        op = {"pump_ab_phase": self.operating_phase()}
        for t in TONES:
            op[f"pump_{t}_amplitude"] = self.amplitude_op / self.line_gain[t]
        return op

    def network(self) -> Network:
        """The device now (true line phases, gains, detunings, squeezing)."""
        g = {t: self.eta * self.amplitude[t] * self.line_gain[t] * self.pumps_on for t in TONES}
        ph = {t: self.tone_phase[t] + self.line_phase[t] for t in TONES}
        sq = self.squeeze_rate * max(self.t - self.squeeze_start, 0.0) if self.pumps_on else 0.0
        return build_network(self.kappa, g, ph, self.detuning, sq)

    def true_isolation_db(self) -> float:
        """Noiseless worst-path isolation now, dB (pumps off: 0 dB, nothing isolated)."""
        s = network_elements(self.network())
        pairs = [("b", "a"), ("c", "b"), ("a", "c")]
        fwd = np.array([abs(s[element_name(o, i)]) for o, i in pairs])
        rev = np.array([abs(s[element_name(i, o)]) for o, i in pairs])
        return float(np.min(20 * np.log10(np.maximum(fwd, 1e-15) / np.maximum(rev, 1e-15))))

    # ------------------------------------------------------------------ model for the lock
    def model(
        self, line_phase: Mapping[str, float] | None = None
    ) -> Callable[[Mapping[str, float]], Network]:
        """``network_of(knob_values)``: the calibrated model (line phases at calibration)."""
        lp = dict(line_phase or self.calibrated_line_phase)
        kappa, eta, tone = self.kappa, self.eta, dict(self.tone_phase)

        def network_of(k: Mapping[str, float]) -> Network:
            g = {t: eta * k[f"pump_{t}_amplitude"] for t in TONES}
            ph = {t: lp[t] + (k["pump_ab_phase"] if t == "ab" else tone[t]) for t in TONES}
            return build_network(kappa, g, ph)

        return network_of

    # ------------------------------------------------------------------ Plant protocol
    def knobs(self) -> dict[str, KnobSpec]:
        values = {"pump_ab_phase": self.tone_phase["ab"]}
        values.update({f"pump_{t}_amplitude": self.amplitude[t] for t in TONES})
        return {
            n: KnobSpec(n, values[n], lo, hi, step, unit, per)
            for n, (lo, hi, step, unit, per) in self.limits.items()
        }

    def set_knobs(self, values: Mapping[str, float]) -> None:
        check_command(self.knobs(), values)  # the "driver" validates again
        self.writes.append((self.t, dict(values)))
        for n, v in values.items():
            if n == "pump_ab_phase":
                self.tone_phase["ab"] = float(v)
            else:
                self.amplitude[n.split("_")[1]] = float(v)

    def now(self) -> float:
        return self.t

    def wait(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"wait({seconds}) is negative")
        self.t += float(seconds)

    def safe_state(self) -> None:
        self.pumps_on = False
        self.safe_calls.append(self.t)

    def read(self) -> Reading:
        self.t += self.read_duration
        self._advance()
        self.acquisitions += 1
        net = self.network()
        if net.is_stable():
            s = network_elements(net, chain=self.chain)
        else:  # past threshold: the output saturates far above unity (+20 dB)
            s = {element_name(o, i): 10.0 + 0j for o in "abc" for i in "abc"}
        sigma = self.noise / np.sqrt(2)
        noisy = {
            n: v + complex(sigma * self.rng.normal(), sigma * self.rng.normal())
            for n, v in s.items()
        }
        return Reading(self.t, noisy, self.read_duration, 1)

    # ------------------------------------------------------------------ drift and faults
    def _advance(self) -> None:
        dt = self.t - self._t_drift
        if dt <= 0:
            return
        self._t_drift = self.t
        root = np.sqrt(dt / HOUR)
        d = self.drift
        self.line_phase["ab"] += d.phase_ramp * dt / HOUR
        for t in TONES:
            if d.phase_walk:
                self.line_phase[t] += d.phase_walk * root * self.rng.normal()
            if d.amplitude_walk:
                self.line_gain[t] *= float(np.exp(d.amplitude_walk * root * self.rng.normal()))
        if d.detuning_walk:
            for m in "abc":
                self.detuning[m] += d.detuning_walk * root * self.rng.normal()

    def step_line_phase(self, tone: str, delta: float) -> None:
        """Sudden line-phase step (rad) on one pump line."""
        self.line_phase[tone] += delta

    def flux_jump(self, detuning: float, modes: str = "ab") -> None:
        """Detune the flux-tunable modes by ``detuning`` Hz (a trapped vortex)."""
        for m in modes:
            self.detuning[m] += detuning

    def start_instability(self, rate: float) -> None:
        """From now on a squeezing term grows by ``rate`` Hz per second."""
        self.squeeze_start = self.t
        self.squeeze_rate = rate

    def recalibrate(self) -> None:
        """What a perfect re-acquisition does: flux back, knobs at the true operating point."""
        self.detuning = {m: 0.0 for m in "abc"}
        op = self.operating_point()
        self.tone_phase["ab"] = op["pump_ab_phase"]
        for t in TONES:
            self.amplitude[t] = op[f"pump_{t}_amplitude"]
