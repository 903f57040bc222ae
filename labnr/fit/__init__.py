"""Fitting: lmfit models of resonances and coupled-mode S-matrices, pump calibration.

Every fit returns a :class:`~labnr.fit.result.FitResult` (values, 1σ errors,
reduced χ² of the complex residuals, success/message, warnings, ``to_dict()``,
``plot()``); a fit that fails raises :class:`~labnr.fit.result.FitError` by
default. ``labnr.fit`` never imports ``labnr.sim`` (truth firewall).
"""

from labnr.fit.result import (
    FitError,
    FitResult,
    ResidualStats,
    Trace,
    complex_residual_stats,
    estimate_noise,
)

__all__ = [
    "FitError",
    "FitResult",
    "ResidualStats",
    "Trace",
    "complex_residual_stats",
    "estimate_noise",
]

# ---------------------------------------------------------------- resonance (part 1)
from labnr.fit.circle import CircleGuess, fit_circle, guess_circle  # noqa: E402
from labnr.fit.resonance import (  # noqa: E402
    NotchModel,
    ReflectionModel,
    ResonanceModel,
    fit_resonance,
    notch,
    reflection,
)

__all__ += [
    "CircleGuess",
    "NotchModel",
    "ReflectionModel",
    "ResonanceModel",
    "fit_circle",
    "fit_resonance",
    "guess_circle",
    "notch",
    "reflection",
]

# ---------------------------------------------------------------- S-matrix and pump (parts 2-3)
# (added by the S-matrix / pump-calibration helper: smatrix.py, pump.py)
from labnr.fit.pump import (  # noqa: E402
    calibrate_amplitude,
    calibrate_loop_phase,
    guess_etas,
)
from labnr.fit.smatrix import (  # noqa: E402
    FitLink,
    FitMode,
    SMatrixData,
    SMatrixFitResult,
    fit_smatrix,
)
from labnr.fit.smatrix_setup import guesses_from_config  # noqa: E402

__all__ += [
    "FitLink",
    "FitMode",
    "SMatrixData",
    "SMatrixFitResult",
    "calibrate_amplitude",
    "calibrate_loop_phase",
    "fit_smatrix",
    "guess_etas",
    "guesses_from_config",
]

# ---------------------------------------------------------------- sideband window
from labnr.fit.sideband import fit_sideband_window, sideband_reflection  # noqa: E402

__all__ += ["fit_sideband_window", "sideband_reflection"]
