r"""Lab-frame physics of a pumped device: which tones couple which modes, and in which frames.

A pump tone at frequency :math:`f_t` couples modes :math:`i, j` when it matches
their difference (conversion, a beam splitter) or their sum (gain, two-mode
squeezing) to within ``coupling_window`` linewidths; the coupling is
:math:`g = \eta_{ij} A_t` with phase given by the tone's phase at the device.
The rotating frames follow from the tones: along a spanning tree of the
coupling graph, a conversion link sets :math:`F_j = F_i \pm f_t` and a gain
link :math:`F_j = f_t - F_i`; each mode's detuning is its (flux- and
Stark-shifted) frequency minus its frame. A link that closes a loop whose pump
frequencies do not add up carries the mismatch :math:`\Delta` as a phase that
advances as :math:`2\pi\Delta t`: the loop phase rotates in time, as in the
lab.

Phase conventions (lab frame, :math:`\theta_t(t) = 2\pi f_t t + \varphi_t`):
conversion with :math:`f_j > f_i` is :math:`g(e^{i\theta}a_i^\dagger a_j + h.c.)`,
i.e. ``beamsplitter(i, j, g, phase=+phi)`` in the frames; gain is
:math:`g(e^{-i\theta}a_i^\dagger a_j^\dagger + h.c.)`, i.e.
``squeezing(i, j, g, phase=-phi)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labnr.model import Mode, Network
from labnr.model.frames import PumpLink
from labnr.model.frames import assign_frames as model_frames
from labnr.sim.spec import DeviceSpec


@dataclass(frozen=True)
class DeviceTone:
    """A pump tone as it arrives at the device."""

    line: str
    frequency: float  # Hz
    amplitude: float  # V at the device
    phase: float  # rad at the device (instrument phase + line phase)


@dataclass
class ActiveLink:
    """A link that a tone makes resonant."""

    a: str  # lower-frequency mode for conversion
    b: str
    kind: str
    g: float
    phase: float
    tone: DeviceTone
    mismatch: float = 0.0  # Hz; non-zero only for loop-closing links


@dataclass
class Configuration:
    """Everything needed to compute the response at one instant.

    Attributes
    ----------
    frequencies : dict
        Mode frequencies (Hz) including flux tuning and Stark shifts.
    frames : dict
        Rotating-frame frequency of each mode, Hz.
    links : list of ActiveLink
        The resonant couplings.
    base_network : Network
        The model network with static phases; loop-closing links whose pump
        frequencies do not close advance as ``2 pi mismatch t`` from ``t = 0``
        of the virtual clock (see :meth:`network_at`).
    time : float
        Simulated time the configuration refers to, s.
    """

    frequencies: dict[str, float]
    frames: dict[str, float]
    links: list[ActiveLink]
    base_network: Network
    time: float
    flux: float = 0.0
    stark: dict[str, float] = field(default_factory=dict)

    @property
    def rotating(self) -> bool:
        """True if some loop's pump frequencies do not close (its phase rotates)."""
        return any(abs(link.mismatch) > 1e-3 for link in self.links)

    @property
    def network(self) -> Network:
        """The model network at :attr:`time`."""
        return self.network_at(self.time)

    def network_at(self, t: float) -> Network:
        """The network with loop-closing phases advanced to time ``t``."""
        if not self.rotating:
            return self.base_network
        net = self.base_network.copy()
        for link in self.links:
            if abs(link.mismatch) > 1e-3:
                # conversion: e^{i(phi + 2 pi D t)}; gain: e^{-i(phi' + 2 pi D t)} (D as stored)
                sign = 1.0 if link.kind == "conversion" else -1.0
                phase = link.phase + sign * 2 * np.pi * link.mismatch * t
                net.set_coupling(link.a, link.b, phase=float(np.angle(np.exp(1j * phase))))
        return net


def mode_frequency(spec_freq: float, tunable: bool, flux: float) -> float:
    """SQUID-tuned frequency :math:`f_{max}\\sqrt{|\\cos \\pi\\Phi/\\Phi_0|}` (or fixed)."""
    if not tunable:
        return spec_freq
    return spec_freq * float(np.sqrt(abs(np.cos(np.pi * flux))))


def resonant_links(
    spec: DeviceSpec, freqs: dict[str, float], tones: list[DeviceTone]
) -> list[ActiveLink]:
    """The links made resonant by the tones (closest tone per link wins)."""
    active = []
    for link in spec.links:
        fa, fb = freqs[link.a], freqs[link.b]
        ka = spec.modes[link.a].kappa_ext + spec.modes[link.a].kappa_int
        kb = spec.modes[link.b].kappa_ext + spec.modes[link.b].kappa_int
        window = spec.coupling_window * max(ka, kb)
        target = abs(fb - fa) if link.kind == "conversion" else fa + fb
        best = None
        for tone in tones:
            miss = abs(tone.frequency - target)
            if miss <= window and tone.amplitude > 0 and (best is None or miss < best[0]):
                best = (miss, tone)
        if best is None:
            continue
        tone = best[1]
        g = link.coupling_per_volt * tone.amplitude
        if link.kind == "conversion":
            lo, hi = (link.a, link.b) if fa <= fb else (link.b, link.a)
            active.append(ActiveLink(lo, hi, "conversion", g, tone.phase, tone))
        else:
            active.append(ActiveLink(link.a, link.b, "gain", g, -tone.phase, tone))
    return active


def assign_frames(
    spec: DeviceSpec, freqs: dict[str, float], links: list[ActiveLink]
) -> dict[str, float]:
    """Frame frequencies from a spanning tree of the active links; flags loop mismatches.

    Roots are port modes first (their frame is their own frequency), so the
    frame of a probed port sits on its resonance. The rules are
    :func:`labnr.model.frames.assign_frames`; each link's ``mismatch`` is set.
    """
    roots = sorted(spec.modes, key=lambda n: (spec.modes[n].vna_port is None, n))
    ordered = {n: freqs[n] for n in spec.modes}
    pumped = [PumpLink(lk.a, lk.b, lk.kind, lk.tone.frequency) for lk in links]
    frames, mismatches = model_frames(ordered, pumped, roots)
    for link, miss in zip(links, mismatches, strict=True):
        link.mismatch = miss
    return frames


def build_network(
    spec: DeviceSpec, freqs: dict[str, float], frames: dict[str, float], links: list[ActiveLink]
) -> Network:
    """The labnr.model network in the derived frames."""
    modes = [
        Mode(
            n,
            kappa_ext=spec.modes[n].kappa_ext,
            kappa_int=spec.modes[n].kappa_int,
            detuning=freqs[n] - frames[n],
        )
        for n in spec.modes
    ]
    net = Network(modes)
    for link in links:
        if link.kind == "conversion":
            net.beamsplitter(link.a, link.b, link.g, phase=link.phase)
        else:
            net.squeezing(link.a, link.b, link.g, phase=link.phase)
    return net
