r"""A port mode's reflection with one conversion tone to a mode without a port (a sideband window).

A red-sideband (conversion) tone at :math:`f_p` couples a port mode
:math:`a` (measured in reflection) to a mode :math:`m` that no VNA port sees —
typically a mechanical mode far below the microwave band. In the frame of the
probe, :math:`m` sits at :math:`\delta_m = f_m - (f_a - f_p)` and the reflection
of :math:`a` shows a window (optomechanically induced transparency/absorption)

.. math::

    r(\omega) = B\left[1 - \frac{\kappa_{\rm ext}}
        {\kappa/2 - i\omega + |g|^2/(\gamma_m/2 - i(\omega - \delta_m))}\right]

(the e^{-iωt} convention of :mod:`labnr.model`, linewidths as FWHM in Hz),
of width :math:`\gamma_m + 4|g|^2/\kappa` and depth set by the cooperativity
:math:`C = 4|g|^2/(\kappa\gamma_m)`. The model is evaluated with
:class:`labnr.model.Network` (not this closed form), so it agrees with
everything else labnr predicts.

:func:`fit_sideband_window` fits traces taken at several tone amplitudes
:math:`A_k` together: the coupling per volt :math:`\eta` (:math:`g_k = \eta A_k`),
:math:`\delta_m`, :math:`\gamma_m` and one complex background :math:`B`; the
port mode's linewidths are fixed (from its pumps-off fit).
"""

from __future__ import annotations

from collections.abc import Sequence

import lmfit
import numpy as np

from labnr.fit.result import FitError, FitResult, Trace, estimate_noise
from labnr.model import Mode, Network

__all__ = ["fit_sideband_window", "sideband_reflection"]


def sideband_reflection(offset: np.ndarray, kappa_ext: float, kappa_int: float, g: float,
                        delta_m: float, gamma_m: float) -> np.ndarray:  # fmt: skip
    """Reflection of the port mode (model convention, no line factor) at probe ``offset`` (Hz)."""
    net = Network([Mode("a", kappa_ext, kappa_int, 0.0), Mode("m", 0.0, gamma_m, delta_m)])
    if g:
        net.beamsplitter("a", "m", g, 0.0)
    S = net.scattering(np.asarray(offset, dtype=float), nambu=False)
    return np.asarray(S)[..., 0, 0]


def _guess(offset: np.ndarray, y: np.ndarray, kappa_ext: float, kappa_int: float,
           amplitude: float) -> dict[str, float]:  # fmt: skip
    """Window centre, width and depth of the strongest trace → δ, γ, η and B."""
    kappa = kappa_ext + kappa_int
    edge = max(3, len(offset) // 20)
    bg = np.median(np.r_[y[:edge].real, y[-edge:].real]) + 1j * np.median(
        np.r_[y[:edge].imag, y[-edge:].imag]
    )
    r0 = complex(sideband_reflection(np.array([0.0]), kappa_ext, kappa_int, 0.0, 0.0, 1.0)[0])
    B = bg / r0
    dev = np.abs(y - bg)
    k = int(np.argmax(dev))
    delta = float(offset[k])
    half = dev >= dev[k] / 2
    # contiguous run of points above half maximum around the peak
    lo = k
    while lo > 0 and half[lo - 1]:
        lo -= 1
    hi = k
    while hi < len(offset) - 1 and half[hi + 1]:
        hi += 1
    step = float(np.median(np.diff(offset)))
    width = max(float(offset[hi] - offset[lo]) + step, 2 * step)
    # depth: n_c = 1 - 2 ke / (k (1 + C)) at the window centre
    n_c = (y[k] / B).real
    C = 2 * kappa_ext / (kappa * max(1 - n_c, 1e-3)) - 1
    C = float(np.clip(C, 0.05, 1e3))
    gamma = width / (1 + C)
    g = np.sqrt(C * kappa * gamma / 4)
    return {"eta": g / max(amplitude, 1e-12), "delta_m": delta, "gamma_m": gamma,
            "B_re": float(B.real), "B_im": float(B.imag)}  # fmt: skip


def fit_sideband_window(
    offset: np.ndarray,
    traces: np.ndarray,
    amplitudes: Sequence[float],
    kappa_ext: float,
    kappa_int: float,
    *,
    run_id: int | str | None = None,
    raise_on_failure: bool = True,
) -> FitResult:
    """Fit the sideband window of a port mode's reflection at several tone amplitudes.

    Parameters
    ----------
    offset : ndarray
        Probe offsets from the port mode's frame (its fitted frequency), Hz, (N,).
    traces : ndarray of complex
        Reflections, (K, N), one per amplitude, in the model's phasor convention.
    amplitudes : sequence of float
        The tone's amplitude at each trace, V (K,); at least one non-zero.
    kappa_ext, kappa_int : float
        The port mode's linewidths (FWHM, Hz), from its pumps-off fit; fixed.
    run_id : int or str, optional
        Dataset the traces came from.
    raise_on_failure : bool
        Raise :class:`FitError` if the fit fails or the window is not resolved.

    Returns
    -------
    FitResult
        Values ``eta`` (Hz/V), ``delta_m`` (Hz, the unseen mode's offset in the
        probe frame), ``gamma_m`` (Hz), ``B_re``, ``B_im`` (complex background).
    """
    offset = np.asarray(offset, dtype=float)
    y = np.atleast_2d(np.asarray(traces, dtype=complex))
    amps = np.asarray(amplitudes, dtype=float)
    if y.shape != (len(amps), len(offset)):
        raise ValueError(
            f"traces have shape {y.shape}; expected (amplitudes, offsets) = "
            f"({len(amps)}, {len(offset)})"
        )
    if not np.any(amps > 0):
        raise ValueError(f"amplitudes {amps.tolist()} are all zero: no window to fit")
    if not np.all(np.isfinite(y)):
        raise FitError("sideband window: the traces contain non-finite values")
    sigma = max(float(estimate_noise(y, axis=-1)), 1e-15)
    strongest = int(np.argmax(amps))
    g0 = _guess(offset, y[strongest], kappa_ext, kappa_int, float(amps[strongest]))
    span = float(offset[-1] - offset[0])
    step = float(np.median(np.diff(offset)))

    def residual(p: lmfit.Parameters) -> np.ndarray:
        v = p.valuesdict()
        B = v["B_re"] + 1j * v["B_im"]
        out = []
        for A, yk in zip(amps, y, strict=True):
            m = B * sideband_reflection(offset, kappa_ext, kappa_int, v["eta"] * A,
                                        v["delta_m"], v["gamma_m"])  # fmt: skip
            d = (yk - m) / sigma
            out.append(np.r_[d.real, d.imag])
        return np.concatenate(out)

    best = None
    for scale in (1.0, 0.5, 2.0):
        p = lmfit.Parameters()
        p.add("eta", value=g0["eta"] * np.sqrt(scale), min=0.0)
        p.add("delta_m", value=g0["delta_m"], min=offset[0] - span, max=offset[-1] + span)
        p.add("gamma_m", value=max(g0["gamma_m"] * scale, step / 4), min=1e-3)
        p.add("B_re", value=g0["B_re"])
        p.add("B_im", value=g0["B_im"])
        res = lmfit.minimize(residual, p, method="leastsq")
        if best is None or res.chisqr < best.chisqr:
            best = res
    assert best is not None
    v = best.params.valuesdict()
    B = v["B_re"] + 1j * v["B_im"]
    fits = [B * sideband_reflection(offset, kappa_ext, kappa_int, v["eta"] * A, v["delta_m"],
                                    v["gamma_m"]) for A in amps]  # fmt: skip
    traces_ = [Trace(f"S_a_a @ amplitude={A:.4g} V", offset, yk, fk, sigma)
               for A, yk, fk in zip(amps, y, fits, strict=True)]  # fmt: skip
    failures = []
    g_max = v["eta"] * float(amps.max())
    width = v["gamma_m"] + 4 * g_max**2 / (kappa_ext + kappa_int)
    depth = float(np.max(np.abs(fits[strongest] - B * sideband_reflection(
        offset, kappa_ext, kappa_int, 0.0, v["delta_m"], v["gamma_m"]))))  # fmt: skip
    if depth < 5 * sigma:
        failures.append(
            f"no sideband window resolved: its depth {depth:.3g} is below 5 sigma "
            f"(sigma {sigma:.3g}); is the tone's frequency within the window of the "
            "unseen mode, and its amplitude on?"
        )
    if not offset[0] <= v["delta_m"] <= offset[-1]:
        failures.append(
            f"the window centre {v['delta_m']:.1f} Hz lies outside the measured band "
            f"[{offset[0]:.1f}, {offset[-1]:.1f}] Hz: widen the span or correct the "
            "expected frequency of the unseen mode"
        )
    if width < 2 * step:
        failures.append(
            f"the window ({width:.3g} Hz wide) is narrower than two frequency steps "
            f"({step:.3g} Hz): use more points or a narrower span"
        )
    result = FitResult(best, traces_, model_name="sideband_window", run_id=run_id,
                       failures=failures,
                       info={"kappa_ext": kappa_ext, "kappa_int": kappa_int,
                             "amplitudes": amps.tolist()})  # fmt: skip
    if raise_on_failure and not result.success:
        raise FitError(f"sideband window fit failed: {result.message}", result)
    return result
