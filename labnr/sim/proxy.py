"""A tampering TCP proxy between instrument drivers and the emulated instruments (tests only).

It sits on 127.0.0.1 in front of one emulator's SCPI socket and forwards every
message both ways, byte for byte, unless a rule says otherwise. Rules act on
the **reply to a query** whose text matches a regular expression:

- ``rewrite``: replace the reply (fixed bytes, or a function of the reply),
  e.g. a GS200 whose level reads back 50 uA off;
- ``delay``: hold the reply for some seconds (a reply arriving after the
  client's timeout answers its next query: a stale reply);
- ``drop``: swallow the reply (the client times out), e.g. a lost data point.

Replies keep their order on a connection, as on a real wire. Every message is
logged with its ``time.monotonic()`` (system-wide on Linux), so a harness
can tell from outside which instrument was written to first. Only the benchmarks, the tests and
``labnr.sim.cli`` use it::

    with TamperProxy(("127.0.0.1", 50256)) as proxy:
        proxy.rewrite(r":SOUR(CE)?:LEV", offset_reply(50e-6))
        drive(proxy.address)                # 'TCPIP::127.0.0.1::<port>::SOCKET'

The proxy binds and connects to loopback only, accepts at most
``max_connections`` clients at a time and stops by itself after ``lifetime``
seconds.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from labnr.sim.faults import parse_address
from labnr.sim.instruments.server import MessageFramer, _check_loopback

__all__ = ["Event", "Rule", "TamperProxy", "is_query", "offset_reply"]

Action = Literal["rewrite", "delay", "drop"]
Replacement = bytes | str | Callable[[bytes], bytes]

_RECV_SIZE = 1 << 20
#: Bytes of each message kept in the log.
_LOG_CUT = 1000
_BLOCK_RE = re.compile(rb"#[1-9]")
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def is_query(message: bytes) -> bool:
    """Whether a SCPI message holds a query (a ``?`` before any binary block)."""
    match = _BLOCK_RE.search(message)
    head = message if match is None else message[: match.start()]
    return b"?" in head


def offset_reply(delta: float) -> Callable[[bytes], bytes]:
    """A rewrite that adds ``delta`` to a numeric reply (a lying read-back).

    A reply that is not one number is passed on unchanged.
    """

    def rewrite(reply: bytes) -> bytes:
        text = reply.strip()
        try:
            value = float(text)
        except ValueError:
            return reply
        return f"{value + delta:.9E}".encode() + b"\n"

    return rewrite


@dataclass
class Rule:
    """What to do with replies to queries matching ``pattern``.

    Attributes
    ----------
    pattern : str
        Regular expression searched (case-insensitively) in the query message.
    action : {"rewrite", "delay", "drop"}
    value : bytes, str, callable or float
        Replacement (rewrite) or seconds (delay); unused for drop.
    count : int or None
        How many matching replies to act on (None: every one).
    skip : int
        Matching replies to let through untouched first.
    seen, hits : int
        Matching replies seen so far, and those acted on.
    """

    pattern: str
    action: Action
    value: Replacement | float | None = None
    count: int | None = None
    skip: int = 0
    seen: int = 0
    hits: int = 0
    _regex: re.Pattern[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ("rewrite", "delay", "drop"):
            raise ValueError(f"Rule: action={self.action!r}; allowed: rewrite, delay, drop")
        if self.action == "delay" and not (isinstance(self.value, (int, float))
                                           and 0 <= float(self.value) <= 3600):
            raise ValueError(f"Rule: delay value={self.value!r} must be seconds in [0, 3600]")
        if self.action == "rewrite" and not isinstance(self.value, (bytes, str)) \
                and not callable(self.value):
            raise ValueError(f"Rule: rewrite value={self.value!r} must be bytes, str or callable")
        if self.count is not None and self.count < 0 or self.skip < 0:
            raise ValueError(f"Rule: count={self.count!r}, skip={self.skip!r} must be >= 0")
        self._regex = re.compile(self.pattern.encode(), re.IGNORECASE)

    def take(self, query: bytes) -> bool:
        """Whether this rule acts on the reply to ``query`` (counts it if so)."""
        if not self._regex.search(query):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.count is not None and self.hits >= self.count):
            return False
        self.hits += 1
        return True


@dataclass(frozen=True)
class Event:
    """One logged message.

    Attributes
    ----------
    time : float
        ``time.monotonic()`` when it passed the proxy, s (comparable across
        processes on one Linux machine).
    connection : int
        Connection number (from 1).
    kind : {"query", "write", "reply"}
    text : bytes
        The message, cut to 1000 bytes, without terminator.
    tampered : str or None
        For a reply: the action applied to it.
    query : bytes or None
        For a reply: the query it answers (cut to 1000 bytes).
    """

    time: float
    connection: int
    kind: str
    text: bytes
    tampered: str | None = None
    query: bytes | None = None


class TamperProxy:
    """Forward one emulator's SCPI socket through 127.0.0.1, tampering with replies by rule.

    Parameters
    ----------
    upstream : str, int or (str, int)
        The emulator: VISA socket resource, ``"host:port"``, ``(host, port)`` or
        a port on 127.0.0.1. Loopback only.
    port : int
        Port to listen on (0: ephemeral).
    lifetime : float
        Seconds after :meth:`start` at which the proxy stops by itself.
    max_connections : int
        Clients served at once; more are refused (closed at once).
    log_size : int
        Events kept (the oldest are forgotten).
    """

    def __init__(
        self,
        upstream: str | int | tuple[str, int],
        *,
        port: int = 0,
        lifetime: float = 3600.0,
        max_connections: int = 8,
        log_size: int = 100_000,
    ) -> None:
        host, up_port = parse_address(upstream)
        self.upstream = (_check_loopback(host), up_port)
        if not 0 < lifetime <= 7 * 86400:
            raise ValueError(f"TamperProxy: lifetime={lifetime!r} s must be in (0, 604800]")
        if not 1 <= max_connections <= 64:
            raise ValueError(f"TamperProxy: max_connections={max_connections!r} must be 1..64")
        self.lifetime = float(lifetime)
        self.max_connections = int(max_connections)
        self._requested_port = int(port)
        self._rules: list[Rule] = []
        self._events: deque[Event] = deque(maxlen=int(log_size))
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._active = 0
        self._connections = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """Listening port (after :meth:`start`)."""
        if self._listener is None:
            raise RuntimeError("TamperProxy.port: the proxy is not started")
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> str:
        """VISA resource string of the proxy, ``TCPIP::127.0.0.1::<port>::SOCKET``."""
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (or the end of ``lifetime``)."""
        return self._listener is not None and not self._stopping.is_set()

    def start(self) -> TamperProxy:
        """Listen on 127.0.0.1 and start forwarding; returns self."""
        if self._listener is not None:
            raise RuntimeError("TamperProxy.start: already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._requested_port))
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        deadline = time.monotonic() + self.lifetime
        self._spawn(self._accept_loop, deadline)
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection, join the threads (idempotent)."""
        self._stopping.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(timeout=5.0)
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> TamperProxy:
        return self if self._listener is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()

    # ------------------------------------------------------------------ rules
    def add_rule(self, rule: Rule) -> Rule:
        """Apply ``rule`` to replies from now on (rules are tried in order); returns it."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def rewrite(self, pattern: str, value: Replacement, *, count: int | None = None,
                skip: int = 0) -> Rule:  # fmt: skip
        """Replace replies to queries matching ``pattern`` (bytes, str or ``f(reply)``)."""
        return self.add_rule(Rule(pattern, "rewrite", value, count, skip))

    def delay(self, pattern: str, seconds: float, *, count: int | None = None,
              skip: int = 0) -> Rule:  # fmt: skip
        """Hold replies to queries matching ``pattern`` for ``seconds``."""
        return self.add_rule(Rule(pattern, "delay", float(seconds), count, skip))

    def drop(self, pattern: str, *, count: int | None = None, skip: int = 0) -> Rule:
        """Swallow replies to queries matching ``pattern``."""
        return self.add_rule(Rule(pattern, "drop", None, count, skip))

    def clear_rules(self) -> None:
        """Forward faithfully from now on."""
        with self._lock:
            self._rules.clear()

    def events(self) -> list[Event]:
        """A copy of the logged messages, oldest first."""
        with self._lock:
            return list(self._events)

    # ------------------------------------------------------------------ internals
    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"tamper-proxy-{self.upstream[1]}")
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _log(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def _accept_loop(self, deadline: float) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            if time.monotonic() >= deadline:
                self._stopping.set()
                threading.Thread(target=self.stop, daemon=True).start()
                return
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                full = self._active >= self.max_connections
                if not full:
                    self._active += 1
                    self._connections += 1
                    number = self._connections
            if full:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5.0)
            except OSError:
                client.close()
                with self._lock:
                    self._active -= 1
                continue
            self._start_pair(client, server, number)

    def _start_pair(self, client: socket.socket, server: socket.socket, number: int) -> None:
        for sock in (client, server):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sockets.update((client, server))
        pending: deque[bytes] = deque()
        done = threading.Event()
        self._spawn(self._client_to_server, client, server, number, pending, done)
        self._spawn(self._server_to_client, client, server, number, pending, done)

    def _close_pair(self, client: socket.socket, server: socket.socket, done: threading.Event
                    ) -> None:  # fmt: skip
        first = not done.is_set()
        done.set()
        for sock in (client, server):
            _shutdown(sock)
        if first:
            return
        with self._lock:
            self._sockets.difference_update((client, server))
            self._active -= 1
        client.close()
        server.close()

    def _client_to_server(self, client: socket.socket, server: socket.socket, number: int,
                          pending: deque[bytes], done: threading.Event) -> None:  # fmt: skip
        framer = MessageFramer()
        try:
            while not self._stopping.is_set():
                data = client.recv(_RECV_SIZE)
                if not data:
                    break
                _quickack(client)
                for message in framer.feed(data):
                    query = is_query(message)
                    if query:
                        pending.append(message[:_LOG_CUT])
                    kind = "query" if query else "write"
                    self._log(Event(time.monotonic(), number, kind, message[:_LOG_CUT]))
                    server.sendall(message + b"\n")
        except OSError:
            pass
        finally:
            self._close_pair(client, server, done)

    def _server_to_client(self, client: socket.socket, server: socket.socket, number: int,
                          pending: deque[bytes], done: threading.Event) -> None:  # fmt: skip
        framer = MessageFramer()
        try:
            while not self._stopping.is_set():
                data = server.recv(_RECV_SIZE)
                if not data:
                    break
                _quickack(server)
                for reply in framer.feed(data):
                    query = pending.popleft() if pending else b""
                    out, action = self._tamper(query, reply + b"\n")
                    cut = reply[:_LOG_CUT]
                    self._log(Event(time.monotonic(), number, "reply", cut, action, query))
                    if out is not None:
                        client.sendall(out)
        except OSError:
            pass
        finally:
            self._close_pair(client, server, done)

    def _tamper(self, query: bytes, reply: bytes) -> tuple[bytes | None, str | None]:
        """The reply to send (None: dropped) and the action applied."""
        with self._lock:
            rule = next((r for r in self._rules if r.take(query)), None)
        if rule is None:
            return reply, None
        if rule.action == "drop":
            return None, "drop"
        if rule.action == "delay":
            assert isinstance(rule.value, float)
            self._stopping.wait(rule.value)
            return reply, "delay"
        value = rule.value
        if callable(value):
            new = value(reply)
        else:
            new = value.encode("latin-1") if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]
        return (new if new.endswith(b"\n") else new + b"\n"), "rewrite"


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _quickack(sock: socket.socket) -> None:
    if _QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            pass
