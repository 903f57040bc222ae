"""Checks of the Keysight PNA-X driver: the analyzer's error queue and method arguments.

Argument checks run before anything is sent and raise ``ValueError``/``TypeError``
naming the instrument, the argument, the value and what is allowed; the error
queue is drained after configuration steps and raises :class:`PNAError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from .keysight_pna_channel import FrequencyOffset, PNAError
from .keysight_pna_params import PNALimits, describe_instrument, error_code

__all__ = ["PNAValidationMixin"]

_MAX_ERRORS = 100  # bound on one drain of the error queue


class PNAValidationMixin:
    """Error-queue and argument checks of :class:`~labnr.drivers.keysight_pna.KeysightPNAXBase`."""

    limits: PNALimits
    options: tuple[str, ...]
    fom_available: bool
    if_bandwidth: Any
    averaging: Any
    averages: Any
    ports: Any
    _prepared: dict[int, Any]
    ask_raw: Any

    def check_errors(self, context: str = "a command", first_reply: str | None = None) -> None:
        """Drain the analyzer's error queue; raise :class:`PNAError` if it held errors.

        Parameters
        ----------
        context : str
            What was just done, for the message.
        first_reply : str, optional
            A ``SYST:ERR?`` reply already read (e.g. as part of a trigger message).

        Raises
        ------
        PNAError
            With every error text, oldest first. The driver's channel cache is
            dropped, since the analyzer's state is then uncertain.
        """
        reply = first_reply if first_reply is not None else self.ask_raw("SYST:ERR?")
        errors: list[str] = []
        while error_code(reply) != 0 and len(errors) < _MAX_ERRORS:
            errors.append(reply.strip())
            reply = self.ask_raw("SYST:ERR?")
        if errors:
            self._prepared.clear()
            raise PNAError(describe_instrument(self), context, errors)

    def _fail(
        self,
        what: str,
        value: object,
        allowed: str,
        exc: type[Exception] = ValueError,
        unit: str = "",
    ) -> NoReturn:
        shown = f"{value!r} {unit}" if unit else repr(value)
        raise exc(f"{describe_instrument(self)}: {what} = {shown} is not allowed; {allowed}")

    def _check_number(self, what: str, value: object, low: float, high: float, unit: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            expected = f"expected a number in [{low:.10g}, {high:.10g}] {unit}"
            self._fail(what, value, expected, TypeError, unit)
        number = float(value)  # type: ignore[arg-type]
        if not low <= number <= high:
            self._fail(what, value, f"allowed range [{low:.10g}, {high:.10g}] {unit}", unit=unit)
        return number

    def _check_int(self, what: str, value: object, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            self._fail(what, value, f"expected an integer in [{low}, {high}]", TypeError)
        if not low <= int(value) <= high:  # type: ignore[call-overload]
            self._fail(what, value, f"allowed range [{low}, {high}]")
        return int(value)  # type: ignore[call-overload]

    def _check_params(self, params: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
        n = self.limits.n_ports
        checked = []
        for pair in params:
            if not (isinstance(pair, Sequence) and len(pair) == 2):
                self._fail("S-parameter", pair, "expected (out_port, in_port)", TypeError)
            out_port = self._check_int("S-parameter output port", pair[0], 1, n)
            in_port = self._check_int("S-parameter input port", pair[1], 1, n)
            checked.append((out_port, in_port))
        if not checked or len(set(checked)) != len(checked):
            self._fail("params", list(params), "expected a non-empty list without repeats")
        return tuple(checked)

    def _check_frequency(self, what: str, value: object) -> float:
        lim = self.limits
        return self._check_number(what, value, lim.min_frequency, lim.max_frequency, "Hz")

    def _check_offset(
        self, stimulus: Sequence[float], offset: float, multiplier: float, divisor: float
    ) -> FrequencyOffset | None:
        offset = self._check_number("offset", offset, -1e12, 1e12, "Hz")
        multiplier = self._check_number("multiplier", multiplier, -1e6, 1e6, "")
        divisor = self._check_number("divisor", divisor, 1e-6, 1e6, "")
        if multiplier == 0:
            self._fail("multiplier", multiplier, "it must be non-zero")
        fom = FrequencyOffset(multiplier, divisor, offset)
        if fom.is_identity:
            return None
        if not self.fom_available:
            self._fail("offset", offset, f"frequency offset needs option 080 ({self.options})")
        for f in fom.receiver(np.asarray(stimulus, dtype=float)):
            coupling = f"stimulus * {multiplier:g} / {divisor:g} + {offset:.10g} Hz"
            self._check_frequency(f"receiver frequency ({coupling})", float(f))
        return fom

    def _inherited(
        self, in_ports: set[int], if_bandwidth: float | None, power: float | None
    ) -> tuple[float, tuple[tuple[int, float], ...], int]:
        """IF bandwidth, port powers and averages: given, or the sweep channel's."""
        lim = self.limits
        if if_bandwidth is not None:  # explicit arguments first: nothing is sent before
            self.if_bandwidth.validate(if_bandwidth)
        if power is not None:
            power = self._check_number("power", power, lim.min_power, lim.max_power, "dBm")
        ifbw = float(self.if_bandwidth.cache.get() if if_bandwidth is None else if_bandwidth)
        powers = tuple(
            (p, float(self.ports[p - 1].power.cache.get() if power is None else power))
            for p in sorted(in_ports)
        )
        for p, level in powers:  # each port's stimulus limit (limit_power), before any write
            self.ports[p - 1].power.validate(level)
        averages = int(self.averages.cache.get()) if self.averaging.cache.get() else 1
        return ifbw, powers, averages
