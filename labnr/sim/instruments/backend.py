"""The contract between the emulated instruments and the simulated device.

An emulator (PNA-X, AWG5208, SGS100A, GS200) parses SCPI and keeps its own
instrument state (a dataclass in its ``state`` attribute). It knows nothing of
the device. When the physics matters it asks a :class:`LabBackend`:

- the VNA emulator builds a :class:`VNARequest` when a sweep is triggered and
  calls :meth:`LabBackend.vna_acquire`, which returns the complex ratios the
  VNA would report (line gains, delays, leakage and noise included);
- every emulator calls :meth:`LabBackend.notify` after a state change that the
  device can see (a pump output switched on, a flux current changed, a
  waveform uploaded), so the lab can invalidate cached physics;
- every emulator advances :attr:`LabBackend.clock` by the time its operation
  takes on the real instrument.

:class:`labnr.sim.lab.VirtualLab` implements this protocol; tests of the
emulators alone use a small fake backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from labnr.sim.clock import VirtualClock


@dataclass(frozen=True)
class VNARequest:
    """One triggered VNA sweep, as the device side needs to see it.

    Attributes
    ----------
    instrument : str
        Name of the VNA emulator that asks.
    stimulus_frequencies : numpy.ndarray
        Source frequencies at the driven (input) port, Hz, shape (npoints,).
    receiver_frequencies : numpy.ndarray
        Frequencies at which the receiver of the output port measures, Hz,
        shape (npoints,). Equal to ``stimulus_frequencies`` unless frequency
        offset mode is on.
    parameters : tuple of (int, int)
        The S-parameters to measure, as (out_port, in_port), 1-based VNA ports.
    port_power_dbm : dict of int to float
        Source power per port, dBm.
    if_bandwidth : float
        IF bandwidth, Hz.
    averages : int
        Number of sweeps averaged (1 when averaging is off).
    sweep_time : float
        Duration of the whole acquisition in s, computed by the emulator
        (points / IFBW x averages + overhead). The backend advances its clock
        by this much.
    """

    instrument: str
    stimulus_frequencies: np.ndarray
    receiver_frequencies: np.ndarray
    parameters: tuple[tuple[int, int], ...]
    port_power_dbm: dict[int, float] = field(default_factory=dict)
    if_bandwidth: float = 1e3
    averages: int = 1
    sweep_time: float = 0.0


class LabBackend(Protocol):
    """What an emulated instrument may ask of the simulated lab."""

    clock: VirtualClock

    def vna_acquire(self, request: VNARequest) -> dict[tuple[int, int], np.ndarray]:
        """Return the measured complex ratio per requested (out_port, in_port).

        Each value has shape ``(npoints,)``. The backend advances the clock
        by ``request.sweep_time``.
        """
        ...

    def notify(self, instrument: str) -> None:
        """Tell the lab that the named instrument changed a device-visible state."""
        ...
