"""Property tests of every parser of instrument replies in the drivers.

For any valid reply built from a value, the parser returns that value; for any
garbage (truncated blocks, wrong length digits, non-numeric or non-ASCII text,
empty or very long replies, NaN/inf, not even a string) it raises a
``ValueError`` — a :class:`~labnr.drivers.parsing.ReplyError` naming what was
parsed and showing the reply, cut short — and nothing else.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from labnr.drivers.flux import _is_number
from labnr.drivers.keysight_pna_params import (
    error_code,
    parse_catalog,
    parse_sparameter,
    sparameter_label,
)
from labnr.drivers.parsing import (
    ReplyError,
    is_no_error,
    parse_bool,
    parse_error,
    parse_fields,
    parse_ieee_block,
    parse_int,
    parse_number,
    parse_numbers,
)

#: garbage of every kind: any text, any bytes, non-strings
ANY_REPLY = st.one_of(
    st.text(),
    st.text(alphabet="0123456789+-.eE,;#\" \n"),
    st.binary(),
    st.none(),
    st.integers(),
    st.floats(),
    st.lists(st.text(max_size=3), max_size=3),
)
SPECIAL = ["", " ", "\n", "nan", "NaN", "-inf", "inf", "Infinity", "1e999", "-1e400", "9.91E37",
           "9.9E+37", "1_000", "0x10", "١٢٣", "1,2", "++1", "1e", ".", "e5", "\x00", "1 2",
           "1" * 5000, "é", "💥", "1.0.0", "+", "-"]  # fmt: skip
SCPI_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-9e37, max_value=9e37)


def as_text(reply: object) -> object:
    """ASCII bytes as the parsers read them (they accept both); anything else as it is."""
    if isinstance(reply, bytes | bytearray):
        try:
            return bytes(reply).decode("ascii")
        except UnicodeDecodeError:
            return reply
    return reply


def check_error(exc: ReplyError, what: str, reply: object) -> None:
    """The message names what was parsed and shows the reply, cut to a readable length."""
    msg = str(exc)
    assert isinstance(exc, ValueError)
    assert msg.startswith(f"{what}: ")
    assert exc.reply is reply and exc.what == what
    assert repr(reply)[:40] in msg
    assert len(msg) < len(what) + 200


# ---------------------------------------------------------------------- numbers


@given(FINITE, st.sampled_from(["{!r}", "{:+.15E}", "{:.6e}", "{:.17g}", " {:+.9E}\r\n"]))
def test_number_round_trip(value: float, form: str) -> None:
    text = form.format(value)
    assert parse_number(text, "SENS1:BAND?") == float(text.strip())
    if form == "{!r}":
        assert parse_number(text) == value


@given(ANY_REPLY)
@example(SPECIAL[0])
@example(b"1.5")
def test_number_garbage(reply: object) -> None:
    text = as_text(reply)
    valid = isinstance(text, str) and SCPI_NUMBER.fullmatch(text.strip(" \t\r\n"))
    try:
        value = parse_number(reply, "SENS1:BAND?")
    except ReplyError as exc:
        check_error(exc, "SENS1:BAND?", reply)
        return
    assert valid and math.isfinite(value) and abs(value) < 9.9e37


@pytest.mark.parametrize("reply", SPECIAL)
def test_special_replies_are_not_numbers(reply: str) -> None:
    for parse in (parse_number, parse_int):
        with pytest.raises(ReplyError) as exc:
            parse(reply, "what")
        check_error(exc.value, "what", reply)


@given(st.integers(min_value=-(10**20), max_value=10**20), st.booleans())
def test_int_round_trip(value: int, plus: bool) -> None:
    text = f"{value:+d}" if plus else f" {value}\n"
    assert parse_int(text, "SENS1:SWE:POIN?") == value


@given(ANY_REPLY)
@example(b"0")
def test_int_garbage(reply: object) -> None:
    try:
        value = parse_int(reply, "points")
    except ReplyError as exc:
        check_error(exc, "points", reply)
        return
    text = as_text(reply)
    assert isinstance(text, str) and int(text) == value


@given(st.booleans(), st.sampled_from([("1", "0"), ("+1", "+0"), ("ON", "OFF"), ("on", "off")]))
def test_bool_round_trip(value: bool, words: tuple[str, str]) -> None:
    assert parse_bool(words[0] if value else words[1], "averaging") is value


@given(ANY_REPLY)
def test_bool_garbage(reply: object) -> None:
    try:
        value = parse_bool(reply, "averaging")
    except ReplyError as exc:
        check_error(exc, "averaging", reply)
        return
    assert isinstance(value, bool)


@given(st.lists(FINITE, max_size=20))
def test_number_list_round_trip(values: list[float]) -> None:
    assert parse_numbers(",".join(repr(v) for v in values), "list") == values


@given(ANY_REPLY)
def test_number_list_garbage(reply: object) -> None:
    try:
        values = parse_numbers(reply, "list")
    except ReplyError as exc:
        check_error(exc, "list", reply)
        return
    assert all(math.isfinite(v) for v in values)


@given(st.lists(st.text(alphabet="abc012+-. ", max_size=5), min_size=1, max_size=5))
def test_fields_round_trip(fields: list[str]) -> None:
    out = parse_fields(";".join(fields), len(fields), "timing")
    assert out == [f.strip() for f in fields]
    with pytest.raises(ReplyError):
        parse_fields(";".join(fields), len(fields) + 1, "timing")


# ---------------------------------------------------------------------- error queue

MESSAGES = st.text(
    alphabet=st.characters(blacklist_characters='"', blacklist_categories=("Cs",)), max_size=40
)


@given(st.integers(min_value=-999, max_value=999), MESSAGES)
@example(0, "No error")
@example(-113, "Undefined header")
def test_error_round_trip(code: int, message: str) -> None:
    reply = f'{code:+d},"{message}"'
    assert parse_error(reply) == (code, message)  # the text inside the quotes, as sent
    assert error_code(reply) == code
    assert is_no_error(reply) is (code == 0)


@given(ANY_REPLY)
@example("١٢٣,\"x\"")
@example("1_0,\"x\"")
@example(b"0")
def test_error_garbage(reply: object) -> None:
    no_error = is_no_error(reply)  # never raises
    code = error_code(reply)  # never raises; None if garbled
    try:
        parsed = parse_error(reply, "SYST:ERR?")
    except ReplyError as exc:
        check_error(exc, "SYST:ERR?", reply)
        assert code is None and no_error is False
        return
    assert parsed[0] == code and no_error is (code == 0)
    text = reply.decode() if isinstance(reply, bytes | bytearray) else reply
    assert re.match(r"\s*[+-]?[0-9]+", text, re.ASCII)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- PNA catalog

PORT = st.integers(min_value=1, max_value=99)
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)


@given(PORT, PORT)
def test_sparameter_round_trip(out_port: int, in_port: int) -> None:
    label = sparameter_label(out_port, in_port)
    assert parse_sparameter(label) == (out_port, in_port)
    assert parse_sparameter(f"'{label.lower()}'") == (out_port, in_port)


@given(ANY_REPLY)
@example("S١٢")
@example("S1_" + "9" * 5000)
def test_sparameter_garbage(text: object) -> None:
    result = parse_sparameter(text)  # type: ignore[arg-type]
    if result is not None:
        text = as_text(text)
        assert isinstance(text, str)
        stripped = text.strip().strip("'\"").removesuffix("\n")
        m = re.fullmatch(r"S([0-9])([0-9])|S([0-9]{1,3})_([0-9]{1,3})", stripped, re.IGNORECASE)
        assert m is not None and tuple(int(g) for g in m.groups() if g) == result


@given(st.lists(st.tuples(NAME, PORT, PORT), max_size=6))
def test_catalog_round_trip(items: list[tuple[str, int, int]]) -> None:
    reply = '"' + ",".join(f"{n},{sparameter_label(o, i)}" for n, o, i in items) + '"'
    if not items:
        reply = '"NO CATALOG"'
    assert parse_catalog(reply) == [(n, (o, i)) for n, o, i in items]


@given(ANY_REPLY)
def test_catalog_garbage(reply: object) -> None:
    try:
        out = parse_catalog(reply)  # type: ignore[arg-type]
    except ReplyError as exc:
        check_error(exc, "measurement catalog", reply)
        return
    assert isinstance(as_text(reply), str)
    assert all(isinstance(name, str) for name, _ in out)


# ---------------------------------------------------------------------- binary blocks


def block(payload: bytes, ndigits: int | None = None) -> bytes:
    length = str(len(payload))
    n = len(length) if ndigits is None else ndigits
    return b"#" + str(n).encode() + length.zfill(n).encode() + payload


VALUES = st.lists(st.floats(width=64), max_size=64).map(lambda v: np.array(v, dtype="<f8"))


@given(VALUES, st.sampled_from([b"", b"\n", b"\r\n"]), st.integers(min_value=0, max_value=3))
def test_block_round_trip(values: np.ndarray, end: bytes, pad: int) -> None:
    payload = values.tobytes()
    raw = block(payload, len(str(len(payload))) + pad) + end
    out = parse_ieee_block(raw, "<f8", "CALC1:MEAS1:DATA:SDATA?")
    np.testing.assert_array_equal(out, values)  # NaN payloads included, bit for bit
    assert out.flags.writeable
    np.testing.assert_array_equal(parse_ieee_block(b"#0" + payload + b"\n"), values)


@given(st.lists(st.floats(width=32), max_size=32))
def test_float32_block_round_trip(values: list[float]) -> None:
    data = np.array(values, dtype="<f4")
    np.testing.assert_array_equal(parse_ieee_block(block(data.tobytes()), "<f4"), data)


@given(VALUES.filter(lambda v: v.size > 0), st.data())
def test_truncated_block(values: np.ndarray, data: st.DataObject) -> None:
    raw = block(values.tobytes())
    cut = raw[: data.draw(st.integers(min_value=0, max_value=len(raw) - 1))]
    with pytest.raises(ReplyError) as exc:
        parse_ieee_block(cut, what="SDATA")
    check_error(exc.value, "SDATA", cut)


@given(VALUES.filter(lambda v: v.size > 0), st.integers(min_value=-8, max_value=8))
def test_block_with_wrong_length(values: np.ndarray, delta: int) -> None:
    payload = values.tobytes()
    claimed = len(payload) + delta
    if delta == 0 or claimed < 0:
        return
    digits = str(claimed).encode()
    raw = b"#" + str(len(digits)).encode() + digits + payload
    with pytest.raises(ReplyError, match=r"SDATA: (truncated|\d+ bytes)"):
        parse_ieee_block(raw, what="SDATA")


@pytest.mark.parametrize(
    "raw",
    [b"", b"#", b"#0", b"#1", b"#15abc", b"#13abc", b"#2-1ab", b"#A16", b"#9999999999",
     b"garbage", b"#18\x00", b"#1 8", b"#1\xff8", b" #10", b"#210" + bytes(10),
     "#10".encode("utf-16"), b"#10extra"],
)  # fmt: skip
def test_malformed_blocks(raw: bytes) -> None:
    if raw == b"#0":  # indefinite length, nothing in it: a valid empty block
        assert parse_ieee_block(raw).size == 0
        return
    with pytest.raises(ReplyError) as exc:
        parse_ieee_block(raw, what="SENS1:X?")
    check_error(exc.value, "SENS1:X?", raw)


@given(st.one_of(st.binary(max_size=200), st.text(max_size=20), st.none(), st.integers()))
def test_block_garbage(raw: object) -> None:
    try:
        out = parse_ieee_block(raw, what="SDATA")
    except ReplyError as exc:
        check_error(exc, "SDATA", raw)
        return
    assert isinstance(raw, bytes) and raw.startswith(b"#") and out.dtype == np.float64


def test_long_reply_is_shown_cut() -> None:
    reply = "x" * 1_000_000
    with pytest.raises(ReplyError) as exc:
        parse_number(reply, "power")
    assert len(str(exc.value)) < 150 and "(1000000 characters)" in str(exc.value)


# ---------------------------------------------------------------------- flux validator input


@given(
    st.one_of(
        st.integers(), st.floats(), st.booleans(), st.text(), st.none(), st.decimals(),
        st.fractions(), st.complex_numbers(), st.binary(),
        st.floats().map(np.float64), st.integers(-(2**31), 2**31 - 1).map(np.int32),
        st.booleans().map(np.bool_),
    )
)  # fmt: skip
def test_is_number(value: object) -> None:
    expected = isinstance(value, (int, float, Fraction, np.floating, np.integer)) and not (
        isinstance(value, (bool, np.bool_))
    )
    if isinstance(value, Decimal):
        expected = False  # numbers.Real does not include Decimal
    assert _is_number(value) is expected


# ---------------------------------------------------------------------- PNA stimulus


class _StimulusTransport:
    """Answers SWE:POIN? and SENS:X? as a PNA would, or with a block pyvisa read leniently."""

    def __init__(self, points: int, values: np.ndarray) -> None:
        self.points, self.values = points, values

    def ask_raw(self, cmd: str) -> str:
        assert cmd.endswith("SWE:POIN?")
        return str(self.points)

    def ask_block(self, cmd: str) -> np.ndarray:
        assert cmd.endswith(":X?")
        return self.values


@given(st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=60))
def test_stimulus_size_is_checked(points: int, got: int) -> None:
    from labnr.drivers.keysight_pna_channel import read_stimulus

    values = np.linspace(5e9, 6e9, got)
    pna = _StimulusTransport(points, values)
    if got == points:
        assert np.array_equal(read_stimulus(pna, 1), values)  # type: ignore[arg-type]
    else:
        with pytest.raises(ReplyError, match="SENS1:X\\?"):
            read_stimulus(pna, 1)  # type: ignore[arg-type]


def test_stimulus_with_nan_is_refused() -> None:
    from labnr.drivers.keysight_pna_channel import read_stimulus

    pna = _StimulusTransport(3, np.array([1e9, np.nan, 2e9]))
    with pytest.raises(ReplyError, match="finite"):
        read_stimulus(pna, 1)  # type: ignore[arg-type]
