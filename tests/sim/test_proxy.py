"""The tampering proxy: faithful when told nothing, and each tampering as specified."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from labnr.sim.instruments.gs200 import GS200Emulator
from labnr.sim.instruments.server import SCPIServer
from labnr.sim.proxy import Rule, TamperProxy, is_query, offset_reply

BLOCK = b"#3010ab\ncd\n;?ef"  # a definite-length block whose payload holds newlines and '?'


class Client:
    """A raw SCPI client: one socket, newline-terminated messages, block-aware reads."""

    def __init__(self, port: int, timeout: float = 1.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def ask(self, message: bytes) -> bytes:
        self.sock.sendall(message + b"\n")
        return self.read()

    def read(self) -> bytes:
        while True:
            if self.buf.startswith(b"#") and len(self.buf) > 2:
                n = int(self.buf[1:2])
                if len(self.buf) >= 2 + n:
                    end = 2 + n + int(self.buf[2 : 2 + n])
                    if len(self.buf) > end:
                        reply, self.buf = self.buf[:end], self.buf[end + 1 :]
                        return reply
            elif b"\n" in self.buf:
                reply, _, self.buf = self.buf.partition(b"\n")
                return reply
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def gs200() -> Iterator[SCPIServer]:
    with SCPIServer(GS200Emulator("flux")) as server:
        yield server


@pytest.fixture
def block_server() -> Iterator[int]:
    """A bare upstream: ``BLK?`` answers BLOCK, anything else with a query is echoed."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    if line == b"BLK?":
                        conn.sendall(BLOCK + b"\n")
                    elif b"?" in line:
                        conn.sendall(b"echo " + line + b"\n")

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_forwards_faithfully_without_rules(gs200: SCPIServer, block_server: int) -> None:
    direct = Client(gs200.port)
    with TamperProxy(gs200.port) as proxy:
        c = Client(proxy.port)
        for message in (b"*IDN?", b":SOUR:FUNC?", b":SOUR:RANG?", b":OUTP?"):
            assert c.ask(message) == direct.ask(message)
        c.sock.sendall(b":SOUR:FUNC CURR\n")  # a write passes through and takes effect
        assert c.ask(b"*OPC?") == b"1"  # (after the write, on the same connection)
        assert direct.ask(b":SOUR:FUNC?") == b"CURR"
        c.close()
        kinds = [(e.kind, e.text) for e in proxy.events()]
        assert ("write", b":SOUR:FUNC CURR") in kinds
        assert ("reply", b"YOKOGAWA,GS210,91W000001,2.02") in kinds
        assert all(e.tampered is None for e in proxy.events())
    with TamperProxy(block_server) as proxy:
        c = Client(proxy.port)
        assert c.ask(b"BLK?") == BLOCK  # newlines and '?' inside a block do not split it
        assert c.ask(b"X?") == b"echo X?"  # and the stream stays in step
        c.close()
    direct.close()


def test_rewrite_offset_with_count_and_skip(gs200: SCPIServer) -> None:
    direct = Client(gs200.port)
    direct.ask(b":SOUR:FUNC CURR;:SOUR:RANG 1e-3;:SOUR:LEV 1.36e-4;*OPC?")
    with TamperProxy(gs200.port) as proxy:
        rule = proxy.rewrite(r":SOUR:LEV\?", offset_reply(50e-6), count=2, skip=1)
        c = Client(proxy.port)
        reads = [float(c.ask(b":SOUR:LEV?")) for _ in range(4)]
        assert reads[0] == pytest.approx(136e-6, abs=1e-12)  # skipped
        assert reads[1] == reads[2] == pytest.approx(186e-6, abs=1e-12)  # +50 uA, twice
        assert reads[3] == pytest.approx(136e-6, abs=1e-12)  # count exhausted
        assert (rule.seen, rule.hits) == (4, 2)
        assert c.ask(b"*IDN?").startswith(b"YOKOGAWA")  # other queries untouched
        proxy.rewrite("IDN", "ACME,NOTASOURCE,0,0")
        assert c.ask(b"*IDN?") == b"ACME,NOTASOURCE,0,0"
        tampered = [e.tampered for e in proxy.events() if e.kind == "reply"]
        assert tampered.count("rewrite") == 3
        c.close()
    assert float(direct.ask(b":SOUR:LEV?")) == pytest.approx(136e-6, abs=1e-12)  # truth
    direct.close()


def test_drop_swallows_one_reply_and_keeps_order(gs200: SCPIServer) -> None:
    with TamperProxy(gs200.port) as proxy:
        proxy.drop(r"OUTP", count=1)
        c = Client(proxy.port, timeout=0.3)
        with pytest.raises(TimeoutError):
            c.ask(b":OUTP?")
        c.sock.settimeout(1.0)
        assert c.ask(b":SOUR:FUNC?") == b"VOLT"  # the next reply is its own, not a stale one
        assert c.ask(b":OUTP?") == b"0"
        assert [e.tampered for e in proxy.events() if e.kind == "reply"][0] == "drop"
        c.close()


def test_delay_past_the_timeout_makes_a_stale_reply(gs200: SCPIServer) -> None:
    with TamperProxy(gs200.port) as proxy:
        proxy.delay(r"FUNC", 0.5, count=1)
        c = Client(proxy.port, timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            c.ask(b":SOUR:FUNC?")
        c.sock.settimeout(2.0)
        # the late reply arrives after the timeout and answers the next query
        assert c.ask(b":OUTP?") == b"VOLT"
        assert time.monotonic() - t0 >= 0.5
        assert c.read() == b"0"  # then the real answer to :OUTP?
        c.close()


def test_is_query_ignores_block_payload() -> None:
    assert is_query(b"*IDN?")
    assert is_query(b":SOUR:LEV 1;:SOUR:LEV?")
    assert not is_query(b":SOUR:LEV 1")
    assert not is_query(b'WLIS:WAV:DATA "w",0,2,#18ab?cd?ef')


def test_bounded_loopback_only_and_stops_by_itself(gs200: SCPIServer) -> None:
    with pytest.raises(ValueError, match="loopback"):
        TamperProxy(("10.0.0.1", 5025))
    with pytest.raises(ValueError, match="lifetime"):
        TamperProxy(gs200.port, lifetime=0)
    with pytest.raises(ValueError, match="action"):
        Rule("x", "corrupt")  # type: ignore[arg-type]
    proxy = TamperProxy(gs200.port, lifetime=0.5, max_connections=1).start()
    port = proxy.port
    first = Client(port)
    assert first.ask(b"*IDN?").startswith(b"YOKOGAWA")
    second = Client(port)  # beyond max_connections: closed at once
    with pytest.raises((ConnectionError, OSError)):
        second.ask(b"*IDN?")
    deadline = time.monotonic() + 5.0
    while proxy.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not proxy.running
    with pytest.raises(OSError):
        Client(port).ask(b"*IDN?")
    first.close()
    second.close()
    proxy.stop()
