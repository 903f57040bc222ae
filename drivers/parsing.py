"""Parsers of instrument replies: numbers, lists, error-queue entries, binary blocks.

Every parser either returns the value the reply encodes or raises
:class:`ReplyError` (a ``ValueError``) whose message says what was being
parsed and shows the offending reply (``repr``, cut to 80 characters) —
nothing else escapes, whatever the reply (empty, truncated, non-numeric,
``nan``/``inf``, any unicode, megabytes long, not even a string). The
resilience layer (:mod:`labnr.drivers.resilience`) treats a ``ValueError`` from
a reply as a malformed reply and retries.

Formats (IEEE 488.2 / SCPI):

- numbers: ``NR1`` (``+42``), ``NR2`` (``-1.5``), ``NR3`` (``+5.31E+09``),
  ASCII digits only; SCPI's not-a-number and infinity codes (``9.91E37``,
  ``9.9E37``) and any non-finite value are refused, since they are not
  measurements;
- error-queue entries: ``<code>,"<text>"`` (``-113,"Undefined header"``,
  ``+0,"No error"``), the text optional;
- definite-length binary blocks: ``#<n><length><data>`` with ``n`` (1-9)
  length digits, optionally followed by a line feed; ``#0<data>``
  (indefinite length, ended by the line feed) too.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ReplyError",
    "is_no_error",
    "parse_bool",
    "parse_error",
    "parse_fields",
    "parse_ieee_block",
    "parse_int",
    "parse_number",
    "parse_numbers",
]

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
_INT = re.compile(r"[+-]?\d{1,30}", re.ASCII)
_ERROR = re.compile(r"([+-]?\d{1,10})\s*(?:,\s*(.*))?", re.ASCII | re.DOTALL)
_WHITESPACE = " \t\r\n"
#: SCPI's codes for 'not a number' (9.91E37) and infinity (9.9E37): not measurements
_SCPI_SPECIAL = 9.9e37
_SHOWN = 80


class ReplyError(ValueError):
    """An instrument reply that does not have the expected form.

    Attributes
    ----------
    what : str
        What was being parsed (the query, or the quantity).
    reply : object
        The offending reply, as received.
    """

    def __init__(self, what: str, problem: str, reply: Any) -> None:
        self.what, self.reply = what, reply
        super().__init__(f"{what}: {problem}; reply {shown(reply)}")


def shown(reply: Any, limit: int = _SHOWN) -> str:
    """``repr(reply)`` cut to ``limit`` characters (with its total length if cut)."""
    text = repr(reply)
    if len(text) <= limit:
        return text
    size = len(reply) if isinstance(reply, (str, bytes, bytearray)) else len(text)
    return f"{text[: limit - 3]}... ({size} characters)"


def _text(reply: Any, what: str) -> str:
    if isinstance(reply, (bytes, bytearray)):
        try:
            reply = bytes(reply).decode("ascii")
        except UnicodeDecodeError:
            raise ReplyError(what, "not ASCII text", reply) from None
    if not isinstance(reply, str):
        raise ReplyError(what, f"expected text, got {type(reply).__name__}", reply)
    return reply.strip(_WHITESPACE)


def parse_number(reply: Any, what: str = "numeric reply") -> float:
    """A finite real number (SCPI NR1/NR2/NR3).

    Parameters
    ----------
    reply : str
        The reply (surrounding whitespace and line ends are ignored).
    what : str
        What is parsed, for the message (e.g. ``"SENS1:BAND?"``).
    """
    text = _text(reply, what)
    if not _NUMBER.fullmatch(text):
        raise ReplyError(what, "not a number", reply)
    value = float(text)
    if not np.isfinite(value) or abs(value) >= _SCPI_SPECIAL:
        raise ReplyError(what, "not a finite measurement (overflow or SCPI NaN/INF code)", reply)
    return value


def parse_int(reply: Any, what: str = "integer reply") -> int:
    """An integer (SCPI NR1: optional sign, ASCII digits)."""
    text = _text(reply, what)
    if not _INT.fullmatch(text):
        raise ReplyError(what, "not an integer", reply)
    return int(text)


def parse_bool(reply: Any, what: str = "boolean reply") -> bool:
    """A SCPI boolean: ``1``/``+1``/``ON`` or ``0``/``+0``/``OFF`` (any case)."""
    text = _text(reply, what).upper()
    if text in ("1", "+1", "ON"):
        return True
    if text in ("0", "+0", "-0", "OFF"):
        return False
    raise ReplyError(what, "not a boolean (1/0/ON/OFF)", reply)


def parse_fields(reply: Any, count: int, what: str, sep: str = ";") -> list[str]:
    """Exactly ``count`` fields of a reply to ``count`` queries sent as one message."""
    text = _text(reply, what)
    fields = text.split(sep)
    if len(fields) != count:
        raise ReplyError(what, f"expected {count} fields separated by {sep!r}", reply)
    return [f.strip(_WHITESPACE) for f in fields]


def parse_numbers(reply: Any, what: str = "list reply", sep: str = ",") -> list[float]:
    """A comma-separated list of finite numbers (an empty reply is an empty list)."""
    text = _text(reply, what)
    if not text:
        return []
    out = []
    for k, field in enumerate(text.split(sep)):
        try:
            out.append(parse_number(field, what))
        except ReplyError:
            raise ReplyError(what, f"item {k} is not a number", reply) from None
    return out


def parse_error(reply: Any, what: str = "SYST:ERR? reply") -> tuple[int, str]:
    """(code, text) of an error-queue entry like ``-113,"Undefined header"``."""
    text = _text(reply, what)
    match = _ERROR.fullmatch(text)
    if match is None:
        raise ReplyError(what, "not an error-queue entry (<code>,\"<text>\")", reply)
    message = (match.group(2) or "").strip(_WHITESPACE)
    if len(message) >= 2 and message[0] == message[-1] == '"':
        message = message[1:-1]
    return int(match.group(1)), message


def is_no_error(reply: Any) -> bool:
    """Whether an error-queue entry says 'no error' (code 0); False for anything garbled."""
    try:
        return parse_error(reply)[0] == 0
    except ReplyError:
        return False


def parse_ieee_block(
    raw: Any, datatype: str = "<f8", what: str = "binary block"
) -> npt.NDArray[Any]:
    """The values of an IEEE 488.2 binary block (``#<n><length><data>``).

    Parameters
    ----------
    raw : bytes
        The whole reply: header, data, optionally one line feed (``\\n`` or
        ``\\r\\n``); nothing else may precede or follow.
    datatype : str
        NumPy dtype of the values, e.g. ``"<f8"`` for ``FORM REAL,64`` with
        ``FORM:BORD SWAP`` (little-endian), ``"<f4"`` for AWG waveforms.
    what : str
        What is parsed, for the message.

    Returns
    -------
    numpy.ndarray
        A writable copy of the values, shape (length / itemsize,).
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ReplyError(what, f"expected bytes, got {type(raw).__name__}", raw)
    data = bytes(raw)
    dtype = np.dtype(datatype)
    if data[:1] != b"#" or len(data) < 2:
        raise ReplyError(what, "a binary block starts with '#'", raw)
    ndigits = data[1] - ord("0")
    if ndigits == 0:  # indefinite length: everything up to the final line feed
        payload = data[2:].removesuffix(b"\n")
    elif 1 <= ndigits <= 9:
        digits = data[2 : 2 + ndigits]
        if len(digits) != ndigits or not digits.isdigit():
            raise ReplyError(what, f"header promises {ndigits} length digits", raw)
        length = int(digits)
        start = 2 + ndigits
        payload = data[start : start + length]
        if len(payload) != length:
            raise ReplyError(
                what, f"truncated: header says {length} bytes, {len(payload)} arrived", raw
            )
        if data[start + length :] not in (b"", b"\n", b"\r\n"):
            raise ReplyError(
                what, f"{len(data) - start - length} bytes after the {length}-byte block", raw
            )
    else:
        raise ReplyError(what, "the character after '#' must be a digit", raw)
    if len(payload) % dtype.itemsize:
        raise ReplyError(
            what, f"{len(payload)} bytes is not a whole number of {dtype.itemsize}-byte values",
            raw,
        )  # fmt: skip
    return np.frombuffer(payload, dtype=dtype).copy()
