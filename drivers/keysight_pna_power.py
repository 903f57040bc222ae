"""Stimulus power limits of the Keysight PNA-X driver's test ports.

Every port's ``power`` parameter is validated by a :class:`PortPowerRange`:
from the analyzer's smallest source power up to the port's *limit*, which
starts at the analyzer's largest power and can only be lowered
(:func:`limit_port_power`, or ``vna.limit_power(port, max_dbm)``), never
raised on a connected instrument. The driver validates every power it sends
against it — a ``port<n>.power`` set, an explicit ``power=`` of a sweep or
point read, and the port powers an acquisition inherits — so no write above
the limit reaches the analyzer, whoever asks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from qcodes import validators as vals

__all__ = ["PortPowerRange", "limit_port_power"]


class PortPowerRange(vals.Validator[float]):
    """``low <= value <= limit`` dBm, where the limit is a port's present power limit.

    Parameters
    ----------
    low, high : float
        The analyzer's source power range, dBm; the limit starts at ``high``.
    port : int
        Port number, for messages.
    """

    is_numeric = True

    def __init__(self, low: float, high: float, port: int) -> None:
        self.low = float(low)
        self.high = float(high)
        self.limit = float(high)
        self.port = port
        self._valid_values = (self.low,)

    def validate(self, value: float, context: str = "") -> None:
        """Raise unless ``value`` is a number from ``low`` to the port's limit, dBm."""
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise TypeError(f"{value!r} is not a number; {context}")
        if not self.low <= float(value) <= self.limit:  # also refuses NaN
            origin = (
                "the analyzer's source range" if self.limit == self.high
                else f"port {self.port}'s stimulus limit {self.limit:g} dBm (limit_power)"
            )  # fmt: skip
            raise ValueError(
                f"{value!r} dBm is outside [{self.low!r}, {self.limit!r}] dBm ({origin}); {context}"
            )

    def __repr__(self) -> str:
        return f"<PortPowerRange {self.low:g}..{self.limit:g} dBm>"


def limit_port_power(port: Any, max_dbm: float) -> float:
    """Lower a :class:`~labnr.drivers.keysight_pna_params.PNAPort`'s power limit to ``max_dbm``.

    The port's power is read back; if it is above the new limit it is
    lowered to the limit (a safe write: less stimulus) and read back again.

    Parameters
    ----------
    port : PNAPort
        The port.
    max_dbm : float
        New upper limit, dBm: within the analyzer's source range and not
        above the port's present limit.

    Returns
    -------
    float
        The port's source power after the call, dBm (read back).

    Raises
    ------
    ValueError
        If ``max_dbm`` is not a finite number in the analyzer's range, or
        above the present limit (limits are only ever lowered).
    """
    guard: PortPowerRange = port.power_range
    where = f"{port.full_name}: limit_power({max_dbm!r})"
    if isinstance(max_dbm, bool) or not isinstance(max_dbm, int | float | np.integer | np.floating):
        raise TypeError(f"{where}: the limit must be a number of dBm")
    if not (math.isfinite(max_dbm) and guard.low <= max_dbm <= guard.high):
        raise ValueError(
            f"{where}: the limit must lie in the analyzer's source range "
            f"[{guard.low:g}, {guard.high:g}] dBm"
        )
    if max_dbm > guard.limit:
        raise ValueError(
            f"{where}: limits are only lowered on a connected analyzer; the port's limit is "
            f"{guard.limit:g} dBm (reconnect to start from the analyzer's range)"
        )
    guard.limit = float(max_dbm)
    level = float(port.power())
    if not level <= guard.limit:  # NaN too
        port.log.warning("port power %g dBm is above the new limit; lowering it to %g dBm",
                         level, guard.limit)  # fmt: skip
        port.power(guard.limit)
        level = float(port.power())
    return level
