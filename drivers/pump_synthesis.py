r"""Record planning and exact multi-tone synthesis for AWG pumps (pure numpy).

An AWG loops a record of :math:`L` samples at sample rate :math:`f_s`; its
output is periodic and holds only the frequencies :math:`j f_s / L`. A tone
that is not on this grid jumps at the loop boundary (a phase error every loop
and spectral leakage). The pump therefore fixes a tone grid :math:`\Delta f`
(``frequency_resolution``), plays :math:`n = f_s/\Delta f` samples per grid
period (choosing :math:`f_s = n\,\Delta f` at or below the AWG's maximum, so
the grid is exactly the requested one) and repeats that period :math:`m`
times when the AWG needs longer records (:math:`L = m n`). A tone at
:math:`k\,\Delta f` makes :math:`k m` whole cycles per record.

Samples are made by an inverse real FFT of the channel's spectrum, so every
record is periodic by construction (to float rounding):

.. math:: x_n = \frac{1}{V_{fs}}\Big(v_{dc} + \sum_t A_t \cos(2\pi k_t m\, n/L + \varphi_t)\Big),

with :math:`t = 0` at the first sample (the convention of the phase of a tone
on an AWG channel) and :math:`V_{fs} = V_{pp}/2` the channel's full scale.

IQ up-conversion (LO phase 0): a mixer puts out
:math:`\mathrm{Re}\,[(I + i w Q)\,e^{i\omega_{LO} t}]` with
:math:`w = (1+\epsilon)e^{i\psi}`: the Q branch has gain :math:`1+\epsilon` and
its LO a quadrature error :math:`\psi` (:math:`w = 1` for an ideal mixer).
Baseband tones :math:`I = A_I\cos(\omega t + \varphi_I)`,
:math:`Q = A_Q\cos(\omega t + \varphi_Q)`, with :math:`a = A e^{i\varphi}/2`,
give the RF phasors :math:`c_+ = a_I + i w a_Q` at :math:`f_{LO} + f` and
:math:`c_- = a_I^* + i w a_Q^*` at :math:`f_{LO} - f`. One tone of amplitude
:math:`A` and phase :math:`\varphi` on sideband :math:`s = \pm 1` with the
other sideband nulled needs (:func:`iq_components`)

.. math:: A_I = \frac{A}{\cos\psi},\quad \varphi_I = s(\varphi - \psi),\qquad
          A_Q = \frac{A}{(1+\epsilon)\cos\psi},\quad \varphi_Q = s(\varphi - \pi/2),

which gives :math:`|c_s| = A`, :math:`\arg c_s = \varphi` and :math:`c_{-s} = 0`
exactly when :math:`(\epsilon, \psi)` match the mixer; for an ideal mixer this is
the familiar :math:`I = A\cos(\omega t + \varphi)`, :math:`Q = \pm A\sin(\omega t + \varphi)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil, floor, gcd, pi, remainder

import numpy as np

__all__ = [
    "RecordPlan",
    "iq_components",
    "peak_bound",
    "plan_record",
    "synthesise",
    "wrap_phase",
]


def wrap_phase(phase: float) -> float:
    """Phase wrapped to (-pi, pi], rad (values already inside are returned unchanged)."""
    p = float(phase)
    if -pi < p <= pi:
        return p
    wrapped = remainder(p, 2 * pi)
    return pi if wrapped <= -pi else wrapped


@dataclass(frozen=True)
class RecordPlan:
    """Sample rate and record length that make every grid tone periodic.

    Attributes
    ----------
    sample_rate : float
        Sample rate, Sa/s (``samples_per_period * grid``).
    length : int
        Record length, samples (``periods * samples_per_period``).
    grid : float
        Tone frequency grid, Hz: playable tones are ``k * grid``.
    periods : int
        Grid periods (``1/grid``) per record.
    """

    sample_rate: float
    length: int
    grid: float
    periods: int

    @property
    def samples_per_period(self) -> int:
        """Samples per grid period ``1/grid``."""
        return self.length // self.periods

    @property
    def max_index(self) -> int:
        """Largest grid index ``k`` strictly below Nyquist (``2 k < samples_per_period``)."""
        return (self.samples_per_period - 1) // 2

    def cycles(self, index: int) -> int:
        """Whole cycles per record of the tone at ``index * grid``."""
        return int(index) * self.periods


def plan_record(
    resolution: float,
    sample_rate_max: float,
    sample_rate_min: float = 0.0,
    min_length: int = 1,
    max_length: int = 16_200_000,
    granularity: int = 1,
) -> RecordPlan:
    """Choose sample rate and record length for a tone grid of ``resolution``.

    Parameters
    ----------
    resolution : float
        Requested tone grid, Hz (the planned grid equals it exactly).
    sample_rate_max, sample_rate_min : float
        Sample-rate range, Sa/s; the highest rate ``n * resolution`` with an
        integer ``n`` is used.
    min_length, max_length : int
        Record-length range, samples; a record shorter than ``min_length``
        holds several grid periods.
    granularity : int
        Record lengths must be multiples of this.

    Returns
    -------
    RecordPlan

    Raises
    ------
    ValueError
        No sample rate and length satisfy the constraints (the message says why).
    """
    if not (np.isfinite(resolution) and resolution > 0):
        raise ValueError(f"frequency_resolution {resolution!r} Hz: must be a positive number")
    n = floor(sample_rate_max / resolution * (1 + 1e-12))
    if n < 3:
        raise ValueError(
            f"frequency_resolution {resolution:g} Hz: too coarse for the maximum sample rate "
            f"{sample_rate_max:g} Sa/s (at most {sample_rate_max / 3:g} Hz)"
        )
    if n * resolution < sample_rate_min:
        raise ValueError(
            f"frequency_resolution {resolution:g} Hz: needs sample rate {n * resolution:g} Sa/s, "
            f"below the minimum {sample_rate_min:g} Sa/s"
        )
    step = granularity // gcd(n, granularity)
    periods = step * ceil(ceil(min_length / n) / step)
    length = periods * n
    if length > max_length:
        raise ValueError(
            f"frequency_resolution {resolution:g} Hz: needs a record of {length} samples at "
            f"{n * resolution:g} Sa/s, longer than the maximum {max_length}; "
            f"use at least {sample_rate_max / max_length:g} Hz"
        )
    return RecordPlan(float(n * resolution), int(length), float(resolution), int(periods))


def iq_components(
    amplitude: float,
    phase: float,
    sideband: int,
    gain_imbalance: float = 0.0,
    phase_imbalance: float = 0.0,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Baseband (amplitude, phase) of I and Q for one single-sideband RF tone.

    See the module docstring for the mixer model and the formulas.

    Parameters
    ----------
    amplitude : float
        RF amplitude before the mixer's conversion gain, V (for an ideal mixer:
        the amplitude of each of I and Q).
    phase : float
        RF phase relative to the LO, rad.
    sideband : {+1, -1}
        Upper (``f_LO + f``) or lower (``f_LO - f``) sideband.
    gain_imbalance : float
        :math:`\\epsilon`: the mixer's Q branch has gain ``1 + eps`` relative to I.
    phase_imbalance : float
        :math:`\\psi`: quadrature error of the mixer's Q-branch LO, rad.

    Returns
    -------
    (a_i, phi_i), (a_q, phi_q) : tuple
        Amplitudes (V) and phases (rad, wrapped) to play on I and Q.
    """
    if sideband not in (1, -1):
        raise ValueError(f"sideband {sideband!r}: must be +1 or -1")
    a_i = amplitude / np.cos(phase_imbalance)
    a_q = a_i / (1.0 + gain_imbalance)
    phi_i = sideband * (phase - phase_imbalance)
    phi_q = sideband * (phase - np.pi / 2)
    return (float(a_i), wrap_phase(phi_i)), (float(a_q), wrap_phase(phi_q))


def peak_bound(components: Sequence[tuple[int, float, float]], offset: float = 0.0) -> float:
    """Largest possible |v| of a sum of tones plus offset, V (phase independent)."""
    return float(sum(abs(a) for _, a, _ in components) + abs(offset))


def synthesise(
    plan: RecordPlan,
    components: Sequence[tuple[int, float, float]],
    full_scale: float,
    offset: float = 0.0,
) -> np.ndarray:
    """One looped record of a sum of grid tones, as float32 samples in [-1, 1].

    Parameters
    ----------
    plan : RecordPlan
        Grid and record length.
    components : sequence of (index, amplitude, phase)
        Tone at ``index * plan.grid`` Hz with amplitude (V) and phase (rad),
        :math:`A\\cos(2\\pi f t + \\varphi)` from the first sample.
        ``1 <= index <= plan.max_index``.
    full_scale : float
        Channel full scale, V (``Vpp / 2``).
    offset : float
        DC added to the record, V.

    Returns
    -------
    numpy.ndarray
        float32 samples, length ``plan.length``.

    Raises
    ------
    ValueError
        An index off the playable grid, or a peak bound above full scale.
    """
    if peak_bound(components, offset) > full_scale * (1 + 1e-12):
        raise ValueError(
            f"tones of peak {peak_bound(components, offset):.6g} V exceed the full scale "
            f"{full_scale:.6g} V"
        )
    length = plan.length
    spectrum = np.zeros(length // 2 + 1, dtype=complex)
    spectrum[0] = offset * length
    for index, amplitude, phase in components:
        if not 1 <= index <= plan.max_index:
            raise ValueError(f"tone index {index} outside 1..{plan.max_index} of the grid")
        spectrum[plan.cycles(index)] += 0.5 * length * amplitude * np.exp(1j * phase)
    samples = np.fft.irfft(spectrum, n=length) / full_scale
    return np.clip(samples, -1.0, 1.0).astype(np.float32)
