"""Fixtures shared by the emulator tests: a recording fake lab and raw VISA sessions."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
import pyvisa

from labnr.sim.clock import VirtualClock
from labnr.sim.instruments.backend import VNARequest

Responder = Callable[[VNARequest], dict]


class RecordingBackend:
    """A minimal LabBackend: its own clock, a log of notifications and VNA requests.

    Parameters
    ----------
    start : float
        Initial virtual time, s.
    responder : callable, optional
        Answers ``vna_acquire`` (the fake device); without one a VNA request fails.
    """

    def __init__(self, start: float = 0.0, responder: Responder | None = None) -> None:
        self.clock = VirtualClock(start=start)
        self.notified: list[str] = []
        self.requests: list[VNARequest] = []
        self.responder = responder

    def vna_acquire(self, request: VNARequest) -> dict:
        if self.responder is None:
            raise AssertionError("this fake lab has no VNA device")
        self.requests.append(request)
        self.clock.advance(request.sweep_time)
        return self.responder(request)

    def notify(self, instrument: str) -> None:
        self.notified.append(instrument)


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


def open_raw_session(
    rm: pyvisa.ResourceManager, address: str, timeout_ms: int = 2000
) -> pyvisa.resources.MessageBasedResource:
    """A pyvisa-py socket session with newline termination and TCP_NODELAY.

    pyvisa-py's SOCKET session ignores the VISA no-delay attribute, so it is set
    on the socket directly (the server also acknowledges at once).
    """
    handle = rm.open_resource(
        address, read_termination="\n", write_termination="\n", timeout=timeout_ms
    )
    rm.visalib.sessions[handle.session].interface.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )
    return handle


@pytest.fixture
def raw_visa() -> Iterator[Callable[[str], pyvisa.resources.MessageBasedResource]]:
    """Factory of raw sessions to a served emulator, all closed afterwards."""
    rm = pyvisa.ResourceManager("@py")
    handles: list[pyvisa.resources.MessageBasedResource] = []

    def open_(address: str) -> pyvisa.resources.MessageBasedResource:
        handles.append(open_raw_session(rm, address))
        return handles[-1]

    yield open_
    for h in handles:
        h.close()
    rm.close()
