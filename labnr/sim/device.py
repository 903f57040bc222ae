r"""The simulated device under test: drifts, pump tones in, what the VNA sees out.

:class:`SimDevice` keeps the device's slowly drifting state on the virtual
clock (flux offset, pump-line phases and amplitudes: random walks) and turns
the pump tones at the instruments' outputs and the flux-bias current into a
:class:`~labnr.sim.physics.Configuration`, then into the complex ratios a VNA
reports for a :class:`~labnr.sim.instruments.backend.VNARequest`:

.. math::

    \tilde S_{oi}(f) = G^{out}_o(f_{rx})\, G^{in}_i(f_{in})\, S_{oi}(f_{in} - F_i)
                       + L_{oi} + n,

with per-port line gains :math:`G = 10^{g/20} e^{i(\phi - 2\pi f \tau)}`, the
device's S-matrix from :mod:`labnr.model` in the rotating frames :math:`F`,
a direct leakage :math:`L_{oi}` (o ≠ i, sets the best measurable isolation)
and complex Gaussian noise whose power follows IF bandwidth / averages and
falls with source power (10x narrower IFBW → 10 dB lower floor). The output
is read at the receiver frequency: a converted (or phase-conjugated) signal
is seen only if it lands within IFBW/2 of where the receiver listens.

An unstable configuration (past the parametric threshold) yields saturated,
random traces, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labnr.model import UnstableNetworkError
from labnr.sim.clock import VirtualClock
from labnr.sim.instruments.backend import VNARequest
from labnr.sim.physics import (
    Configuration,
    DeviceTone,
    assign_frames,
    build_network,
    mode_frequency,
    resonant_links,
)
from labnr.sim.spec import DeviceSpec


@dataclass(frozen=True)
class SourceTone:
    """A pump tone at an instrument output, before its line to the device."""

    line: str
    frequency: float  # Hz
    amplitude: float  # V (peak) at the instrument output
    phase: float  # rad at the instrument output


class SimDevice:
    """A device from a :class:`DeviceSpec`, evolving on a virtual clock.

    Parameters
    ----------
    spec : DeviceSpec
        True parameters.
    clock : VirtualClock
        The lab's clock; drifts evolve on it.
    rng : numpy.random.Generator
        Source of every random process (drifts, noise, leakage phases).
    """

    def __init__(self, spec: DeviceSpec, clock: VirtualClock, rng: np.random.Generator) -> None:
        self.spec = spec
        self.clock = clock
        self.rng = rng
        self._t = clock.now
        self.flux_drift = 0.0
        self.flux_jumps = 0.0
        self.line_phase = {n: line.phase for n, line in spec.pump_lines.items()}
        self.line_gain = {n: 1.0 for n in spec.pump_lines}
        self.mode_drift = {n: 0.0 for n in spec.modes}
        ports = sorted(m.vna_port for m in spec.modes.values() if m.vna_port is not None)
        self.port_mode = {m.vna_port: n for n, m in spec.modes.items() if m.vna_port is not None}
        amp = 10 ** (spec.chain.leakage_db / 20)
        self.leakage = {
            (o, i): amp * np.exp(2j * np.pi * rng.random()) for o in ports for i in ports if o != i
        }

    # ------------------------------------------------------------------ drifts
    def advance(self) -> None:
        """Evolve the random walks from the last call up to the clock's time."""
        now = self.clock.now
        dt = now - self._t
        if dt <= 0:
            return
        self._t = now
        root = np.sqrt(dt)
        if self.spec.flux is not None and self.spec.flux.drift > 0:
            self.flux_drift += self.spec.flux.drift * root * self.rng.normal()
        for name, mode in self.spec.modes.items():
            if mode.frequency_drift > 0:
                self.mode_drift[name] += mode.frequency_drift * root * self.rng.normal()
        for name, line in self.spec.pump_lines.items():
            if line.phase_drift > 0:
                self.line_phase[name] += line.phase_drift * root * self.rng.normal()
            if line.amplitude_drift > 0:
                self.line_gain[name] *= float(
                    np.exp(line.amplitude_drift * root * self.rng.normal())
                )

    def jump_flux(self, delta: float) -> None:
        """Add a sudden flux jump (in Phi0), as a trapped vortex would."""
        self.flux_jumps += float(delta)

    def flux_quanta(self, current: float, noisy: bool = True) -> float:
        """Phi/Phi0 for a bias current (A), with drift, jumps and (optionally) noise."""
        f = self.spec.flux
        if f is None:
            return 0.0
        phi = (current - f.offset_current) / f.current_per_flux_quantum
        phi += self.flux_drift + self.flux_jumps
        if noisy and f.noise > 0:
            phi += f.noise * self.rng.normal()
        return float(phi)

    # ------------------------------------------------------------------ configuration
    def device_tones(self, tones: list[SourceTone]) -> list[DeviceTone]:
        """Tones at the device: through each line's attenuation, drift and phase."""
        out = []
        for t in tones:
            line = self.spec.pump_lines[t.line]
            gain = 10 ** (-line.attenuation_db / 20) * self.line_gain[t.line]
            out.append(
                DeviceTone(
                    t.line, t.frequency, t.amplitude * gain, t.phase + self.line_phase[t.line]
                )
            )
        return out

    def configure(
        self, tones: list[SourceTone], current: float, noisy: bool = True
    ) -> Configuration:
        """The device's configuration now, for these pump tones and this bias current."""
        self.advance()
        phi = self.flux_quanta(current, noisy=noisy)
        dev = self.device_tones(tones)
        power = sum(t.amplitude**2 for t in dev)
        freqs, stark = {}, {}
        for n, m in self.spec.modes.items():
            stark[n] = m.stark_per_volt2 * power
            freqs[n] = (
                mode_frequency(m.frequency, m.flux_tunable, phi) + stark[n] + self.mode_drift[n]
            )
        links = resonant_links(self.spec, freqs, dev)
        frames = assign_frames(self.spec, freqs, links)
        net = build_network(self.spec, freqs, frames, links)
        return Configuration(freqs, frames, links, net, self.clock.now, phi, stark)

    # ------------------------------------------------------------------ measurement
    def ideal_response(
        self, request: VNARequest, config: Configuration
    ) -> dict[tuple[int, int], np.ndarray]:
        """Noiseless, leakage-free ratios for a request (what the model predicts).

        Raises :class:`~labnr.model.UnstableNetworkError` for an unstable configuration.
        """
        f_in = np.asarray(request.stimulus_frequencies, dtype=float)
        f_rx = np.asarray(request.receiver_frequencies, dtype=float)
        tol = 0.5 * request.if_bandwidth + 1e-3
        net_ports = config.network.ports
        cache: dict[str, np.ndarray] = {}
        out = {}
        for o_port, i_port in request.parameters:
            data = np.zeros(f_in.size, dtype=complex)
            mo, mi = self.port_mode.get(o_port), self.port_mode.get(i_port)
            if mo is not None and mi is not None:
                if mi not in cache:
                    cache[mi] = self._scatter(config, f_in - config.frames[mi], request)
                S = cache[mi]
                p = len(net_ports)
                w = f_in - config.frames[mi]
                col = net_ports.index(mi)
                row = net_ports.index(mo)
                direct = np.abs(f_rx - (config.frames[mo] + w)) <= tol
                conj = np.abs(f_rx - (config.frames[mo] - w)) <= tol
                data = np.where(direct, S[:, row, col], 0)
                if S.shape[-1] == 2 * p:
                    data = np.where(~direct & conj, S[:, row + p, col], data)
                data = (
                    data
                    * self._line(request, o_port, f_rx, "out")
                    * self._line(request, i_port, f_in, "in")
                )
            out[(o_port, i_port)] = data
        return out

    def _scatter(self, config: Configuration, w: np.ndarray, request: VNARequest) -> np.ndarray:
        """S(w) in the doubled basis; per-point networks if a loop phase rotates."""
        if not config.rotating:
            return config.network.scattering(w)
        # Each point is measured at its own time; the loop phase advances between them.
        times = config.time + np.linspace(0.0, request.sweep_time, w.size, endpoint=False)
        nets = [config.network_at(t) for t in times]
        if any(not n.is_stable() for n in nets[:: max(1, len(nets) // 16)]):
            raise UnstableNetworkError("unstable during the sweep")
        A = np.stack([n.dynamical_matrix(nambu=True) for n in nets])
        B, _ = nets[0]._input_matrix(internal=False)
        Bn = np.block([[B, np.zeros_like(B)], [np.zeros_like(B), B]])
        M = -1j * w[:, None, None] * np.eye(A.shape[-1]) - A
        X = np.linalg.solve(M, np.broadcast_to(Bn, (w.size,) + Bn.shape))
        return np.eye(Bn.shape[1]) - Bn.T @ X

    def _line(self, request: VNARequest, port: int, f: np.ndarray, side: str) -> np.ndarray:
        lines = self.spec.chain.input_lines if side == "in" else self.spec.chain.output_lines
        line = lines.get(port)
        if line is None:
            return np.ones_like(f, dtype=complex)
        return 10 ** (line.gain_db / 20) * np.exp(1j * (line.phase - 2 * np.pi * f * line.delay))

    def measure(
        self, request: VNARequest, tones: list[SourceTone], current: float
    ) -> dict[tuple[int, int], np.ndarray]:
        """What the VNA reports for ``request``: response, leakage and noise."""
        config = self.configure(tones, current)
        n = len(request.stimulus_frequencies)
        try:
            data = self.ideal_response(request, config)
        except UnstableNetworkError:
            data = {
                key: 10 ** (self.rng.uniform(10, 30, n) / 20)
                * np.exp(2j * np.pi * self.rng.random(n))
                for key in request.parameters
            }
        sigma = self.noise_sigma(request)
        for key in request.parameters:
            o, i = key
            same_f = np.allclose(request.stimulus_frequencies, request.receiver_frequencies)
            leak = self.leakage.get(key, 0.0)
            if leak and same_f:
                leak = (
                    leak
                    * self._line(request, o, request.receiver_frequencies, "out")
                    * self._line(request, i, request.stimulus_frequencies, "in")
                )
            elif not same_f:
                leak = 0.0
            noise = (
                sigma.get(i, 0.0)
                * (self.rng.normal(size=n) + 1j * self.rng.normal(size=n))
                / np.sqrt(2)
            )
            data[key] = data[key] + leak + noise
        return data

    def noise_sigma(self, request: VNARequest) -> dict[int, float]:
        """RMS complex noise of the reported ratio, per driven port."""
        base = 10 ** (self.spec.chain.noise_db / 20)
        scale = np.sqrt(request.if_bandwidth / 1e3 / max(1, request.averages))
        out = {}
        for _, i in request.parameters:
            p_dbm = request.port_power_dbm.get(i, 0.0)
            out[i] = base * scale * 10 ** (-p_dbm / 20)
        return out
