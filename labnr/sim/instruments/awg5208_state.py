"""Instrument state and waveform demodulation of the AWG5208 emulator.

Independent of SCPI: :mod:`labnr.sim.instruments.awg5208` turns commands into
changes of these dataclasses, and the device side asks for the tones a channel
plays through :func:`demodulate`.

Limits follow Tektronix's own ``tm_devices`` AWG5200 driver and the AWG5200
specifications: sample rate 300 S/s to 2.5 GS/s (option 25), amplitude of the
DC High Bandwidth path 25 mVpp to 750 mVpp (1.5 Vpp with the DC amplifier
option), DC High Voltage path 10 mVpp to 5 Vpp, offset within +-2 V, waveform
record 1 to 16.2 MSa (standard memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AWGLimits:
    """Hardware limits of the emulated AWG5208.

    Attributes
    ----------
    n_channels : int
        Number of analog channels.
    sample_rate_min, sample_rate_max : float
        Sample-rate range, Sa/s.
    amplitude_min : float
        Minimum amplitude, Vpp.
    amplitude_max_dchb : float
        Maximum amplitude of the DC High Bandwidth path, Vpp (1.5 with the
        DC amplifier option, 0.75 without).
    amplitude_max_dchv : float
        Maximum amplitude of the DC High Voltage path, Vpp.
    offset_max : float
        Maximum magnitude of the offset, V.
    max_record_length : int
        Longest waveform, samples.
    """

    n_channels: int = 8
    sample_rate_min: float = 300.0
    sample_rate_max: float = 2.5e9
    amplitude_min: float = 0.025
    amplitude_max_dchb: float = 0.75
    amplitude_max_dchv: float = 5.0
    offset_max: float = 2.0
    max_record_length: int = 16_200_000


@dataclass(frozen=True)
class Tone:
    """A sinusoid at an AWG output, :math:`v(t) = A\\cos(2\\pi f t + \\varphi)`.

    Attributes
    ----------
    frequency_hz : float
        Frequency, Hz (0 for the DC component).
    amplitude_v : float
        Amplitude :math:`A` at the output, V (peak, not peak-to-peak).
    phase_rad : float
        Phase :math:`\\varphi` in rad relative to the start of the waveform record.
    """

    frequency_hz: float
    amplitude_v: float
    phase_rad: float


@dataclass
class Waveform:
    """One entry of the waveform list.

    Attributes
    ----------
    name : str
        Waveform name.
    samples : numpy.ndarray
        float32 samples; [-1, 1] maps to the channel's full scale.
    markers : numpy.ndarray or None
        uint8 marker bits per sample, if any were uploaded.
    """

    name: str
    samples: np.ndarray
    markers: np.ndarray | None = None


@dataclass
class AWGChannelState:
    """Settings of one analog channel.

    Attributes
    ----------
    number : int
        Channel number, 1-based.
    waveform : str or None
        Name of the assigned waveform (``SOURce:CASSet:WAVeform``).
    amplitude_vpp : float
        Amplitude, Vpp: sample value 1 gives ``offset + amplitude_vpp / 2``.
    offset_v : float
        DC offset, V.
    output_on : bool
        ``OUTPut<n>[:STATe]``.
    path : str
        Output path, "DCHB" or "DCHV".
    resolution : int
        DAC resolution in bits (stored only).
    """

    number: int
    waveform: str | None = None
    amplitude_vpp: float = 0.5
    offset_v: float = 0.0
    output_on: bool = False
    path: str = "DCHB"
    resolution: int = 16


@dataclass
class AWGState:
    """Whole-instrument state of the AWG5208 emulator.

    Attributes
    ----------
    sample_rate : float
        Sample rate, Sa/s.
    clock_source : str
        "INT", "EFIX", "EVAR" or "EXT" (stored only).
    waveforms : dict of str to Waveform
        The waveform list, in creation order.
    channels : dict of int to AWGChannelState
        Channels 1..8.
    running : bool
        ``AWGControl:RUN`` issued and not stopped.
    all_outputs_off : bool
        ``OUTPut:OFF``: overrides every channel's output state.
    mode : str
        "AWG" or "FGEN" (stored; only AWG mode plays waveforms).
    current_directory : str
        ``MMEMory:CDIRectory``.
    files : dict of str to bytes
        Files written with ``MMEMory:DATA`` (mass memory), by full path.
    """

    sample_rate: float = 2.5e9
    clock_source: str = "INT"
    waveforms: dict[str, Waveform] = field(default_factory=dict)
    channels: dict[int, AWGChannelState] = field(default_factory=dict)
    running: bool = False
    all_outputs_off: bool = False
    mode: str = "AWG"
    current_directory: str = "\\Users\\OEM\\Documents"
    files: dict[str, bytes] = field(default_factory=dict)

    def is_playing(self, channel: int) -> bool:
        """Whether a channel is putting its waveform out right now."""
        ch = self.channels[channel]
        return (
            self.running
            and self.mode == "AWG"
            and ch.output_on
            and not self.all_outputs_off
            and ch.waveform is not None
            and ch.waveform in self.waveforms
        )


def demodulate(
    samples: np.ndarray,
    sample_rate: float,
    amplitude_vpp: float,
    offset_v: float = 0.0,
    min_amplitude: float = 1e-6,
    max_tones: int | None = 32,
) -> list[Tone]:
    r"""Tones of a looped waveform record, from its spectrum.

    The AWG repeats the record of :math:`N` samples forever, so its output is
    periodic with period :math:`N/f_s` and contains only the frequencies
    :math:`k f_s / N`. The DFT :math:`X_k = \sum_n x_n e^{-2\pi i k n/N}` of the
    (clipped) record gives them exactly: amplitude
    :math:`A_k = 2|X_k|/N \cdot V_{pp}/2` (without the factor 2 for DC and
    Nyquist) and phase :math:`\varphi_k = \arg X_k`, in the convention
    :math:`v(t) = A\cos(2\pi f t + \varphi)` with :math:`t = 0` at the first
    sample. A tone that is not on this grid (not an integer number of cycles
    per record) is played with a jump at the loop boundary; the looped signal
    then really contains the neighbouring grid frequencies, and they are
    returned with their (leaky) amplitudes and phases, as a spectrum analyser
    would show them. The DC offset adds to the DC component.

    Parameters
    ----------
    samples : numpy.ndarray
        Record samples; values beyond [-1, 1] are clipped as by the DAC.
    sample_rate : float
        Sample rate, Sa/s.
    amplitude_vpp : float
        Channel amplitude, Vpp.
    offset_v : float
        Channel offset, V.
    min_amplitude : float
        Tones with a smaller amplitude (V) are dropped.
    max_tones : int or None
        Keep at most this many of the strongest tones (None keeps all).

    Returns
    -------
    list of Tone
        Sorted by decreasing amplitude.
    """
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    n = x.size
    if n == 0:
        return []
    spectrum = np.fft.rfft(x)
    scale = np.full(spectrum.size, 2.0 / n)
    scale[0] = 1.0 / n
    if n % 2 == 0:
        scale[-1] = 1.0 / n
    half_fs = 0.5 * amplitude_vpp
    phasors = spectrum * scale * half_fs
    phasors[0] += offset_v
    amplitudes = np.abs(phasors)
    keep = np.flatnonzero(amplitudes >= min_amplitude)
    order = keep[np.argsort(-amplitudes[keep], kind="stable")]
    if max_tones is not None:
        order = order[:max_tones]
    freqs = np.arange(spectrum.size) * (sample_rate / n)
    return [Tone(float(freqs[k]), float(amplitudes[k]), float(np.angle(phasors[k]))) for k in order]


def periodicity_error(samples: np.ndarray, amplitude_vpp: float) -> float:
    r"""Size of the jump at the loop boundary of a record, in volts at the output.

    A looped record is seamless when the step from its last sample to its first
    looks like the steps inside it. The second difference
    :math:`d_n = x_{n+1} - 2x_n + x_{n-1}` measures how a sample departs from
    the linear continuation of its two predecessors. This returns

    .. math:: \max\left(0,\; \max(|d_{N-1}|, |d_0|) - \max_{0<n<N-1} |d_n|
              - \max_{0<n<N-2} |d_{n+1} - d_n|\right) \cdot V_{pp}/2,

    where :math:`d_{N-1}` and :math:`d_0` wrap around the boundary: zero for a
    record holding an integer number of cycles of every tone, and about the
    size of the jump for one that does not. The last term is the largest
    change of the curvature between neighbouring samples: a seamless record's
    curvature at the boundary can exceed its interior maximum by that much
    (tones all at phase 0 or pi peak together at the first sample, so the
    boundary holds the record's largest :math:`|d_n|`), while a jump adds its
    full size.

    Parameters
    ----------
    samples : numpy.ndarray
        Record samples (clipped to [-1, 1]).
    amplitude_vpp : float
        Channel amplitude, Vpp.

    Returns
    -------
    float
        Excess boundary discontinuity, V.
    """
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    n = x.size
    if n < 3:
        return 0.0
    curvature = x[2:] - 2.0 * x[1:-1] + x[:-2]
    interior = np.abs(curvature).max()
    margin = np.abs(np.diff(curvature)).max() if curvature.size > 1 else 0.0
    seam_last = abs(x[0] - 2.0 * x[-1] + x[-2])
    seam_first = abs(x[1] - 2.0 * x[0] + x[-1])
    excess = max(seam_last, seam_first) - interior - margin
    return float(max(0.0, excess) * 0.5 * amplitude_vpp)
