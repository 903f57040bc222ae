"""Inject faults into a running emulated instrument from any process.

Sends one ``SIMulation:FAULt:...`` message over a raw TCP socket to the
instrument's SCPI server and waits for the acknowledgement (``*OPC?`` in the
same message, which bypasses all faults). Used by ``labnr sim fault ...``::

    inject_fault("TCPIP::127.0.0.1::5025::SOCKET", "latency", 0.2)
    inject_fault(("127.0.0.1", 5025), "error", (-222, "Data out of range"))
    inject_fault(5025, "clear")
"""

from __future__ import annotations

import math
import re
import socket

__all__ = ["FAULT_KINDS", "inject_fault", "parse_address"]

#: Fault kinds and the ``SIMulation:FAULt`` node each maps to.
FAULT_KINDS: dict[str, str] = {
    "drop": "DROP",
    "latency": "LATency",
    "freeze": "FREeze",
    "malformed": "MALFormed",
    "error": "ERRor",
    "nan": "NAN",
    "clear": "CLEar",
}

_VISA_RE = re.compile(r"^TCPIP\d*::([^:]+)::(\d+)::SOCKET$", re.IGNORECASE)


def parse_address(address: str | int | tuple[str, int]) -> tuple[str, int]:
    """Turn a VISA socket resource, ``"host:port"``, ``(host, port)`` or a port into (host, port).

    Raises
    ------
    ValueError
        If the address cannot be understood.
    """
    if isinstance(address, int):
        return "127.0.0.1", address
    if isinstance(address, tuple):
        return str(address[0]), int(address[1])
    match = _VISA_RE.match(address.strip())
    if match is not None:
        return match.group(1), int(match.group(2))
    host, sep, port = address.strip().rpartition(":")
    if sep and port.isdigit():
        return host or "127.0.0.1", int(port)
    if address.strip().isdigit():
        return "127.0.0.1", int(address)
    raise ValueError(
        f"inject_fault: address {address!r} not understood; use "
        "'TCPIP::127.0.0.1::<port>::SOCKET', 'host:port', (host, port) or a port number"
    )


def _command(kind: str, value: object) -> str:
    if kind not in FAULT_KINDS:
        raise ValueError(f"inject_fault: kind={kind!r}; allowed: {', '.join(FAULT_KINDS)}")
    node = f"SIM:FAUL:{FAULT_KINDS[kind]}"
    if kind == "clear":
        return node
    if kind == "error":
        if isinstance(value, str):
            code_text, _, message = value.partition(",")
            code, message = int(code_text), message.strip().strip('"')
        elif isinstance(value, tuple) and len(value) == 2:
            code, message = int(value[0]), str(value[1])
        else:
            raise ValueError(
                f"inject_fault: error value {value!r} must be (code, message) or 'code,message'"
            )
        return f'{node} {code},"{message.replace(chr(34), chr(34) * 2)}"'
    if value is None:
        if kind in ("freeze", "drop", "malformed", "nan"):
            return node
        raise ValueError(f"inject_fault: kind={kind!r} needs a value")
    number = float(value)  # type: ignore[arg-type]
    if not (number >= 0) or (math.isinf(number) and kind != "freeze"):
        raise ValueError(f"inject_fault: {kind} value {value!r} must be a finite number >= 0")
    if kind in ("latency", "freeze"):
        return node if math.isinf(number) else f"{node} {number!r}"
    if number != int(number):
        raise ValueError(f"inject_fault: {kind} value {value!r} must be an integer")
    return f"{node} {int(number)}"


def inject_fault(
    address: str | int | tuple[str, int],
    kind: str,
    value: object = None,
    timeout: float = 5.0,
) -> None:
    """Inject a fault into the emulator served at ``address``.

    Parameters
    ----------
    address : str, int or (str, int)
        ``"TCPIP::127.0.0.1::<port>::SOCKET"``, ``"host:port"``, ``(host, port)``
        or a port on 127.0.0.1.
    kind : str
        One of :data:`FAULT_KINDS`: ``drop`` (value: messages before the drop,
        0 = drop all connections now), ``latency`` (s before each reply),
        ``freeze`` (s, None = until ``clear``), ``malformed`` (number of
        replies), ``error`` ((code, message) pushed into the error queue),
        ``nan`` (number of data replies), ``clear`` (no value).
    value : object
        See ``kind``.
    timeout : float
        Socket timeout for the acknowledgement, s.

    Raises
    ------
    ValueError
        For an unknown kind or a bad value.
    ConnectionError
        If the server does not acknowledge.
    """
    command = _command(kind, value) + ";*OPC?\n"
    host, port = parse_address(address)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(command.encode("latin-1"))
        reply = b""
        try:
            while not reply.endswith(b"\n"):
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
        except OSError:  # a 'drop 0' resets our own connection: that is the fault
            reply = b""
    if kind == "drop" and not value:
        return
    if reply.strip() != b"1":
        raise ConnectionError(
            f"inject_fault: {host}:{port} did not acknowledge {command.strip()!r} (got {reply!r})"
        )
