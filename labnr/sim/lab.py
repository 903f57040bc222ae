"""The virtual lab: a simulated device behind emulated instruments on loopback.

>>> from labnr.sim import VirtualLab
>>> with VirtualLab("jpc_circulator", seed=1) as lab:      # doctest: +SKIP
...     print(lab.addresses)   # {'vna': 'TCPIP::127.0.0.1::40123::SOCKET', ...}

Instruments see only SCPI; the device sees only what the instruments output:
tones demodulated from the AWG's uploaded samples (optionally IQ-up-converted
with an SGS100A as LO), CW tones of SGS100A sources, and the GS200's current.
Only tests and benchmarks may call :meth:`VirtualLab.truth`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labnr.sim.clock import VirtualClock
from labnr.sim.device import SimDevice, SourceTone
from labnr.sim.instruments.awg5208 import AWG5208Emulator
from labnr.sim.instruments.backend import VNARequest
from labnr.sim.instruments.gs200 import GS200Emulator
from labnr.sim.instruments.history import AWGRecorder, LevelRecorder, SourceRecorder
from labnr.sim.instruments.pna import PNAXEmulator
from labnr.sim.instruments.scpi import SCPIInstrument
from labnr.sim.instruments.server import SCPIServer
from labnr.sim.instruments.sgs100a import SGS100AEmulator
from labnr.sim.physics import Configuration
from labnr.sim.spec import DeviceSpec, PumpLineSpec, load_device

#: Mixer conversion gain of the IQ up-converter with enough LO drive (6 dB loss).
MIXER_GAIN = 0.5
#: LO power (dBm) below which the mixer's conversion gain drops dB for dB.
MIXER_LO_MIN_DBM = 7.0

#: QCoDeS driver classes written into the station YAML, per instrument kind.
STATION_TYPES = {
    "vna": "labnr.drivers.keysight_pna.KeysightN5242B",
    "awg": "labnr.drivers.tektronix_awg5208.TektronixAWG5208Direct",
    "sgs": "labnr.drivers.sgs100a.RohdeSchwarzSGS100A",
    "flux": "labnr.drivers.flux_gs200.GS200FluxBias",
}

#: Extra ``init`` arguments written into the station YAML, per instrument kind.
#: The flux bias gets nominal calibration numbers (not the device's truth:
#: calibration measures those) and the safety limits of configs/station_sim.yaml.
STATION_INIT: dict[str, dict[str, Any]] = {
    "flux": {
        "current_per_flux_quantum": 1.0e-3,
        "offset_current": 0.0,
        "current_limits": [-1.0e-3, 1.0e-3],
        "ramp_rate": 1.0e-4,
        "max_step": 1.0e-5,
    },
}


@dataclass(frozen=True)
class Truth:
    """The simulator's true state (tests and benchmarks only).

    Attributes
    ----------
    spec : DeviceSpec
        The device file's true parameters.
    configuration : Configuration
        Mode frequencies, frames, resonant links and the model network for
        the instruments' present settings (flux noise left out).
    line_phase : dict
        Present phase of each pump line, rad (drifted).
    line_gain : dict
        Present amplitude factor of each pump line (drift, on top of attenuation).
    flux : float
        Present flux, Phi0.
    time : float
        Virtual time, s.
    """

    spec: DeviceSpec
    configuration: Configuration
    line_phase: dict[str, float]
    line_gain: dict[str, float]
    flux: float
    time: float


@dataclass(frozen=True)
class CommandHistory:
    """What the emulated instruments were told to put out (tests and benchmarks only).

    The recorders are the instruments' own (live, bounded, with running
    maxima since the last :meth:`VirtualLab.clear_command_history`); see
    :mod:`labnr.sim.instruments.history`.

    Attributes
    ----------
    sources : dict of str to SourceRecorder
        Per CW source: every level (dBm and peak volts) and output switch.
    awg : AWGRecorder or None
        Per AWG channel: peak ``|sample|`` and amplitude of every waveform held.
    flux : LevelRecorder or None
        The flux source's output breakpoints and programs on the virtual clock.
    """

    sources: dict[str, SourceRecorder]
    awg: AWGRecorder | None
    flux: LevelRecorder | None


def sgs_amplitude(power_dbm: float) -> float:
    """Peak voltage of a CW tone of ``power_dbm`` into 50 ohm."""
    return float(np.sqrt(2 * 50.0 * 10 ** ((power_dbm - 30.0) / 10)))


class VirtualLab:
    """A simulated device with its emulated instruments.

    Parameters
    ----------
    device : str, Path or DeviceSpec
        A preset name (``"jpc_circulator"``, ``"em_circulator"``), a device
        YAML file, or a parsed spec.
    seed : int
        Seed of every random process (drifts, noise, leakage phases).
    realtime : bool
        Sleep for every instrument operation's duration instead of only
        advancing the virtual clock.
    """

    def __init__(
        self,
        device: str | Path | DeviceSpec = "jpc_circulator",
        seed: int = 0,
        realtime: bool = False,
    ) -> None:
        self.spec = device if isinstance(device, DeviceSpec) else load_device(device)
        self.clock = VirtualClock(realtime=realtime)
        self.rng = np.random.default_rng(seed)
        self.device = SimDevice(self.spec, self.clock, self.rng)
        self._lock = threading.RLock()
        inst = self.spec.instruments
        self.vna = PNAXEmulator(inst.vna, backend=self)
        self.awg = AWG5208Emulator(inst.awg, backend=self) if inst.awg else None
        self.sources = {n: SGS100AEmulator(n, backend=self) for n in inst.sources}
        self.flux_source = GS200Emulator(inst.flux, backend=self) if inst.flux else None
        self.instruments: dict[str, SCPIInstrument] = {inst.vna: self.vna, **self.sources}
        if self.awg is not None:
            self.instruments[inst.awg] = self.awg  # type: ignore[index]
        if self.flux_source is not None:
            self.instruments[inst.flux] = self.flux_source  # type: ignore[index]
        self.servers: dict[str, SCPIServer] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self, ports: dict[str, int] | None = None) -> VirtualLab:
        """Serve every instrument on loopback.

        Parameters
        ----------
        ports : dict, optional
            Fixed TCP port per instrument name (e.g. to match a checked-in
            station file); instruments not named get an ephemeral port.
        """
        ports = dict(ports or {})
        unknown = sorted(set(ports) - set(self.instruments))
        if unknown:
            raise ValueError(
                f"VirtualLab.start: ports names unknown instruments {unknown}; "
                f"the lab serves {sorted(self.instruments)}"
            )
        try:
            for name, instrument in self.instruments.items():
                if name not in self.servers:
                    server = SCPIServer(instrument, port=ports.get(name, 0))
                    server.start()
                    self.servers[name] = server
        except OSError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every server (idempotent)."""
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def __enter__(self) -> VirtualLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def addresses(self) -> dict[str, str]:
        """VISA resource string of each served instrument."""
        return {name: server.address for name, server in self.servers.items()}

    # ------------------------------------------------------------------ LabBackend
    def vna_acquire(self, request: VNARequest) -> dict[tuple[int, int], np.ndarray]:
        """Measure for the VNA emulator and advance the clock by the sweep time."""
        with self._lock:
            data = self.device.measure(request, self.source_tones(), self.flux_current())
            self.clock.advance(request.sweep_time)
            return data

    def notify(self, instrument: str) -> None:
        """An instrument changed a device-visible setting (tones are read fresh)."""

    # ------------------------------------------------------------------ instruments -> device
    def flux_current(self) -> float:
        """Current the flux source drives through the coil, A."""
        return 0.0 if self.flux_source is None else float(self.flux_source.current)

    def source_tones(self) -> list[SourceTone]:
        """Every pump tone at the instruments' outputs, tagged with its line."""
        tones: list[SourceTone] = []
        for name, line in self.spec.pump_lines.items():
            src = line.source
            if "sgs" in src:
                st = self.sources[src["sgs"]].state
                if st.output:
                    tones.append(
                        SourceTone(
                            name, st.frequency, sgs_amplitude(st.power), float(np.deg2rad(st.phase))
                        )
                    )
            elif "awg" in src and self.awg is not None:
                tones += [
                    SourceTone(name, t.frequency_hz, t.amplitude_v, t.phase_rad)
                    for t in self.awg.tones(src["awg"])
                    if t.frequency_hz > 0
                ]
            elif "iq" in src:
                tones += self._iq_tones(name, line)
        return tones

    def _iq_tones(self, name: str, line: PumpLineSpec) -> list[SourceTone]:
        r"""RF tones of an IQ mixer: baseband I and Q shifted to the LO frequency.

        The mixer forms :math:`RF = \mathrm{Re}[(I + i w Q)\, e^{i\omega_{LO} t}]` where
        :math:`w = (1+\epsilon) e^{i\psi}` is its (unknown) gain and quadrature
        error on the Q branch. A baseband tone with complex amplitudes
        :math:`a = A e^{i\varphi}/2` in I and Q contributes
        :math:`c_+ = a_I + i w a_Q` at :math:`f_{LO} + f` and
        :math:`c_- = a_I^* + i w a_Q^*` at :math:`f_{LO} - f`: an uncorrected
        single-sideband tone leaks an image at the other sideband.
        """
        if self.awg is None:
            return []
        iq = line.source["iq"]
        lo = self.sources[iq["lo"]].state
        if not lo.output:
            return []
        gain = MIXER_GAIN * 10 ** (min(0.0, lo.power - MIXER_LO_MIN_DBM) / 20)
        imbalance = (1 + line.iq_gain_imbalance) * np.exp(1j * line.iq_phase_imbalance)
        comps: dict[float, list[complex]] = {}
        for ch, weight in ((iq["i"], 1.0), (iq["q"], 1j * imbalance)):
            for t in self.awg.tones(ch):
                if t.frequency_hz <= 0:
                    continue
                a = 0.5 * t.amplitude_v * np.exp(1j * t.phase_rad)
                key = round(t.frequency_hz, 3)
                plus, minus = comps.setdefault(key, [0j, 0j])
                comps[key] = [plus + weight * a, minus + weight * np.conj(a)]
        lo_phase = float(np.deg2rad(lo.phase))
        out = []
        for f, (plus, minus) in comps.items():
            for sign, c in ((1, plus), (-1, minus)):
                amp = abs(c) * gain
                if amp > 1e-9 and lo.frequency + sign * f > 0:
                    out.append(
                        SourceTone(
                            name, lo.frequency + sign * f, amp, float(np.angle(c)) + sign * lo_phase
                        )
                    )
        return out

    # ------------------------------------------------------------------ truth (tests only)
    def truth(self) -> Truth:
        """The device's true present state. For tests and benchmarks only."""
        with self._lock:
            config = self.device.configure(self.source_tones(), self.flux_current(), noisy=False)
            return Truth(
                self.spec,
                config,
                dict(self.device.line_phase),
                dict(self.device.line_gain),
                config.flux,
                self.clock.now,
            )

    def command_history(self) -> CommandHistory:
        """Every level the instruments applied (tests and benchmarks only).

        The flux source's program is first run up to the present virtual time,
        so its trajectory is complete.
        """
        with self._lock:
            flux = None
            if self.flux_source is not None:
                with self.flux_source.lock:
                    self.flux_source.advance_state()
                flux = self.flux_source.applied
            return CommandHistory(
                {name: src.applied for name, src in self.sources.items()},
                None if self.awg is None else self.awg.applied,
                flux,
            )

    def clear_command_history(self) -> None:
        """Forget recorded commands and maxima (the flux keeps its present level)."""
        history = self.command_history()
        for rec in (*history.sources.values(), history.awg, history.flux):
            if rec is not None:
                rec.clear()

    def jump_flux(self, delta: float) -> None:
        """Inject a sudden flux jump of ``delta`` Phi0 (tests and benchmarks)."""
        with self._lock:
            self.device.jump_flux(delta)

    # ------------------------------------------------------------------ station file
    def station_config(self) -> dict[str, Any]:
        """A QCoDeS station configuration pointing at the served instruments."""
        kinds = {
            self.spec.instruments.vna: "vna",
            self.spec.instruments.awg: "awg",
            self.spec.instruments.flux: "flux",
            **{n: "sgs" for n in self.sources},
        }
        instruments = {}
        for name, address in self.addresses.items():
            instruments[name] = {
                "type": STATION_TYPES[kinds[name]],
                "address": address,
                "init": {"terminator": "\n", **STATION_INIT.get(kinds[name], {})},
            }
        return {"instruments": instruments}

    def write_station_yaml(self, path: str | Path) -> Path:
        """Write :meth:`station_config` as a QCoDeS station YAML file."""
        p = Path(path)
        p.write_text(
            "# QCoDeS station for a running labnr virtual lab "
            f"(device {self.spec.name!r}); written by labnr.sim.\n"
            + yaml.safe_dump(self.station_config(), sort_keys=False)
        )
        return p
