r"""The simulated device under test: drifts, pump tones in, what the VNA sees out.

:class:`SimDevice` keeps the device's slowly drifting state on the virtual
clock (flux offset, pump-line phases and amplitudes: random walks) and turns
the pump tones at the instruments' outputs and the flux-bias current into a
:class:`~labnr.sim.physics.Configuration`, then into the complex ratios a VNA
reports for a :class:`~labnr.sim.instruments.backend.VNARequest`:

.. math::

    \tilde S_{oi}(f) = G^{out}_o(f_{rx})\, G^{in}_i(f_{in})\, S_{oi}(f_{in} - F_i)^*
                       + L_{oi} + n,

with per-port line gains :math:`G = 10^{g/20} e^{i(\phi - 2\pi f \tau)}`, the
device's S-matrix from :mod:`labnr.model` in the rotating frames :math:`F`
— conjugated, because a VNA reports phasors in the engineering convention
:math:`e^{+j\omega t}` while the model uses :math:`e^{-i\omega t}` (a delay is
:math:`e^{-j2\pi f\tau}` and a resonance turns clockwise, as on a real analyser) —
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
        p = len(net_ports)
        nambu = config.network.has_squeezing
        cache: dict[str, np.ndarray] = {}
        lines = _LineCache(self, f_in, f_rx)
        out = {}
        for o_port, i_port in request.parameters:
            data = np.zeros(f_in.size, dtype=complex)
            mo, mi = self.port_mode.get(o_port), self.port_mode.get(i_port)
            if mo is not None and mi is not None:
                w = f_in - config.frames[mi]
                if mi not in cache:
                    cache[mi] = self._scatter(config, w, request, nambu)
                S = cache[mi]
                col, row = net_ports.index(mi), net_ports.index(mo)
                direct = np.abs(f_rx - (config.frames[mo] + w)) <= tol
                data = np.where(direct, S[:, row, col], 0)
                if nambu:
                    conj = np.abs(f_rx - (config.frames[mo] - w)) <= tol
                    data = np.where(~direct & conj, S[:, row + p, col], data)
                # A VNA reports ratios of phasors in the engineering convention
                # (e^{+j omega t}); labnr.model works with e^{-i omega t}: conjugate.
                data = np.conj(data) * lines.get(o_port, "out") * lines.get(i_port, "in")
            out[(o_port, i_port)] = data
        return out

    def _scatter(
        self, config: Configuration, w: np.ndarray, request: VNARequest, nambu: bool
    ) -> np.ndarray:
        """S(w) (doubled basis if ``nambu``); per-point networks if a loop phase rotates."""
        if not config.rotating:
            return config.network.scattering(w, nambu=nambu)
        # Each point is measured at its own time; the loop phase advances between them.
        times = config.time + np.linspace(0.0, request.sweep_time, w.size, endpoint=False)
        nets = [config.network_at(t) for t in times]
        if any(not n.is_stable() for n in nets[:: max(1, len(nets) // 16)]):
            raise UnstableNetworkError("unstable during the sweep")
        A = np.stack([n.dynamical_matrix(nambu=nambu) for n in nets])
        B, _ = nets[0]._input_matrix(internal=False)
        Bn = np.block([[B, np.zeros_like(B)], [np.zeros_like(B), B]]) if nambu else B
        M = -1j * w[:, None, None] * np.eye(A.shape[-1]) - A
        X = np.linalg.solve(M, np.broadcast_to(Bn, (w.size,) + Bn.shape))
        return np.eye(Bn.shape[1]) - Bn.T @ X

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
        same_f = np.allclose(request.stimulus_frequencies, request.receiver_frequencies)
        lines = _LineCache(self, request.stimulus_frequencies, request.receiver_frequencies)
        for key in request.parameters:
            o, i = key
            leak = self.leakage.get(key, 0.0) if same_f else 0.0
            if leak:
                leak = leak * lines.get(o, "out") * lines.get(i, "in")
            noise = self.rng.normal(size=(2, n))
            data[key] = (
                data[key] + leak + sigma.get(i, 0.0) / np.sqrt(2) * (noise[0] + 1j * noise[1])
            )
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


class _LineCache:
    """Complex line factors per (port, side) for one request, computed once."""

    def __init__(self, device: SimDevice, f_in: np.ndarray, f_rx: np.ndarray) -> None:
        self.chain = device.spec.chain
        self.f = {"in": np.asarray(f_in, dtype=float), "out": np.asarray(f_rx, dtype=float)}
        self.cache: dict[tuple[int, str], np.ndarray | float] = {}

    def get(self, port: int, side: str) -> np.ndarray | float:
        key = (port, side)
        if key not in self.cache:
            lines = self.chain.input_lines if side == "in" else self.chain.output_lines
            line = lines.get(port)
            if line is None:
                self.cache[key] = 1.0
            else:
                phase = line.phase - 2 * np.pi * self.f[side] * line.delay
                self.cache[key] = 10 ** (line.gain_db / 20) * np.exp(1j * phase)
        return self.cache[key]
