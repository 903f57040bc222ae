r"""Starting values of an S-matrix fit from a labnr config (what the user typed).

The config's ``modes`` give each mode's expected frequency and linewidth and
its ``pumps.tones`` which pairs of modes are linked. A conversion tone between
modes :math:`x, y` becomes the link ``FitLink(lower, higher)`` (lower
frequency first), so that the tone's phase enters the coupling as
:math:`+\varphi_t` (the convention of a frequency-converting pump,
:math:`g\,e^{i\varphi_t} a_{\rm lo}^\dagger a_{\rm hi} + {\rm h.c.}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from labnr.fit.smatrix_params import FitLink, FitMode

__all__ = ["guesses_from_config"]


def _as_dict(config: Any) -> dict[str, Any]:
    if hasattr(config, "model_dump"):
        return config.model_dump()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a labnr Config or its dict; got {type(config).__name__}")
    return dict(config)


def guesses_from_config(
    config: Any,
    band_centres: Mapping[str, float] | None = None,
    *,
    pump_mode: bool = False,
    couplings: Mapping[str, float] | None = None,
    etas: Mapping[str, float] | None = None,
    tones: list[str] | None = None,
    kappa_int_fraction: float = 0.02,
) -> tuple[list[FitMode], list[FitLink]]:
    r"""Modes and links with the config's expectations as starting values.

    Parameters
    ----------
    config : labnr.config.Config or dict
        The experiment config (a run's ``attrs["config"]`` works).
    band_centres : mapping, optional
        ``{mode: Hz}`` of the data; detunings start at ``frequency - centre``
        (default: 0, the band centres are the config's frequencies).
    pump_mode : bool
        Links in pump mode (fit :math:`\eta_t, \theta_t` with known tone
        amplitudes and phases) instead of coupling mode.
    couplings : mapping, optional
        ``{tone: g}`` coupling guesses, Hz (coupling mode). Default: the
        circulator condition :math:`\sqrt{\kappa_x\kappa_y}/2`.
    etas : mapping, optional
        ``{tone: eta}`` guesses, Hz/V (pump mode). Default 0 (unknown).
    tones : list of str, optional
        Only these tones' links (default: every conversion tone).
    kappa_int_fraction : float
        Starting :math:`\kappa_{\rm int}` as a fraction of the linewidth.

    Returns
    -------
    modes : list of FitMode
    links : list of FitLink
    """
    cfg = _as_dict(config)
    modes_cfg = cfg.get("modes") or {}
    freqs = {n: float(m["frequency"]) for n, m in modes_cfg.items()}
    modes = []
    for name, m in modes_cfg.items():
        width = m.get("linewidth")
        if width is None:
            raise ValueError(
                f"config modes.{name}.linewidth is not set: the S-matrix fit needs a "
                "linewidth guess for every mode"
            )
        centre = (band_centres or {}).get(name, freqs[name])
        kint = kappa_int_fraction * float(width)
        modes.append(FitMode(name, float(width) - kint, kint, freqs[name] - float(centre)))
    width = {fm.name: fm.kappa_ext + fm.kappa_int for fm in modes}
    links = []
    for tone, t in ((cfg.get("pumps") or {}).get("tones") or {}).items():
        if tones is not None and tone not in tones:
            continue
        if t.get("kind", "conversion") != "conversion":
            raise NotImplementedError(
                f"tone {tone!r} is a {t.get('kind')!r} (two-mode squeezing) tone; the S-matrix "
                "fit supports conversion links only"
            )
        x, y = t["modes"]
        lo, hi = (x, y) if freqs[x] <= freqs[y] else (y, x)
        if pump_mode:
            links.append(FitLink(lo, hi, tone=tone, eta=float((etas or {}).get(tone, 0.0))))
        else:
            g = (couplings or {}).get(tone, np.sqrt(width[lo] * width[hi]) / 2)
            links.append(FitLink(lo, hi, g=float(g)))
    return modes, links
