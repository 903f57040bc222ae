"""TCP server that exposes an emulated instrument as a raw SCPI socket.

A real QCoDeS driver connects with pyvisa-py to
``TCPIP::127.0.0.1::<port>::SOCKET`` (``read_termination='\\n'``,
``write_termination='\\n'``) exactly as to a LAN instrument's port 5025.

- Binds to IPv4 loopback only (``ValueError`` for any other host).
- One daemon thread per client; all clients share the instrument, whose
  ``lock`` serialises execution.
- Messages end with ``\\n``, except inside a definite-length block
  ``#<n><len><bytes>`` (read by its length) or a quoted string.
- Each reply is written with one ``sendall`` on a ``TCP_NODELAY`` socket.
- ``server.faults`` (the instrument's :class:`FaultInjector`) injects
  transport faults. A message whose first header is in the ``SIMulation``
  namespace bypasses every fault, so faults can be set and cleared over the
  wire even while the server is frozen.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import selectors
import socket
import struct
import threading
from types import TracebackType

from labnr.sim.instruments.fault import FaultInjector
from labnr.sim.instruments.scpi import SCPIInstrument

__all__ = ["FaultInjector", "MessageFramer", "SCPIServer", "corrupt_reply"]

log = logging.getLogger(__name__)

_SPECIAL_RE = re.compile(rb"[\n#\"']")
_QUOTE_END_RE = {0x22: re.compile(rb'[\n"]'), 0x27: re.compile(rb"[\n']")}
_RECV_SIZE = 1 << 20


class MessageFramer:
    """Split a byte stream into newline-terminated SCPI messages.

    A ``\\n`` inside a definite-length block does not end the message (the
    block is skipped by its announced length); a ``#`` inside a quoted string
    does not start a block. Scanning resumes where it stopped, so a large
    block arriving in many chunks is not re-scanned.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._quote: int | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete messages, without terminator."""
        self._buf += data
        messages = []
        while (message := self._next()) is not None:
            messages.append(message)
        return messages

    @property
    def pending(self) -> int:
        """Number of buffered bytes not yet part of a complete message."""
        return len(self._buf)

    def _next(self) -> bytes | None:
        buf = self._buf
        i = self._pos
        while True:
            if self._quote is not None:  # a newline also ends an (unterminated) string
                match = _QUOTE_END_RE[self._quote].search(buf, i)
                if match is None:
                    self._pos = len(buf)
                    return None
                if buf[match.start()] == self._quote:
                    self._quote = None
                    i = match.end()
                    continue
                self._quote = None
                i = match.start()
            match = _SPECIAL_RE.search(buf, i)
            if match is None:
                self._pos = len(buf)
                return None
            j = match.start()
            char = buf[j]
            if char == 0x0A:
                message = bytes(buf[:j])
                del buf[: j + 1]
                self._pos = 0
                return message
            if char != 0x23:  # a quote
                self._quote = char
                i = j + 1
                continue
            skip = self._block_end(j)
            if skip is None:
                self._pos = j  # wait for the rest of the block header or payload
                return None
            i = skip

    def _block_end(self, j: int) -> int | None:
        """End index of the block starting at ``j``; None if incomplete."""
        buf = self._buf
        if j + 1 >= len(buf):
            return None
        ndigits = buf[j + 1] - 0x30
        if not 1 <= ndigits <= 9:  # '#0' (until newline), '#H1F' etc.: ordinary text
            return j + 1
        digits = bytes(buf[j + 2 : j + 2 + ndigits])
        if len(digits) < ndigits:
            return None
        if not digits.isdigit():
            return j + 1
        end = j + 2 + ndigits + int(digits)
        return end if end <= len(buf) else None


def corrupt_reply(reply: bytes) -> bytes:
    """Corrupt a reply for the malformed-reply fault.

    A reply starting with a definite-length block gets a length header that
    announces half of the payload (all bytes are still sent); a text reply is
    cut to half its length and ends in ``"~?"``.
    """
    match = re.match(rb"#([1-9])", reply)
    if match is not None:
        ndigits = int(match.group(1))
        length = int(reply[2 : 2 + ndigits])
        lie = str(length // 2).encode().rjust(ndigits, b"0")
        return b"#" + str(len(lie)).encode() + lie + reply[2 + ndigits :]
    text = reply.rstrip(b"\n")
    return text[: len(text) // 2] + b"~?\n"


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def _abort(conn: socket.socket) -> None:
    """Make the connection close abortively (RST), waking its reader thread.

    With ``SO_LINGER`` 0 the final ``close`` resets the connection, so the
    client sees a connection error at once instead of waiting for its timeout
    (pyvisa-py treats a clean EOF as "no data yet").
    """
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.shutdown(socket.SHUT_RD)
    except OSError:
        pass


def _is_simulation_message(message: bytes) -> bool:
    return message.lstrip(b" \t:").upper().startswith(b"SIM")


def _check_loopback(host: str) -> str:
    resolved = "127.0.0.1" if host == "localhost" else host
    try:
        address = ipaddress.ip_address(resolved)
    except ValueError:
        raise ValueError(
            f"SCPIServer: host={host!r} is not allowed; the virtual lab binds to IPv4 "
            "loopback only (127.0.0.1)"
        ) from None
    if address.version != 4 or not address.is_loopback:
        raise ValueError(
            f"SCPIServer: host={host!r} is not allowed; the virtual lab binds to IPv4 "
            "loopback only (127.0.0.1)"
        )
    return resolved


class SCPIServer:
    """Serve an :class:`SCPIInstrument` over TCP on the loopback interface.

    Parameters
    ----------
    instrument : SCPIInstrument
        The emulator to serve.
    host : str
        An IPv4 loopback address (``"127.0.0.1"`` or ``"localhost"``); any
        other host raises ValueError.
    port : int
        TCP port; 0 (default) picks a free ephemeral port.

    Examples
    --------
    >>> with SCPIServer(GS200Emulator("flux")) as server:  # doctest: +SKIP
    ...     rm.open_resource(server.address, read_termination="\\n")
    """

    def __init__(self, instrument: SCPIInstrument, host: str = "127.0.0.1", port: int = 0) -> None:
        self.instrument = instrument
        self.host = _check_loopback(host)
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"SCPIServer: port={port!r} must be in 0..65535")
        self._requested_port = int(port)
        self._listener: socket.socket | None = None
        self._wakeup_r: socket.socket | None = None
        self._wakeup_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._clients: dict[socket.socket, threading.Thread] = {}
        self._aborted: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def faults(self) -> FaultInjector:
        """The instrument's fault injector."""
        return self.instrument.faults

    @property
    def port(self) -> int:
        """Bound TCP port (after :meth:`start`)."""
        if self._listener is None:
            raise RuntimeError("SCPIServer.port: the server is not started")
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> str:
        """VISA resource string ``TCPIP::127.0.0.1::<port>::SOCKET``."""
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._started and not self._stopping.is_set()

    def start(self) -> SCPIServer:
        """Bind, listen and start accepting clients; returns self."""
        if self._started:
            raise RuntimeError("SCPIServer.start: already started (servers are not restartable)")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self._requested_port))
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._started = True
        self.faults.add_drop_listener(self._drop_all_clients)
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"scpi-accept-{self.instrument.name}", daemon=True
        )
        self._accept_thread.start()
        log.debug("serving %s on %s", self.instrument.name, self.address)
        return self

    def stop(self) -> None:
        """Stop accepting, close every client connection and join threads (idempotent)."""
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        self.faults.remove_drop_listener(self._drop_all_clients)
        assert self._wakeup_w is not None
        try:
            self._wakeup_w.send(b"x")
        except OSError:
            pass
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5.0)
        self._drop_all_clients()
        with self._clients_lock:
            threads = list(self._clients.values())
        for thread in threads:
            thread.join(timeout=5.0)
        for sock in (self._listener, self._wakeup_r, self._wakeup_w):
            if sock is not None:
                sock.close()

    def __enter__(self) -> SCPIServer:
        return self.start() if not self._started else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --------------------------------------------------------------- internals

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wakeup_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wakeup_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wakeup_r or self._stopping.is_set():
                        return
                    try:
                        conn, peer = self._listener.accept()
                    except OSError:
                        continue
                    self._start_client(conn, peer)

    def _start_client(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(
            target=self._serve_client,
            args=(conn,),
            name=f"scpi-{self.instrument.name}-{peer[1]}",
            daemon=True,
        )
        with self._clients_lock:
            self._clients[conn] = thread
        thread.start()

    def _drop_all_clients(self) -> None:
        with self._clients_lock:
            connections = list(self._clients)
        with self._clients_lock:
            self._aborted.update(connections)
        for conn in connections:
            _abort(conn)

    def _serve_client(self, conn: socket.socket) -> None:
        framer = MessageFramer()
        try:
            while not self._stopping.is_set():
                data = conn.recv(_RECV_SIZE)
                if not data:
                    break
                if _QUICKACK is not None:
                    # Clients (pyvisa-py, QCoDeS) do not set TCP_NODELAY: without an
                    # immediate ACK every write-then-query waits ~40 ms (delayed ACK).
                    # Linux resets QUICKACK after use, so set it after every recv.
                    conn.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                for message in framer.feed(data):
                    if conn in self._aborted or not self._handle(conn, message):
                        return
        except OSError:
            pass
        finally:
            with self._clients_lock:
                self._clients.pop(conn, None)
                self._aborted.discard(conn)
            conn.close()

    def _handle(self, conn: socket.socket, message: bytes) -> bool:
        """Execute one message; False if the connection must close."""
        faults = self.faults
        bypass = _is_simulation_message(message)
        if not bypass:
            if faults.frozen:
                log.debug("%s frozen: discarding %r", self.instrument.name, message[:80])
                return True
            if faults.take_drop():
                log.debug("%s: dropping connection (fault)", self.instrument.name)
                _abort(conn)
                return False
        reply = self.instrument.process(message)
        if reply is None:
            return True
        if not bypass:
            latency = faults.latency
            if latency > 0 and self._stopping.wait(latency):
                return False
            if faults.take_malformed():
                reply = corrupt_reply(reply)
        try:
            conn.sendall(reply)
        except OSError:
            return False
        return True
