"""The SCPI server over real pyvisa-py sessions, and every fault."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import pyvisa
from hypothesis import given
from hypothesis import strategies as st
from pyvisa.resources import MessageBasedResource

from labnr.sim.faults import inject_fault, parse_address
from labnr.sim.instruments.scpi import (
    SCPICall,
    SCPIInstrument,
    encode_block,
    encode_floats,
    inject_nan,
)
from labnr.sim.instruments.server import MessageFramer, SCPIServer, corrupt_reply


class _Echo(SCPIInstrument):
    """Stores blocks and serves a float trace as a binary block."""

    model = "ECHO"

    def __init__(self) -> None:
        super().__init__("echo")
        self.block = b""
        self.add_command("DATA:BLOCk", set=self._store, query=lambda c: self.block, nargs=1)
        self.add_command("DATA:TRACe", query=self._trace)
        self.add_command("DATA:ASCii", query=lambda c: np.linspace(0.0, 1.0, 11))

    def _store(self, call: SCPICall) -> None:
        self.block = call.block(0)

    def _trace(self, call: SCPICall) -> bytes:
        values = np.arange(1601 * 18, dtype=float)
        if self.take_nan():  # the NaN hook for handlers that encode bytes themselves
            values = inject_nan(values)
        return encode_floats(values, "<f8")


@pytest.fixture
def server() -> Iterator[SCPIServer]:
    with SCPIServer(_Echo()) as srv:
        yield srv


@pytest.fixture
def resource_manager() -> Iterator[pyvisa.ResourceManager]:
    rm = pyvisa.ResourceManager("@py")
    yield rm
    rm.close()


def _open(
    rm: pyvisa.ResourceManager, server: SCPIServer, timeout_ms: int = 2000
) -> MessageBasedResource:
    resource = rm.open_resource(
        server.address, read_termination="\n", write_termination="\n", timeout=timeout_ms
    )
    assert isinstance(resource, MessageBasedResource)
    return resource


def test_idn_and_address(server: SCPIServer, resource_manager: pyvisa.ResourceManager) -> None:
    assert server.address == f"TCPIP::127.0.0.1::{server.port}::SOCKET"
    inst = _open(resource_manager, server)
    assert inst.query("*IDN?") == "LABNR,ECHO,000000,0.1"
    assert inst.query("*OPC?;*IDN?") == "1;LABNR,ECHO,000000,0.1"
    inst.close()


def test_binary_round_trip(server: SCPIServer, resource_manager: pyvisa.ResourceManager) -> None:
    inst = _open(resource_manager, server)
    values = [1.0, -2.5, 3e9, 0.0, 10.0]  # 10.0 packs to bytes containing '\n'-like values
    inst.write_binary_values("DATA:BLOC ", values, datatype="d")
    assert inst.query_binary_values("DATA:BLOC?", datatype="d") == values
    trace = inst.query_binary_values("DATA:TRAC?", datatype="d", container=np.array)
    assert trace.shape == (1601 * 18,) and trace[-1] == 1601 * 18 - 1
    inst.write_raw(b"DATA:BLOC #15a\n;b\n;SYST:ERR?\n")  # newline inside a block
    assert inst.read() == '0,"No error"'
    assert server.instrument.block == b"a\n;b\n"  # type: ignore[attr-defined]
    inst.close()


def test_several_clients_share_the_instrument(
    server: SCPIServer, resource_manager: pyvisa.ResourceManager
) -> None:
    first, second = _open(resource_manager, server), _open(resource_manager, server)
    first.write("NOPE")
    assert first.query("*OPC?") == "1"  # connections are independent: synchronise
    assert second.query("SYST:ERR?") == '-113,"Undefined header"'
    first.close()
    second.close()


def test_drop_now_and_after_n(server: SCPIServer, resource_manager: pyvisa.ResourceManager) -> None:
    inst = _open(resource_manager, server, timeout_ms=1000)
    assert inst.query("*OPC?") == "1"
    server.faults.drop_connection()
    with pytest.raises((pyvisa.VisaIOError, OSError)):
        inst.query("*OPC?")
    inst.close()
    inst = _open(resource_manager, server, timeout_ms=1000)  # reconnecting works
    server.faults.drop_connection(after_commands=2)
    assert inst.query("*OPC?") == "1" and inst.query("*OPC?") == "1"
    with pytest.raises((pyvisa.VisaIOError, OSError)):
        inst.query("*OPC?")
    inst.close()


def test_latency(server: SCPIServer, resource_manager: pyvisa.ResourceManager) -> None:
    inst = _open(resource_manager, server)
    server.faults.add_latency(0.15)
    start = time.perf_counter()
    assert inst.query("*OPC?") == "1"
    assert time.perf_counter() - start >= 0.15
    server.faults.add_latency(0.0)
    inst.close()


def test_freeze_times_out_then_recovers(
    server: SCPIServer, resource_manager: pyvisa.ResourceManager
) -> None:
    inst = _open(resource_manager, server, timeout_ms=150)
    server.faults.freeze()
    with pytest.raises(pyvisa.VisaIOError) as info:
        inst.query("*IDN?")
    assert info.value.error_code == pyvisa.constants.StatusCode.error_timeout
    server.faults.unfreeze()
    assert inst.query("*OPC?") == "1"  # the frozen query was discarded, no stale reply
    server.faults.freeze(0.1)
    time.sleep(0.12)
    assert inst.query("*OPC?") == "1"
    inst.close()


def test_malformed_replies(server: SCPIServer, resource_manager: pyvisa.ResourceManager) -> None:
    inst = _open(resource_manager, server, timeout_ms=300)
    server.faults.malformed_reply(1)
    text = inst.query("*IDN?")
    assert text != "LABNR,ECHO,000000,0.1" and text.endswith("~?")
    assert inst.query("*IDN?") == "LABNR,ECHO,000000,0.1"
    inst.write_binary_values("DATA:BLOC ", [1.0, 2.0, 3.0, 4.0], datatype="d")
    server.faults.malformed_reply(1)
    try:
        values = inst.query_binary_values("DATA:BLOC?", datatype="d")
    except (ValueError, pyvisa.VisaIOError):
        pass
    else:
        assert values != [1.0, 2.0, 3.0, 4.0]
    inst.close()


def test_corrupt_reply_lies_about_block_length() -> None:
    assert corrupt_reply(b"#210" + b"x" * 10 + b"\n") == b"#205" + b"x" * 10 + b"\n"
    assert corrupt_reply(b"1.25e9\n") == b"1.2~?\n"


def test_pushed_error(server: SCPIServer, resource_manager: pyvisa.ResourceManager) -> None:
    inst = _open(resource_manager, server)
    server.faults.push_error(-310, "System error; simulated")
    assert inst.query("SYST:ERR?") == '-310,"System error; simulated"'
    inst.close()


def test_nan_hook(server: SCPIServer, resource_manager: pyvisa.ResourceManager) -> None:
    inst = _open(resource_manager, server)
    server.faults.nan_data(2)
    assert np.isnan(inst.query_binary_values("DATA:TRAC?", datatype="d", container=np.array)).any()
    assert "NaN" in inst.query("DATA:ASC?")
    assert np.isfinite(
        inst.query_binary_values("DATA:TRAC?", datatype="d", container=np.array)
    ).all()
    inst.close()


def test_faults_over_the_wire(server: SCPIServer, resource_manager: pyvisa.ResourceManager) -> None:
    inst = _open(resource_manager, server, timeout_ms=150)
    inject_fault(server.address, "error", (-350, "Queue overflow"))
    assert inst.query("SYST:ERR?") == '-350,"Queue overflow"'
    inject_fault(("127.0.0.1", server.port), "freeze", None)
    with pytest.raises(pyvisa.VisaIOError):
        inst.query("*OPC?")
    inject_fault(server.port, "clear")  # SIMulation messages bypass the freeze
    assert inst.query("*OPC?") == "1"
    inject_fault(f"127.0.0.1:{server.port}", "nan", 1)
    inject_fault(server.address, "latency", 0.01)
    assert server.faults.latency == 0.01 and server.faults.take_nan()
    inject_fault(server.address, "drop", 0)
    with pytest.raises((pyvisa.VisaIOError, OSError)):
        inst.query("*OPC?")
    inst.close()
    with pytest.raises(ValueError):
        inject_fault(server.address, "explode", 1)
    assert parse_address("TCPIP0::127.0.0.1::5025::SOCKET") == ("127.0.0.1", 5025)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::1", "example.com", ""])
def test_refuses_non_loopback_host(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SCPIServer(SCPIInstrument("x"), host=host)


def test_stop_is_idempotent_and_closes_clients(resource_manager: pyvisa.ResourceManager) -> None:
    server = SCPIServer(_Echo()).start()
    inst = _open(resource_manager, server, timeout_ms=200)
    assert inst.query("*OPC?") == "1"
    server.stop()
    server.stop()
    assert not server.running
    with pytest.raises((pyvisa.VisaIOError, OSError)):
        inst.query("*OPC?")
    inst.close()


def test_framer_splits_on_newline_outside_blocks_and_strings() -> None:
    framer = MessageFramer()
    message = b'A "x\'#9" ;B #14\n\n\n\n;C'
    assert framer.feed(message[:9]) == []
    assert framer.feed(message[9:14]) == []
    assert framer.feed(message[14:] + b"\nD\n") == [message, b"D"]
    assert framer.pending == 0


@given(
    st.lists(st.binary(max_size=30), min_size=1, max_size=5),
    st.lists(st.integers(min_value=1, max_value=17), min_size=1, max_size=10),
)
def test_framer_is_independent_of_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    messages = [b"DATA:BLOC " + encode_block(p) + b""";SYST:ERR? "a#1;'" """ for p in payloads]
    stream = b"".join(m + b"\n" for m in messages)
    framer = MessageFramer()
    received: list[bytes] = []
    position = 0
    for cut in cuts * (len(stream) // sum(cuts) + 1):
        received += framer.feed(stream[position : position + cut])
        position += cut
    assert received == messages
    assert framer.pending == 0
