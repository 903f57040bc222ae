"""Input checks shared by the model: clear errors, never a silent NaN."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def finite_real(value: Any, what: str, *, minimum: float | None = None) -> float:
    """Return ``value`` as a finite float or raise a ValueError that names it.

    Parameters
    ----------
    value : Any
        The number to check.
    what : str
        Where it came from, e.g. ``"Mode 'a' kappa_ext"``.
    minimum : float, optional
        Smallest allowed value (inclusive).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what}={value!r} is not allowed; it must be a real number")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{what}={value!r} is not allowed; it must be finite")
    if minimum is not None and x < minimum:
        raise ValueError(f"{what}={value!r} is not allowed; it must be >= {minimum:g}")
    return x


def finite_array(values: Any, what: str) -> np.ndarray:
    """Return ``values`` as a float ndarray, raising if any entry is not finite."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}={values!r} is not allowed; it must be real numbers") from exc
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].ravel()[:3]
        raise ValueError(f"{what} contains {bad.tolist()}; every value must be finite")
    return arr
