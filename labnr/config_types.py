"""Quantity types of labnr configs: SI numbers or strings with a unit, counts, names.

``"5.31 GHz"``, ``"100 uA"``, ``"30 dB"`` or a bare SI number; the unit must
fit the key. Quantity text is matched only up to 64 characters (the pattern
would backtrack quadratically on a long digit string), numbers beyond
1e300 are refused rather than overflowing, phases are at most four turns,
counts also read ``1e3``-style text (YAML reads it as a string), and mode,
tone and mixer names are ASCII identifiers. Errors are ``what; fix: how``
(pydantic adds the key path).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

__all__ = [
    "MAX_PHASE", "AmpsPerSecond", "Amps", "Count", "DBm", "Decibels", "Hz", "PowerLimits",
    "Radians", "Seconds", "Volts", "identifiers", "quantity", "short",
]  # fmt: skip

_PREFIX = {"": 0, "p": -12, "n": -9, "u": -6, "µ": -6, "m": -3, "k": 3, "M": 6, "G": 9}
_QTY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµ°/]*)\s*$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Longest quantity text (the pattern is matched only on short strings).
_MAX_QTY_CHARS = 64
#: Largest |phase| of any phase in a config, rad (four turns: beyond is a slip, e.g. 1e30 deg).
MAX_PHASE = 8 * math.pi


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def quantity(unit: str, *, allow_prefix: bool = True, also: dict[str, float] | None = None):
    """A pydantic pre-validator turning ``"5 GHz"`` (or a bare number) into SI floats."""
    extra = also or {}

    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number; fix: write a number, e.g. 5.3e9")
        if isinstance(value, int) and abs(value) > 1e300:
            raise ValueError(f"{short(value)} is far too large; fix: write a number in SI units")
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise ValueError(f"{value} is not a finite number; fix: write a finite number")
            return float(value)
        if not isinstance(value, str):
            return value
        m = _QTY.match(value) if len(value) <= _MAX_QTY_CHARS else None
        if not m:
            example = f"'5.3 G{unit}' or 5.3e9" if allow_prefix else f"'1.5 {unit}' or 1.5"
            raise ValueError(f"{short(value)} is not a quantity; fix: write e.g. {example}")
        number, u = Decimal(m.group(1)), m.group(2)
        if number and abs(number.adjusted()) > 300:
            raise ValueError(f"{short(value)} is out of range; fix: write a number in SI units")
        if u == "" or u in extra or u == unit:
            return float(number) * extra.get(u, 1.0)
        if allow_prefix and u.endswith(unit) and u[: -len(unit)] in _PREFIX:
            return float(number.scaleb(_PREFIX[u[: -len(unit)]]))  # exact: 100 uA -> 1e-4
        prefixes = ("", "k", "M", "G", "m", "u", "n") if allow_prefix else ("",)
        allowed = sorted({f"{p}{unit}" for p in prefixes} | set(extra))
        raise ValueError(
            f"unit {u!r} does not fit here; fix: use one of {allowed} (or a bare SI number)"
        )

    return BeforeValidator(parse)


Hz = Annotated[float, quantity("Hz"), Field(allow_inf_nan=False)]
Amps = Annotated[float, quantity("A"), Field(allow_inf_nan=False)]
Volts = Annotated[float, quantity("V"), Field(allow_inf_nan=False)]
Seconds = Annotated[float, quantity("s"), Field(allow_inf_nan=False)]
AmpsPerSecond = Annotated[float, quantity("A/s"), Field(allow_inf_nan=False)]
Decibels = Annotated[float, quantity("dB", allow_prefix=False), Field(allow_inf_nan=False)]
DBm = Annotated[float, quantity("dBm", allow_prefix=False), Field(allow_inf_nan=False)]


def _phase_bound(value: float) -> float:
    if abs(value) > MAX_PHASE:
        raise ValueError(
            f"{math.degrees(value):.6g} deg ({value:.6g} rad) is beyond "
            f"+-{math.degrees(MAX_PHASE):g} deg (four turns); fix: give the phase within a turn, "
            "e.g. 90 deg or 1.57 rad"
        )
    return value


Radians = Annotated[
    float,
    quantity("rad", allow_prefix=False, also={"deg": math.pi / 180, "°": math.pi / 180}),
    Field(allow_inf_nan=False),
    AfterValidator(_phase_bound),
]


def _parse_count(value: Any) -> Any:
    """A whole number also from ``1e3``-style text (YAML reads ``1e3`` as a string)."""
    if isinstance(value, str) and len(value) <= _MAX_QTY_CHARS:
        try:
            number = Decimal(value.strip())
        except ArithmeticError:
            return value
        if number.is_finite() and number == number.to_integral_value() and number.adjusted() < 300:
            return int(number)
    return value


Count = Annotated[int, BeforeValidator(_parse_count)]
#: ``vna.max_power``: dBm for every port, or ``{port: dBm}``.
PowerLimits = Annotated[float | dict[int, float], BeforeValidator(lambda v: _parse_power_limits(v))]
_parse_dbm: Callable[[Any], Any] = quantity("dBm", allow_prefix=False).func  # type: ignore[assignment]


def _parse_power_limits(value: Any) -> Any:
    """``vna.max_power``: one number of dBm, or ``{port: dBm}``."""
    if isinstance(value, dict):
        out = {}
        for port, level in value.items():
            if isinstance(port, bool) or not isinstance(port, int):
                raise ValueError(
                    f"port {port!r} is not a port number; fix: key the limits by port, "
                    "e.g. {1: -10 dBm, 2: -20 dBm}"
                )
            out[port] = _parse_dbm(level)
            if not isinstance(out[port], float):
                raise ValueError(f"{short(level)} is not a power; fix: write e.g. -10 dBm")
        return out
    level = _parse_dbm(value)
    if not isinstance(level, float):
        raise ValueError(
            f"{short(value)} is not a power limit; fix: write e.g. -10 dBm, or one per port "
            "as {1: -10 dBm, 2: -20 dBm}"
        )
    return level


def identifiers(kind: str, names: dict[str, Any]) -> dict[str, Any]:
    """Refuse mode, tone and mixer names that are not identifiers (they name data and knobs)."""
    bad = [n for n in names if not _IDENT.fullmatch(n)]
    if not bad:
        return names
    lines = []
    for n in bad:
        what = "is empty" if not n else "is not an identifier"
        guess = re.sub(r"\W+", "_", n).strip("_")[:64] if n else ""
        guess = guess if _IDENT.fullmatch(guess) and guess not in names else f"{kind}{len(names)}"
        lines.append(
            f"{kind} name {short(n)} {what} (ASCII letters, digits and '_', not starting with a "
            f"digit, at most 64 characters); fix: rename it, e.g. {guess!r}"
        )
    raise ValueError("\n".join(lines))
