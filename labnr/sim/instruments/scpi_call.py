"""SCPI header patterns, the call object handlers receive, registration decorators.

Part of the SCPI framework; import these names from
:mod:`labnr.sim.instruments.scpi`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from labnr.sim.instruments.scpi_syntax import (
    Argument,
    SCPIError,
    format_number,
    mnemonic_forms,
    parse_bool,
    parse_choice,
    parse_int,
    parse_number,
)

if TYPE_CHECKING:
    from labnr.sim.instruments.scpi import SCPIInstrument

__all__ = [
    "HeaderPattern",
    "SCPICall",
    "encode_floats",
    "inject_nan",
    "scpi_query",
    "scpi_set",
]

_NODE_RE = re.compile(r"\[:?([^\]]+)\]|:?([^:\[\]]+)")


@dataclass(frozen=True)
class _Node:
    forms: frozenset[str]
    suffix: bool
    optional: bool

    def match(self, token: str) -> int | None:
        """Return the numeric suffix (1 when absent) if ``token`` matches, else None."""
        if token in self.forms:
            return 1
        if self.suffix:
            split = re.fullmatch(r"(.*?)(\d+)", token)
            if split is not None and split.group(1) in self.forms:
                return int(split.group(2))
        return None


class HeaderPattern:
    """A compiled SCPI header pattern such as ``"[SOURce#]:FREQuency[:CW|FIXed]"``.

    Parameters
    ----------
    pattern : str
        The pattern; a trailing ``?`` is ignored (queries and settings share
        a pattern).

    Attributes
    ----------
    pattern : str
        The pattern as given.
    key : tuple
        Canonical form; two patterns with the same key are the same command.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        nodes: list[_Node] = []
        for match in _NODE_RE.finditer(pattern.strip().rstrip("?")):
            optional = match.group(1) is not None
            alternatives = (match.group(1) or match.group(2)).split("|")
            forms: set[str] = set()
            suffix = False
            for alt in alternatives:
                alt = alt.strip().lstrip(":")
                if alt.endswith("#"):
                    suffix = True
                    alt = alt[:-1]
                forms.update(mnemonic_forms(alt))
            nodes.append(_Node(frozenset(forms), suffix, optional))
        if not nodes:
            raise ValueError(f"HeaderPattern: empty SCPI pattern {pattern!r}")
        self._nodes = tuple(nodes)
        self.key = tuple((tuple(sorted(n.forms)), n.suffix, n.optional) for n in nodes)

    def match(self, tokens: Sequence[str]) -> tuple[int, ...] | None:
        """Match upper-case header tokens.

        Parameters
        ----------
        tokens : sequence of str
            Header split at ``:``, upper case, e.g. ``("SOUR2", "FREQ")``.

        Returns
        -------
        tuple of int or None
            One numeric suffix per ``#`` in the pattern (1 when omitted), or
            None if the header does not match.
        """
        return self._match(0, tokens, 0, ())

    def _match(
        self, ni: int, tokens: Sequence[str], ti: int, suffixes: tuple[int, ...]
    ) -> tuple[int, ...] | None:
        if ni == len(self._nodes):
            return suffixes if ti == len(tokens) else None
        node = self._nodes[ni]
        if ti < len(tokens):
            value = node.match(tokens[ti])
            if value is not None:
                found = self._match(
                    ni + 1, tokens, ti + 1, suffixes + ((value,) if node.suffix else ())
                )
                if found is not None:
                    return found
        if node.optional:
            return self._match(ni + 1, tokens, ti, suffixes + ((1,) if node.suffix else ()))
        return None

    def __repr__(self) -> str:
        return f"HeaderPattern({self.pattern!r})"


@dataclass
class SCPICall:
    """One command or query being executed, as a handler sees it.

    Attributes
    ----------
    instrument : SCPIInstrument
        The instrument executing the call.
    header : str
        Resolved header, upper case, as received (e.g. ``"SOUR2:FREQ"``).
    suffixes : tuple of int
        Numeric suffixes, one per ``#`` of the pattern, 1 when omitted.
    args : tuple of Argument
        Arguments: ``str`` tokens, :class:`QuotedString`, ``bytes`` blocks.
    query : bool
        True for a query.
    """

    instrument: SCPIInstrument
    header: str
    suffixes: tuple[int, ...]
    args: tuple[Argument, ...]
    query: bool

    @property
    def nargs(self) -> int:
        """Number of arguments."""
        return len(self.args)

    def suffix(self, index: int = 0) -> int:
        """The ``index``-th numeric header suffix."""
        return self.suffixes[index]

    def arg(self, index: int = 0) -> Argument:
        """The ``index``-th argument; raises -109 "Missing parameter" if absent."""
        if index >= len(self.args):
            raise SCPIError(-109, f"{self.header}: argument {index + 1} missing")
        return self.args[index]

    def has_arg(self, index: int = 0) -> bool:
        """True if argument ``index`` was sent."""
        return index < len(self.args)

    def expect_args(self, minimum: int, maximum: int | None = None) -> None:
        """Raise -109/-108 unless ``minimum <= nargs <= maximum`` (default: minimum)."""
        maximum = minimum if maximum is None else maximum
        if self.nargs < minimum:
            raise SCPIError(-109, f"{self.header}: {minimum} argument(s) needed, {self.nargs} sent")
        if self.nargs > maximum:
            raise SCPIError(
                -108, f"{self.header}: at most {maximum} argument(s), {self.nargs} sent"
            )

    def number(
        self,
        index: int = 0,
        *,
        low: float | None = None,
        high: float | None = None,
        default: float | None = None,
        name: str = "value",
        unit: str = "",
    ) -> float:
        """Argument as a float, with ``MIN``/``MAX``/``DEF`` and range check.

        Parameters
        ----------
        index : int
            Argument index.
        low, high : float, optional
            Allowed closed interval; outside it raises -222 "Data out of
            range" naming the value and the interval. Also the values of the
            ``MIN``/``MAX`` keywords.
        default : float, optional
            Value of ``DEF``.
        name, unit : str
            Used in error messages.
        """
        what = f"{self.header} {name}"
        value = parse_number(self.arg(index), what, minimum=low, maximum=high, default=default)
        if (low is not None and value < low) or (high is not None and value > high):
            raise SCPIError(
                -222,
                f"{what} {format_number(value)}{unit} outside [{format_number(low)}, "
                f"{format_number(high)}]{unit}",
            )
        return value

    def integer(
        self,
        index: int = 0,
        *,
        low: int | None = None,
        high: int | None = None,
        name: str = "value",
    ) -> int:
        """Argument as an int, with ``MIN``/``MAX`` and range check (-222)."""
        arg = self.arg(index)
        what = f"{self.header} {name}"
        keyword = str(arg).strip().upper() if not isinstance(arg, bytes) else ""
        if keyword in ("MIN", "MINIMUM", "MAX", "MAXIMUM"):
            value = int(parse_number(arg, what, minimum=low, maximum=high))
        else:
            value = parse_int(arg, what)
        if (low is not None and value < low) or (high is not None and value > high):
            raise SCPIError(-222, f"{what} {value} outside [{low}, {high}]")
        return value

    def boolean(self, index: int = 0, *, name: str = "state") -> bool:
        """Argument as a boolean (``ON|OFF|1|0``)."""
        return parse_bool(self.arg(index), f"{self.header} {name}")

    def choice(self, index: int, choices: Sequence[str], *, name: str = "value") -> str:
        """Argument matched against SCPI mnemonics; returns the matching entry."""
        return parse_choice(self.arg(index), choices, f"{self.header} {name}")

    def string(self, index: int = 0) -> str:
        """Argument as text (quoted or not); -104 for a block."""
        arg = self.arg(index)
        if isinstance(arg, bytes):
            raise SCPIError(-104, f"{self.header}: argument {index + 1} is a block, expected text")
        return str(arg)

    def block(self, index: int = 0) -> bytes:
        """Argument as the payload of a binary block; -104 otherwise."""
        arg = self.arg(index)
        if not isinstance(arg, bytes):
            raise SCPIError(-104, f"{self.header}: argument {index + 1} must be a #-block")
        return arg


def _decorate(pattern: str, kind: str, nargs: int | tuple[int, int] | None) -> Callable:
    def decorator(method: Callable) -> Callable:
        registry = method.__dict__.setdefault("_scpi_commands", [])
        registry.append((pattern, kind, nargs))
        return method

    return decorator


def scpi_set(pattern: str, nargs: int | tuple[int, int] | None = None) -> Callable:
    """Decorate an emulator method ``(self, call) -> None`` as the setter of ``pattern``.

    Parameters
    ----------
    pattern : str
        SCPI header pattern, e.g. ``"[SOURce#]:FREQuency[:CW]"``.
    nargs : int or (int, int), optional
        Exact or (min, max) number of arguments; checked before the handler
        runs (-109/-108). None: the handler checks.
    """
    return _decorate(pattern, "set", nargs)


def scpi_query(pattern: str) -> Callable:
    """Decorate an emulator method ``(self, call) -> reply`` as the query of ``pattern``."""
    return _decorate(pattern, "query", None)


def encode_floats(values: np.ndarray | Sequence[float], dtype: str = "<f8") -> bytes:
    """Pack numbers as raw bytes for a binary block reply.

    Parameters
    ----------
    values : array_like
        Real values (interleave complex data as re, im first).
    dtype : str
        numpy dtype with byte order, e.g. ``"<f8"`` (REAL,64 swapped),
        ``">f4"`` (REAL,32 normal).
    """
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def inject_nan(values: np.ndarray) -> np.ndarray:
    """Return a copy of ``values`` with every other element set to NaN (the NaN fault)."""
    out = np.array(values, dtype=np.result_type(values, np.float64), copy=True)
    out.reshape(-1)[::2] = np.nan
    return out
