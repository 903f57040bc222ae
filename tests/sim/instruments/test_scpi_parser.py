"""Tests of the SCPI syntax layer and the emulator base class (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labnr.sim.clock import VirtualClock
from labnr.sim.instruments.scpi import (
    HeaderPattern,
    QuotedString,
    SCPICall,
    SCPIError,
    SCPIInstrument,
    decode_block,
    encode_block,
    parse_bool,
    parse_choice,
    parse_number,
    scpi_query,
    scpi_set,
)
from labnr.sim.instruments.scpi_syntax import iter_program_units


@dataclass
class _State:
    frequency: dict[int, float]
    power: float = -10.0
    output: bool = False
    source: str = "INT"


class _Toy(SCPIInstrument):
    """A small emulator exercising every registration style."""

    model = "TOY1"

    def __init__(self, backend: object | None = None) -> None:
        self.state = _State(frequency={})
        self.blocks: list[bytes] = []
        self.notified = 0
        super().__init__("toy", backend)  # type: ignore[arg-type]
        self.add_number_setting(
            "[SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]",
            self.state,
            "power",
            low=-120.0,
            high=25.0,
            unit=" dBm",
        )
        self.add_bool_setting("OUTPut#[:STATe]", self.state, "output")
        self.add_choice_setting(
            "[SOURce]:ROSCillator:SOURce", self.state, "source", ("INTernal", "EXTernal")
        )
        self.add_command(
            "DATA:BLOCk",
            set=lambda c: self.blocks.append(c.block(0)),
            query=lambda c: self.blocks[-1],
            nargs=1,
        )
        self.add_command("DATA:ARRay", query=lambda c: np.array([1.0, 2.0, 3.0, 4.0]))
        self.add_command("DATA:FAIL", query=self._fail)

    def changed(self) -> None:
        self.notified += 1

    @scpi_set("[SOURce#]:FREQuency[:CW|FIXed]", nargs=1)
    def _set_freq(self, call: SCPICall) -> None:
        self.state.frequency[call.suffix()] = call.number(0, low=1e6, high=20e9, unit=" Hz")

    @scpi_query("[SOURce#]:FREQuency[:CW|FIXed]")
    def _get_freq(self, call: SCPICall) -> float:
        return self.state.frequency.get(call.suffix(), 1e9)

    @scpi_set("SENSe#:CHANnel#:TEST", nargs=(0, 3))
    def _set_test(self, call: SCPICall) -> None:
        self.last_call = call

    def _fail(self, call: SCPICall) -> str:
        raise SCPIError(-221, "always")


@pytest.fixture
def toy() -> _Toy:
    return _Toy()


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "header",
    [
        "SOUR:FREQ 2e9",
        "source:frequency 2e9",
        "SoUrCe:FrEq:Cw 2e9",
        "FREQ:FIX 2e9",
        ":FREQUENCY 2e9",
        "SOUR1:FREQ 2e9",
        "frequency:cw 2e9",
    ],
)
def test_short_long_case_and_optional_nodes(toy: _Toy, header: str) -> None:
    toy.write(header)
    assert toy.state.frequency[1] == 2e9
    assert toy.errors == []


@pytest.mark.parametrize("header", ["SOURC:FREQ 1e9", "SOUR:FRE 1e9", "SOUR:FREQ:C 1e9"])
def test_only_short_or_long_form_match(toy: _Toy, header: str) -> None:
    toy.write(header)
    assert toy.errors == [(-113, "Undefined header")]


def test_numeric_suffixes_default_and_explicit(toy: _Toy) -> None:
    toy.write("SOUR3:FREQ 3e9")
    assert toy.state.frequency == {3: 3e9}
    toy.write("SENS2:CHAN:TEST")
    assert toy.last_call.suffixes == (2, 1)
    toy.write("SENSE:CHANNEL7:TEST")
    assert toy.last_call.suffixes == (1, 7)


def test_header_pattern_matching() -> None:
    pattern = HeaderPattern("[SOURce#]:POWer[:LEVel][:IMMediate][:AMPLitude]")
    assert pattern.match(("POW",)) == (1,)
    assert pattern.match(("SOURCE4", "POW", "AMPL")) == (4,)
    assert pattern.match(("SOUR", "POW", "LEV", "IMM", "AMPL")) == (1,)
    assert pattern.match(("SOUR", "POW", "AMPL", "LEV")) is None


# ---------------------------------------------------------------- messages


def test_semicolon_joins_relative_paths_and_several_queries(toy: _Toy) -> None:
    reply = toy.ask("SOUR2:FREQ 5e9;FREQ?;:FREQ?;*IDN?;FREQ:CW?")
    # FREQ? is relative to SOUR2:, *IDN? does not change the path.
    assert reply == "5000000000;1000000000;LABNR,TOY1,000000,0.1;1000000000"
    toy.write("SOUR:POW -20;ROSC:SOUR EXT")  # relative: SOUR:ROSC:SOUR
    assert (toy.state.power, toy.state.source) == (-20.0, "EXT")
    toy.write("OUTP ON;SYST:ERR?")  # relative OUTP:SYST fails, falls back to root
    assert toy.state.output and toy.errors == []


def test_binary_block_argument_contains_separators(toy: _Toy) -> None:
    payload = b"a;b\nc,\"d'#15"
    reply = toy.process(b"DATA:BLOC " + encode_block(payload) + b";*OPC?\n")
    assert toy.blocks == [payload]
    assert reply == b"1\n"
    assert toy.process(b"DATA:BLOC?") == encode_block(payload) + b"\n"


def test_block_may_end_the_message_without_terminator(toy: _Toy) -> None:
    # QCoDeS' Tektronix driver write_raw()s 'MMEM:DATA "f",#<block>' and the
    # next write follows directly in the same stream.
    reply = toy.process(b"DATA:BLOC " + encode_block(b"x;\ny") + b"*IDN?;SOUR:FREQ 2e9;FREQ?")
    assert toy.blocks == [b"x;\ny"]
    assert reply == b"LABNR,TOY1,000000,0.1;2000000000\n"
    assert toy.errors == []


def test_block_round_trip_and_errors() -> None:
    for payload in (b"", b"x", bytes(range(256)) * 5):
        block = encode_block(payload)
        assert decode_block(block + b"tail") == (payload, len(block))
    with pytest.raises(SCPIError) as info:
        decode_block(b"#210abc")
    assert info.value.code == -161


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=4))
def test_lexer_reads_blocks_by_length(payloads: list[bytes]) -> None:
    message = b";".join(b"DATA:BLOC " + encode_block(p) for p in payloads)
    units = list(iter_program_units(message))
    assert [u.args[0] for u in units] == payloads


def test_quoted_strings_and_arguments() -> None:
    (unit,) = iter_program_units(b'MMEM:LOAD "a;b""c", \'x,y\' , 3.5 , (@1,2)')
    assert unit.args == ('a;b"c', "x,y", "3.5", "(@1,2)")
    assert isinstance(unit.args[0], QuotedString)
    assert not isinstance(unit.args[2], QuotedString)


def test_value_parsers() -> None:
    assert parse_number("10 MHz") == 10e6
    assert parse_number("-3.5e-3") == -3.5e-3
    assert parse_number("max", maximum=25.0) == 25.0
    assert [parse_bool(x) for x in ("ON", "off", "1", "0")] == [True, False, True, False]
    assert parse_choice("ext", ("INTernal", "EXTernal")) == "EXTernal"
    for bad, code in [
        (QuotedString("1"), -104),
        (b"\x00", -104),
        ("abc", -104),
        ("MAX", -224),
        ("3 parsec", -131),
    ]:
        with pytest.raises(SCPIError) as info:
            parse_number(bad)
        assert info.value.code == code
    with pytest.raises(SCPIError) as info:
        parse_bool("maybe")
    assert info.value.code == -224


# ---------------------------------------------------------------- errors


def test_unknown_header_error_queue(toy: _Toy) -> None:
    toy.write("FOO:BAR 1")
    assert toy.ask("SYST:ERR?") == '-113,"Undefined header"'
    assert toy.ask("SYSTEM:ERROR:NEXT?") == '0,"No error"'


def test_errors_are_never_silent(toy: _Toy) -> None:
    toy.write("SOUR:FREQ 30e9")  # out of range: value unchanged
    toy.write("SOUR:FREQ")  # missing parameter
    toy.write("SOUR:FREQ 1e9,2e9")  # too many
    toy.write("OUTP MAYBE")
    toy.write("*IDN")  # a query-only header used as a command
    toy.write("SOUR:FREQ 1e9 junk")
    codes = [code for code, _ in toy.errors]
    assert codes == [-222, -109, -108, -224, -113, -131]
    assert 1 not in toy.state.frequency
    assert "30000000000" in toy.errors[0][1]


def test_failing_query_is_skipped_in_reply(toy: _Toy) -> None:
    assert toy.ask("*OPC?;DATA:FAIL?;*OPC?") == "1;1"
    assert toy.process("DATA:FAIL?") is None
    assert [c for c, _ in toy.errors] == [-221, -221]


def test_syntax_error_discards_rest_of_message(toy: _Toy) -> None:
    toy.write("SOUR:POW -30;OUTP ON 'x';SOUR:POW -40")
    assert toy.state.power == -30.0
    assert toy.errors[0][0] == -102


def test_queue_overflow_and_cls(toy: _Toy) -> None:
    for _ in range(toy.error_queue_size + 5):
        toy.write("NOPE")
    errors = toy.errors
    assert len(errors) == toy.error_queue_size
    assert errors[-1] == (-350, "Queue overflow")
    assert int(toy.ask("*STB?")) & 4  # error/event available
    toy.write("*CLS")
    assert toy.errors == [] and toy.ask("SYST:ERR?") == '0,"No error"'
    assert toy.ask("*ESR?") == "0"


def test_esr_bits_and_common_commands(toy: _Toy) -> None:
    assert toy.ask("*ESR?") == "128"  # power on
    toy.write("NOPE;*OPC")
    assert int(toy.ask("*ESR?")) == 32 | 1
    assert toy.ask("*OPC?;*TST?;*OPT?") == "1;0;0"
    toy.write("*ESE 32;*SRE 32;*WAI")
    toy.write("NOPE")
    assert int(toy.ask("*STB?")) == 4 | 32 | 64


def test_settings_notify_and_reply_formats(toy: _Toy) -> None:
    toy.write("POW -5;OUTP1 1;ROSC:SOUR EXTERNAL")
    assert toy.notified == 3
    toy.write("POW -5")  # unchanged: no notification
    assert toy.notified == 3
    assert toy.ask("POW?;OUTP?;ROSC:SOUR?") == "-5;1;EXT"
    assert toy.ask("DATA:ARR?") == "1,2,3,4"


def test_nan_fault_on_array_replies(toy: _Toy) -> None:
    toy.faults.nan_data(1)
    values = np.array(toy.ask("DATA:ARR?").split(","), dtype=float)
    assert np.isnan(values).any()
    assert toy.ask("DATA:ARR?") == "1,2,3,4"
    toy.faults.nan_data(2)
    assert toy.take_nan() and toy.take_nan() and not toy.take_nan()


def test_fault_commands_in_process(toy: _Toy) -> None:
    toy.write('SIM:FAUL:ERR -310,"fake ""system"" error"')
    assert toy.ask("SYST:ERR?") == '-310,"fake ""system"" error"'
    toy.write("SIMULATION:FAULT:LATENCY 0.25;:SIM:FAUL:MALF 2;NAN 3")
    assert toy.faults.latency == 0.25
    toy.write("SIM:FAUL:FRE")
    assert toy.faults.frozen
    toy.write("SIM:FAUL:CLE")
    assert toy.faults.latency == 0.0 and not toy.faults.frozen and not toy.take_nan()


class _Backend:
    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.names: list[str] = []

    def notify(self, instrument: str) -> None:
        self.names.append(instrument)


def test_each_command_advances_backend_clock() -> None:
    backend = _Backend()
    inst = SCPIInstrument("plain", backend)  # type: ignore[arg-type]
    inst.write("*CLS;*CLS;NOPE")
    assert backend.clock.now == pytest.approx(3 * inst.command_latency)
    inst.write("*RST")
    assert backend.names == ["plain"]
