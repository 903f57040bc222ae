"""SCPI syntax: errors, parameter values, binary blocks, message lexer, header patterns.

This module is the instrument-independent half of the SCPI framework; the
emulator base class lives in :mod:`labnr.sim.instruments.scpi`, which
re-exports everything public defined here.

Syntax summary (IEEE 488.2 / SCPI-99, as far as the emulators need it)
----------------------------------------------------------------------
- A *program message* is one line: program message units joined by ``;``.
- A unit is a *header* (``SOUR:FREQ``, ``*IDN``), an optional ``?`` for a
  query, then optionally whitespace and comma-separated arguments.
- Arguments are unquoted tokens (numbers, mnemonics such as ``ON`` or
  ``MAX``, channel lists in parentheses), quoted strings (``"..."`` or
  ``'...'``, a doubled quote inside stands for one quote), or IEEE 488.2
  definite-length blocks ``#<n><len><bytes>`` whose payload may contain any
  byte, including ``;`` and newline. ``#0<bytes>`` (indefinite length) takes
  the rest of the message.
- A header pattern is written the SCPI way: ``"[SOURce#]:FREQuency[:CW|FIXed]"``.
  Upper-case letters form the short form, the whole word the long form,
  matching is case-insensitive and accepts only those two forms, ``#`` marks
  an optional numeric suffix (default 1), ``[...]`` an optional node and
  ``A|B`` alternatives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "SCPI_ERROR_MESSAGES",
    "Argument",
    "ProgramUnit",
    "QuotedString",
    "SCPIError",
    "decode_block",
    "encode_block",
    "format_number",
    "iter_program_units",
    "mnemonic_forms",
    "parse_bool",
    "parse_choice",
    "parse_int",
    "parse_number",
]

#: Standard SCPI-99 error texts by code.
SCPI_ERROR_MESSAGES: dict[int, str] = {
    0: "No error",
    -100: "Command error",
    -101: "Invalid character",
    -102: "Syntax error",
    -103: "Invalid separator",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -112: "Program mnemonic too long",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -120: "Numeric data error",
    -131: "Invalid suffix",
    -141: "Invalid character data",
    -151: "Invalid string data",
    -160: "Block data error",
    -161: "Invalid block data",
    -200: "Execution error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    -230: "Data corrupt or stale",
    -241: "Hardware missing",
    -256: "File name not found",
    -300: "Device-specific error",
    -310: "System error",
    -350: "Queue overflow",
    -400: "Query error",
    -410: "Query INTERRUPTED",
    -420: "Query UNTERMINATED",
}


class SCPIError(Exception):
    """An error the instrument reports through its error queue.

    Parameters
    ----------
    code : int
        SCPI error code (negative: standard, positive: device-specific).
    detail : str
        Optional context appended to the standard text after ``"; "``
        (what value, what was allowed, which command).
    message : str, optional
        Full message text; overrides the standard text for ``code``.

    Attributes
    ----------
    code : int
        The error code.
    message : str
        The text as it appears in ``SYSTem:ERRor?``, without quotes, e.g.
        ``"Data out of range; SOUR:FREQ 2e10 Hz outside [1e6, 1.275e10]"``.
    """

    def __init__(self, code: int, detail: str = "", *, message: str | None = None) -> None:
        base = message if message is not None else SCPI_ERROR_MESSAGES.get(code, "Error")
        self.code = int(code)
        self.message = f"{base}; {detail}" if detail else base
        super().__init__(f'{self.code},"{self.message}"')


class QuotedString(str):
    """A string argument that arrived quoted (``"abc"`` or ``'abc'``)."""


#: One parsed argument: an unquoted token (``str``), a quoted string
#: (:class:`QuotedString`) or the payload of a binary block (``bytes``).
Argument = str | bytes


@dataclass(frozen=True)
class ProgramUnit:
    """One command or query of a program message.

    Attributes
    ----------
    header : str
        Header as received, without the trailing ``?`` (e.g. ``":SOUR:FREQ"``,
        ``"*IDN"``).
    query : bool
        True if the header ended with ``?``.
    args : tuple of Argument
        Parsed arguments in order.
    """

    header: str
    query: bool
    args: tuple[Argument, ...]


# ----------------------------------------------------------------------------- blocks


def encode_block(payload: bytes) -> bytes:
    """Encode bytes as an IEEE 488.2 definite-length block ``#<n><len><payload>``.

    Parameters
    ----------
    payload : bytes
        Raw data.

    Returns
    -------
    bytes
        The block, without a message terminator.
    """
    length = str(len(payload)).encode("ascii")
    if len(length) > 9:
        raise SCPIError(-223, f"block of {len(payload)} bytes exceeds the 9-digit length field")
    return b"#" + str(len(length)).encode("ascii") + length + bytes(payload)


def decode_block(data: bytes, start: int = 0) -> tuple[bytes, int]:
    """Decode a definite-length block at ``data[start:]``.

    Parameters
    ----------
    data : bytes
        Buffer holding the block.
    start : int
        Index of the ``#``.

    Returns
    -------
    payload : bytes
        The block's data.
    end : int
        Index just after the block in ``data``.

    Raises
    ------
    SCPIError
        -161 if the header is malformed or ``data`` is shorter than announced.
    """
    if data[start : start + 1] != b"#" or len(data) < start + 2:
        raise SCPIError(
            -161, f"block must start with '#<n>', got {bytes(data[start : start + 8])!r}"
        )
    ndigits = data[start + 1] - 48
    if not 1 <= ndigits <= 9:
        if ndigits == 0:
            return bytes(data[start + 2 :]), len(data)
        raise SCPIError(-161, f"invalid block length digit {chr(data[start + 1])!r}")
    digits = data[start + 2 : start + 2 + ndigits]
    if len(digits) != ndigits or not digits.isdigit():
        raise SCPIError(-161, f"invalid block length field {bytes(digits)!r}")
    begin = start + 2 + ndigits
    end = begin + int(digits)
    if end > len(data):
        raise SCPIError(-161, f"block announces {int(digits)} bytes, only {len(data) - begin} sent")
    return bytes(data[begin:end]), end


# ----------------------------------------------------------------------------- values

_NUMBER_RE = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z%]*)\s*$")
#: Accepted unit suffixes (upper case) and their multipliers. ``MHZ`` is mega
#: and ``MA``/``MV``/``MS`` are milli, as in IEEE 488.2.
_SUFFIXES: dict[str, float] = {
    "": 1.0,
    "HZ": 1.0,
    "KHZ": 1e3,
    "MHZ": 1e6,
    "MAHZ": 1e6,
    "GHZ": 1e9,
    "V": 1.0,
    "MV": 1e-3,
    "UV": 1e-6,
    "NV": 1e-9,
    "A": 1.0,
    "MA": 1e-3,
    "UA": 1e-6,
    "NA": 1e-9,
    "S": 1.0,
    "MS": 1e-3,
    "US": 1e-6,
    "NS": 1e-9,
    "PS": 1e-12,
    "DBM": 1.0,
    "DB": 1.0,
    "DEG": 1.0,
    "PCT": 1.0,
    "%": 1.0,
}
_SPECIAL_NUMBERS = {"INF": math.inf, "+INF": math.inf, "-INF": -math.inf, "NAN": math.nan}


def _as_text(arg: Argument, what: str) -> str:
    if isinstance(arg, bytes | bytearray):
        raise SCPIError(-104, f"{what}: got a binary block, expected a value")
    return str(arg)


def parse_number(
    arg: Argument,
    what: str = "value",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    default: float | None = None,
) -> float:
    """Parse a decimal numeric argument.

    Accepts ``1e9``, ``-3.5``, unit suffixes such as ``10MHZ`` or ``5 mV``,
    ``INF``/``NAN``, and the keywords ``MINimum``/``MAXimum``/``DEFault`` when
    the corresponding limit is given. Does **not** range-check: compare the
    result with :meth:`labnr.sim.instruments.scpi.SCPICall.number` or your own
    check raising ``SCPIError(-222, ...)``.

    Parameters
    ----------
    arg : Argument
        The argument.
    what : str
        Name used in error messages (e.g. ``"SOUR:FREQ frequency"``).
    minimum, maximum, default : float, optional
        Values of the ``MIN``, ``MAX`` and ``DEF`` keywords.

    Returns
    -------
    float

    Raises
    ------
    SCPIError
        -104 for a quoted string or block, -131 for an unknown unit suffix,
        -224 for an unknown keyword.
    """
    if isinstance(arg, QuotedString):
        raise SCPIError(-104, f"{what}: got string {str(arg)!r}, expected a number")
    text = _as_text(arg, what).strip()
    match = _NUMBER_RE.match(text)
    if match is not None:
        suffix = match.group(2).upper()
        if suffix not in _SUFFIXES:
            raise SCPIError(-131, f"{what}: unit suffix {match.group(2)!r} in {text!r}")
        return float(match.group(1)) * _SUFFIXES[suffix]
    keyword = text.upper()
    if keyword in _SPECIAL_NUMBERS:
        return _SPECIAL_NUMBERS[keyword]
    keywords = {
        "MIN": minimum,
        "MINIMUM": minimum,
        "MAX": maximum,
        "MAXIMUM": maximum,
        "DEF": default,
        "DEFAULT": default,
    }
    if keywords.get(keyword) is not None:
        return float(keywords[keyword])  # type: ignore[arg-type]
    if re.match(r"^#[HQB]", keyword):
        return float(parse_int(arg, what))
    raise SCPIError(-224 if keyword in keywords else -104, f"{what}: {text!r} is not a number")


def parse_int(arg: Argument, what: str = "value") -> int:
    """Parse an integer argument (decimal, or ``#H``/``#Q``/``#B`` non-decimal).

    Raises
    ------
    SCPIError
        -104 if the argument is not an integer.
    """
    text = _as_text(arg, what).strip().upper()
    bases = {"#H": 16, "#Q": 8, "#B": 2}
    try:
        if text[:2] in bases:
            return int(text[2:], bases[text[:2]])
        value = float(text) if not isinstance(arg, QuotedString) else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != round(value):
        raise SCPIError(-104, f"{what}: {text!r} is not an integer")
    return int(value)


def parse_bool(arg: Argument, what: str = "state") -> bool:
    """Parse a boolean argument: ``ON``/``OFF``/``1``/``0`` (any number: nonzero is ON).

    Raises
    ------
    SCPIError
        -104 for a block or string, -224 for any other mnemonic.
    """
    if isinstance(arg, QuotedString):
        raise SCPIError(-104, f"{what}: got string {str(arg)!r}, expected ON|OFF|1|0")
    text = _as_text(arg, what).strip().upper()
    if text == "ON":
        return True
    if text == "OFF":
        return False
    try:
        return round(float(text)) != 0
    except ValueError:
        raise SCPIError(-224, f"{what}: {text!r} is not ON|OFF|1|0") from None


def mnemonic_forms(mnemonic: str) -> tuple[str, str]:
    """Short and long form of a SCPI mnemonic, both upper case.

    The short form is the leading run of characters that are not lower-case
    letters: ``"FREQuency"`` -> ``("FREQ", "FREQUENCY")``; ``"INT"`` ->
    ``("INT", "INT")``.
    """
    short = re.match(r"[^a-z]*", mnemonic)
    assert short is not None
    return short.group(0).upper(), mnemonic.upper()


def parse_choice(arg: Argument, choices: Sequence[str], what: str = "value") -> str:
    """Match an enumerated (character data) argument against mnemonics.

    Parameters
    ----------
    arg : Argument
        The argument; matched case-insensitively against the short or long
        form of each choice. Quoted strings are accepted too.
    choices : sequence of str
        Mnemonics written the SCPI way, e.g. ``("INTernal", "EXTernal")``.
    what : str
        Name used in error messages.

    Returns
    -------
    str
        The matching entry of ``choices``, as written there.

    Raises
    ------
    SCPIError
        -224 if nothing matches.
    """
    text = _as_text(arg, what).strip().upper()
    for choice in choices:
        if text in mnemonic_forms(choice):
            return choice
    raise SCPIError(-224, f"{what}: {text!r} is not one of {'|'.join(choices)}")


def format_number(value: float) -> str:
    """Format a number for a reply: shortest exact text, ``NaN``/``INF`` for non-finite."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


# ----------------------------------------------------------------------------- lexer

_WHITESPACE = b" \t\r\n"
_HEADER_RE = re.compile(rb":?\*?[A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z_][A-Za-z0-9_]*)*\??")
_TOKEN_END_RE = re.compile(rb"[,;()\"']")
_HEADER_START_RE = re.compile(rb"[:*]?[A-Za-z_*]")


def _skip_ws(data: bytes, i: int) -> int:
    n = len(data)
    while i < n and data[i] in _WHITESPACE:
        i += 1
    return i


def _read_quoted(data: bytes, i: int) -> tuple[QuotedString, int]:
    quote = data[i : i + 1]
    parts: list[bytes] = []
    j = i + 1
    while True:
        k = data.find(quote, j)
        newline = data.find(b"\n", j, k if k >= 0 else len(data))
        if k < 0 or newline >= 0:
            raise SCPIError(-151, f"unterminated string starting at {bytes(data[i : i + 20])!r}")
        parts.append(data[j:k])
        if data[k + 1 : k + 2] == quote:  # doubled quote stands for one quote
            parts.append(quote)
            j = k + 2
            continue
        return QuotedString(b"".join(parts).decode("latin-1")), k + 1


def _read_token(data: bytes, i: int) -> tuple[str, int]:
    depth = 0
    j = i
    n = len(data)
    while j < n:
        match = _TOKEN_END_RE.search(data, j)
        if match is None:
            j = n
            break
        j = match.start()
        char = data[j : j + 1]
        if char == b"(":
            depth += 1
        elif char == b")":
            depth -= 1
        elif char in b"\"'":
            raise SCPIError(-102, f"unexpected quote in {bytes(data[i : j + 1])!r}")
        elif depth <= 0:
            break
        j += 1
    token = data[i:j].strip(_WHITESPACE).decode("latin-1")
    if not token:
        raise SCPIError(-102, f"empty argument at {bytes(data[i : i + 20])!r}")
    return token, j


def _read_argument(data: bytes, i: int) -> tuple[Argument, int]:
    head = data[i : i + 1]
    if head in (b'"', b"'"):
        return _read_quoted(data, i)
    if head == b"#" and data[i + 1 : i + 2].isdigit():
        if data[i + 1 : i + 2] == b"0":  # indefinite length: the rest of the message
            return bytes(data[i + 2 :]).removesuffix(b"\n"), len(data)
        return decode_block(data, i)
    return _read_token(data, i)


def _read_arguments(data: bytes, i: int) -> tuple[list[Argument], int, bool]:
    """Read arguments; the flag says a block ended the message without terminator."""
    args: list[Argument] = []
    n = len(data)
    while True:
        i = _skip_ws(data, i)
        arg, i = _read_argument(data, i)
        args.append(arg)
        i = _skip_ws(data, i)
        if i >= n or data[i : i + 1] == b";":
            return args, i, False
        if isinstance(arg, bytes) and _HEADER_START_RE.match(data, i):
            return args, i, True
        if data[i : i + 1] != b",":
            raise SCPIError(-103, f"expected ',' or ';' at {bytes(data[i : i + 20])!r}")
        i = _skip_ws(data, i + 1)
        if i >= n or data[i : i + 1] == b";":
            raise SCPIError(-109, "argument missing after ','")


def iter_program_units(data: bytes) -> Iterator[ProgramUnit]:
    """Lex a program message into units, lazily.

    Units are yielded one by one so that the caller can execute the units
    before a syntax error, as an instrument does; the error is raised when
    the lexer reaches it and the rest of the message is discarded.

    A definite-length block may be followed directly by the next header,
    without terminator or separator: instruments such as Tektronix AWGs end
    the message at the block's last byte, and QCoDeS's Tektronix driver
    relies on it (``write_raw`` of ``MMEM:DATA "f",#<block>``). The next unit
    is then resolved from the root (its header gets a leading ``:``).

    Parameters
    ----------
    data : bytes
        One message, with or without its terminating newline.

    Yields
    ------
    ProgramUnit

    Raises
    ------
    SCPIError
        -102/-103/-109/-151/-161 on malformed input.
    """
    n = len(data)
    i = 0
    root_next = False
    while True:
        i = _skip_ws(data, i)
        if i >= n:
            return
        if data[i : i + 1] == b";":
            i += 1
            continue
        match = _HEADER_RE.match(data, i)
        if match is None:
            raise SCPIError(-102, f"invalid header at {bytes(data[i : i + 20])!r}")
        raw = match.group(0).decode("ascii")
        i = match.end()
        if i < n and data[i] not in _WHITESPACE and data[i : i + 1] != b";":
            raise SCPIError(-102, f"invalid character after header {raw!r}")
        args: list[Argument] = []
        j = _skip_ws(data, i)
        block_ended_message = False
        if j < n and data[j : j + 1] != b";":
            args, j, block_ended_message = _read_arguments(data, j)
        i = j
        query = raw.endswith("?")
        header = raw[:-1] if query else raw
        if root_next and not header.startswith((":", "*")):
            header = ":" + header
        root_next = block_ended_message
        yield ProgramUnit(header, query, tuple(args))
