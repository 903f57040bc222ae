r"""Pump calibration: coupling per volt, Stark shifts and the loop phase offset.

Both helpers are global fits of the coupled-mode model (:func:`fit_smatrix`)
in *pump mode*: every link driven by tone :math:`t` has

.. math::

    c_k = \eta_t A_{t,k}\, e^{i(\varphi_{t,k} + \theta_t)}, \qquad
    d_{m,k} = d_m + \sum_t \chi_{m,t} A_{t,k}^2 ,

with the tone amplitudes :math:`A_{t,k}` (V at the instrument) and phases
:math:`\varphi_{t,k}` of every measured point known from the dataset.

- :func:`calibrate_amplitude` — from an amplitude sweep of one tone: the
  coupling per volt :math:`\eta_t` (Hz/V) and the Stark coefficients
  :math:`\chi_{m,t}` (Hz/V²) of every mode, plus the linewidths.
- :func:`calibrate_loop_phase` — from a phase sweep of one tone with all the
  loop's tones on: the loop phase offset :math:`\Phi_0` (the signed sum of the
  line phases :math:`\theta_t` around the loop, see
  :mod:`labnr.fit.smatrix_params`), so that the synthetic flux is

  .. math:: \Phi = \sum_{t \in {\rm loop}} s_t \varphi_t + \Phi_0 ,

  and the phase of the swept tone that gives a target flux (:math:`\pi/2` for
  a circulator) with the other tones as measured.

Couplings per volt the user does not know (``eta = 0``) are found first from
the strongest point of the sweep: single-setting coupling-mode fits from four
coupling scales around the circulator condition :math:`\sqrt{\kappa_a\kappa_b}/2`,
the best of which gives :math:`\eta \approx g/A`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from labnr.fit.result import FitError
from labnr.fit.smatrix import SMatrixFitResult, fit_smatrix
from labnr.fit.smatrix_data import SMatrixData
from labnr.fit.smatrix_params import FitLink, FitMode

__all__ = ["calibrate_amplitude", "calibrate_loop_phase", "guess_etas"]

#: Coupling scales (relative to sqrt(ka kb)/2) tried when eta is unknown.
SCALES = (0.3, 0.6, 1.0, 1.6)


def _data(data: SMatrixData | xr.Dataset) -> SMatrixData:
    return SMatrixData.from_dataset(data) if isinstance(data, xr.Dataset) else data


def _active(data: SMatrixData, links: Sequence[FitLink], tone: str) -> list[FitLink]:
    """Pump-mode links whose tone is on somewhere; the swept tone's link must be there."""
    for lk in links:
        if lk.tone is None:
            raise ValueError(
                f"link {lk.a}-{lk.b} has no tone: pump calibration needs pump-mode links "
                "(FitLink(a, b, tone=...)); see guesses_from_config(pump_mode=True)"
            )
        if lk.tone not in data.amplitudes:
            raise ValueError(f"the data give no amplitude/phase for tone {lk.tone!r}")
    if tone not in data.amplitudes:
        raise ValueError(f"tone {tone!r} is not in the data (tones: {sorted(data.amplitudes)})")
    active = [lk for lk in links if np.any(data.amplitudes[lk.tone] != 0)]
    if not any(lk.tone == tone for lk in active):
        raise ValueError(f"no link of tone {tone!r} is on at any point of the data")
    return active


def guess_etas(
    data: SMatrixData,
    modes: Sequence[FitMode],
    links: Sequence[FitLink],
    setting: int | None = None,
    sigma: Any = None,
    **fit_kws: Any,
) -> dict[str, float]:
    r"""Couplings per volt from one setting, for links whose ``eta`` guess is 0.

    Fits the setting (default: the one with the largest total amplitude) in
    coupling mode from each scale of :data:`SCALES` times
    :math:`\sqrt{\kappa_a\kappa_b}/2` and keeps the lowest χ².

    ``fit_kws`` go to :func:`fit_smatrix` (e.g. ``convention``).

    Returns
    -------
    dict
        ``{tone: eta}``, Hz/V, for every link (given guesses are kept).
    """
    out = {lk.tone: lk.eta for lk in links if lk.tone is not None}
    unknown = [lk for lk in links if lk.eta <= 0]
    if not unknown:
        return out  # type: ignore[return-value]
    if setting is None:
        total = sum(np.abs(data.amplitudes[lk.tone]) for lk in links)  # type: ignore[index]
        setting = int(np.argmax(total))
    one = data.select([setting])
    width = {m.name: m.kappa_ext + m.kappa_int for m in modes}
    amp = {lk.tone: float(one.amplitudes[lk.tone][0]) for lk in links}  # type: ignore[index]
    best = None
    for scale in SCALES:
        trial = [
            FitLink(
                lk.a,
                lk.b,
                g=lk.eta * amp[lk.tone]
                if lk.eta > 0  # type: ignore[index]
                else scale * np.sqrt(width[lk.a] * width[lk.b]) / 2,
            )
            for lk in links
        ]
        kws = {"max_nfev": 60, **fit_kws, "raise_on_failure": False}
        r = fit_smatrix(one, modes, trial, sigma=_select_sigma(sigma, setting), **kws)
        if best is None or r.chi2 < best.chi2:
            best = r
    assert best is not None
    for lk in unknown:
        a = amp[lk.tone]  # type: ignore[index]
        if a > 0:
            out[lk.tone] = best.values[f"g_{lk.a}_{lk.b}"] / a  # type: ignore[index]
    return out  # type: ignore[return-value]


def _select_sigma(sigma: Any, setting: int) -> Any:
    if sigma is None or np.ndim(sigma) < 4:
        return sigma
    return np.asarray(sigma)[[setting]] if np.shape(sigma)[0] > 1 else sigma


def _with_etas(links: Sequence[FitLink], etas: dict[str, float]) -> list[FitLink]:
    return [
        FitLink(
            lk.a,
            lk.b,
            tone=lk.tone,
            eta=etas.get(lk.tone, lk.eta),  # type: ignore[arg-type]
            line_phase=lk.line_phase,
        )
        for lk in links
    ]


def calibrate_amplitude(
    data: SMatrixData | xr.Dataset,
    tone: str,
    modes: Sequence[FitMode],
    links: Sequence[FitLink],
    *,
    stark: bool = True,
    sigma: Any = None,
    raise_on_failure: bool = True,
    **fit_kws: Any,
) -> SMatrixFitResult:
    r"""Coupling per volt and Stark coefficients from an amplitude sweep of ``tone``.

    Parameters
    ----------
    data : SMatrixData or xarray.Dataset
        S-matrices vs the tone's amplitude (``labnr.measure.sweep_pump_amplitude``);
        other tones may be on at fixed settings.
    tone : str
        The swept tone.
    modes : sequence of FitMode
        Mode guesses (any ``stark`` entries are replaced).
    links : sequence of FitLink
        Pump-mode links (``tone`` set); links of tones that are off everywhere
        are left out. ``eta = 0`` means unknown (found by :func:`guess_etas`).
    stark : bool
        Fit :math:`\chi_{m,t}` of every mode for the swept tone.
    sigma : float or array, optional
        Noise per quadrature (default: estimated, see :func:`fit_smatrix`).
    raise_on_failure : bool
        Raise :class:`~labnr.fit.result.FitError` if the fit fails.
    **fit_kws
        Passed to :func:`fit_smatrix`.

    Returns
    -------
    SMatrixFitResult
        With ``eta_<tone>`` (Hz/V), ``<mode>_stark_<tone>`` (Hz/V²), the
        linewidths, detunings at zero amplitude of the swept tone, and
        ``info["calibration"] = "amplitude"``.
    """
    d = _data(data)
    amps = d.amplitudes.get(tone)
    if amps is None or np.unique(amps).size < 2:
        raise ValueError(
            f"tone {tone!r}: an amplitude calibration needs at least two different amplitudes "
            f"(got {None if amps is None else np.unique(amps).tolist()})"
        )
    active = _active(d, links, tone)
    active = _with_etas(active, guess_etas(d, modes, active, sigma=sigma, **fit_kws))
    fm = [
        FitMode(m.name, m.kappa_ext, m.kappa_int, m.detuning, {tone: 0.0} if stark else None)
        for m in modes
    ]
    result = fit_smatrix(d, fm, active, sigma=sigma, raise_on_failure=False, **fit_kws)
    result.info["calibration"] = "amplitude"
    result.info["tone"] = tone
    return _finish(result, raise_on_failure)


def _finish(result: SMatrixFitResult, raise_on_failure: bool) -> SMatrixFitResult:
    if raise_on_failure and not result.success:
        raise FitError(f"pump calibration fit failed: {result.message}", result=result)
    return result


def calibrate_loop_phase(
    data: SMatrixData | xr.Dataset,
    tone: str,
    modes: Sequence[FitMode],
    links: Sequence[FitLink],
    *,
    target: float = np.pi / 2,
    sigma: Any = None,
    raise_on_failure: bool = True,
    **fit_kws: Any,
) -> SMatrixFitResult:
    r"""Loop phase offset from a phase sweep of ``tone`` with the loop's tones on.

    Parameters
    ----------
    data : SMatrixData or xarray.Dataset
        S-matrices vs the tone's phase (``labnr.measure.sweep_pump_phase``).
    tone : str
        The swept tone; its link must lie on a loop.
    modes, links : sequences
        Mode guesses and pump-mode links (``eta = 0``: unknown).
    target : float
        Loop flux wanted, rad (π/2: circulation a -> b -> c for the triangle).
    sigma, raise_on_failure, **fit_kws
        As :func:`calibrate_amplitude`.

    Returns
    -------
    SMatrixFitResult
        With ``eta_<t>``, ``theta_<t>`` and ``loop_<chord>`` of the fit and two
        derived values: ``loop_offset`` (:math:`\Phi_0`, rad) and
        ``<tone>_phase_for_target`` (the tone phase giving flux ``target``
        with the other tones at their phases of the first point, rad).
    """
    d = _data(data)
    active = _active(d, links, tone)
    active = _with_etas(active, guess_etas(d, modes, active, setting=0, sigma=sigma, **fit_kws))
    result = fit_smatrix(d, modes, active, sigma=sigma, raise_on_failure=False, **fit_kws)
    par = result.model.par
    j_tone = next(j for j, lk in enumerate(par.links) if lk.tone == tone)
    loop = next(
        ((c, cyc) for c, cyc in par.loops.items() if any(j == j_tone for j, _ in cyc)), None
    )
    if loop is None:
        raise ValueError(f"the link of tone {tone!r} closes no loop with the other active links")
    chord, cycle = loop
    offset, err = result.values[f"loop_{chord}"], result.errors[f"loop_{chord}"]
    others = sum(s * d.phases[par.links[j].tone][0] for j, s in cycle if j != j_tone)  # type: ignore[index]
    sign = next(s for j, s in cycle if j == j_tone)
    best = float(np.angle(np.exp(1j * (target - offset - others) * sign)))
    result.add_derived("loop_offset", offset, err, "loop flux = sum of s_t * tone phase + offset")
    result.add_derived(
        f"{tone}_phase_for_target", best, err, f"tone phase giving loop flux {target:.4g} rad"
    )
    result.info.update(
        calibration="loop_phase",
        tone=tone,
        target=float(target),
        loop=[(par.links[j].name, s) for j, s in cycle],
    )
    return _finish(result, raise_on_failure)
