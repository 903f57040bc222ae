"""Hardware limits of the Keysight PNA / PNA-X models: one table for driver and config.

:class:`PNALimits` holds the constructor limits of
:class:`~labnr.drivers.keysight_pna.KeysightPNAXBase`; :data:`PNA_MODEL_LIMITS`
is the data-sheet table that the model classes (``KeysightN5242B``, ...) are built
from and that :mod:`labnr.config` checks configs against, so the two never differ.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["PNA_IF_BANDWIDTHS", "PNA_MODEL_LIMITS", "PNALimits", "limit_arguments"]

#: IF bandwidths of the PNA family, Hz (PNA help, "IF Bandwidth"; 1 Hz to 15 MHz).
PNA_IF_BANDWIDTHS: tuple[float, ...] = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700,
    1e3, 1.5e3, 2e3, 3e3, 5e3, 7e3, 10e3, 15e3, 20e3, 30e3, 50e3, 70e3,
    100e3, 150e3, 200e3, 280e3, 360e3, 600e3, 1e6, 1.5e6, 2e6, 3e6, 5e6,
    7e6, 10e6, 15e6,
)  # fmt: skip


@dataclass(frozen=True)
class PNALimits:
    """Hardware limits of one analyzer model (the constructor arguments of the base class).

    Attributes
    ----------
    min_frequency, max_frequency : float
        Stimulus and receiver frequency range, Hz.
    n_ports : int
        Number of test ports.
    min_power, max_power : float
        Settable source power per port, dBm.
    max_points : int
        Maximum number of points per sweep.
    if_bandwidths : tuple of float
        Valid IF bandwidths, Hz.
    max_averages : int
        Maximum averaging factor.
    """

    min_frequency: float
    max_frequency: float
    n_ports: int
    min_power: float
    max_power: float
    max_points: int = 100_001
    if_bandwidths: tuple[float, ...] = PNA_IF_BANDWIDTHS
    max_averages: int = 65_536

    def __post_init__(self) -> None:
        if not 0 < self.min_frequency < self.max_frequency:
            raise ValueError(
                f"PNALimits: frequency range [{self.min_frequency!r}, {self.max_frequency!r}] Hz "
                "must satisfy 0 < min_frequency < max_frequency"
            )
        if self.n_ports < 1 or self.max_points < 1 or self.max_averages < 1:
            raise ValueError(
                f"PNALimits: n_ports={self.n_ports!r}, max_points={self.max_points!r} and "
                f"max_averages={self.max_averages!r} must all be >= 1"
            )
        if not self.min_power < self.max_power or not self.if_bandwidths:
            raise ValueError(
                f"PNALimits: power range [{self.min_power!r}, {self.max_power!r}] dBm must be "
                "increasing and if_bandwidths must not be empty"
            )


#: Data-sheet limits of the models with a thin subclass, by class name (the power
#: ranges assume the source attenuators). The classes take their limits from here
#: (``model_limits``) and labnr.config checks configs against the same entries.
PNA_MODEL_LIMITS: dict[str, PNALimits] = {
    "KeysightN5242B": PNALimits(10e6, 26.5e9, 4, -90.0, 20.0),
    "KeysightN5222B": PNALimits(10e6, 26.5e9, 4, -95.0, 13.0),
}


def limit_arguments(limits: PNALimits) -> dict[str, Any]:
    """``limits`` as keyword arguments of :class:`~labnr.drivers.keysight_pna.KeysightPNAXBase`.

    Parameters
    ----------
    limits : PNALimits
        A model's limits, e.g. ``PNA_MODEL_LIMITS["KeysightN5242B"]``.

    Returns
    -------
    dict
        ``{"min_frequency": ..., "max_frequency": ..., ..., "max_averages": ...}``.
    """
    return {f.name: getattr(limits, f.name) for f in fields(limits)}
