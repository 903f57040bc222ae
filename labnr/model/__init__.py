"""Coupled-mode input-output theory of parametrically driven mode networks.

Pure numpy/scipy; imports nothing else from labnr. All frequencies and rates
are ordinary frequencies in Hz (kappa is the FWHM, g is g/2pi), phases in rad.
S arrays are indexed ``[..., out, in]``.
"""

from labnr.model.directionality import (
    CouplingSolution,
    directionality_condition,
    isolation_db,
    solve_couplings,
)
from labnr.model.linear import response
from labnr.model.network import Coupling, Mode, Network, UnstableNetworkError
from labnr.model.noise import added_noise, output_noise
from labnr.model.presets import (
    circulator3,
    directional_amplifier,
    isolator_reservoir,
    optomechanical_circulator,
)

__all__ = [
    "Coupling",
    "CouplingSolution",
    "Mode",
    "Network",
    "UnstableNetworkError",
    "added_noise",
    "circulator3",
    "directional_amplifier",
    "directionality_condition",
    "isolation_db",
    "isolator_reservoir",
    "optomechanical_circulator",
    "output_noise",
    "response",
    "solve_couplings",
]
