"""Raw-socket probes of the served emulators, from outside labnr (the other side of the wire).

These are the harness's own eyes: one short TCP connection per query, straight
to an emulator's port (never through a tampering proxy), so what they report
is what the instrument really does, whatever labnr believes or says. Every
SCPI string of the hostile benchmark lives in this file.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from labnr.sim.proxy import Event

__all__ = [
    "DATA_QUERY",
    "FluxRecord",
    "PumpWatch",
    "flux_record",
    "prepare_flux",
    "pumps_on",
    "query",
]

#: Queries whose reply is VNA trace data (one reply = one measured trace).
DATA_QUERY = r"CALC(ULATE)?\d*:(MEAS(URE)?\d*:)?DATA"
#: A channel's sweep type write (``CW``: a point-read channel, one frequency).
SWEEP_TYPE_WRITE = r"SENS(E)?(?P<chan>\d+):SWE(EP)?:TYPE\s+(?P<kind>\w+)"
#: The channel of a trace query.
DATA_CHANNEL = r"CALC(ULATE)?(?P<chan>\d+)"
#: Queries that read the GS200's level back (the lying read-back cells).
LEVEL_QUERY = r":?SOUR(CE)?:LEV(EL)?(:FIX|:AUTO)?\?"
#: Output-switch messages of a source (the proxy log tells pump-off writes apart).
OUTPUT_WRITE = r"^:?OUTP(UT)?(:STAT(E)?)?\s+(0|OFF)"

#: A VNA port power write and its value (dBm).
POWER_WRITE = (r"SOUR(CE)?\d*:POW(ER)?\d*(:LEV(EL)?)?(:IMM(EDIATE)?)?(:AMPL(ITUDE)?)?"
               r"\s+(?P<dbm>[-+0-9.eE]+)")
#: The conservative VNA stimulus limit for cryogenic work when the config sets none, dBm.
DEFAULT_MAX_VNA_POWER = -10.0


def query(port: int, message: str, timeout: float = 2.0) -> str:
    """Send one query to the emulator on 127.0.0.1:``port``; its reply without terminator."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(message.encode("ascii") + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"probe: 127.0.0.1:{port} closed before {message!r}")
            reply += chunk
    return reply.decode("ascii", "replace").strip()


def pumps_on(ports: dict[str, int]) -> dict[str, bool]:
    """RF output switch of each pump source, read straight from the emulators."""
    return {name: query(port, ":OUTP?") not in ("0", "OFF") for name, port in ports.items()}


def switch_pumps_on(ports: dict[str, int], dbm: float = -20.0) -> None:
    """Harness setup: put every pump source's output on (a crashed run's leftovers)."""
    for port in ports.values():
        query(port, f":SOUR:POW {dbm};:OUTP 1;*OPC?")


@dataclass(frozen=True)
class FluxRecord:
    """What the GS200 emulator did since the harness cleared its record (units A, A/s).

    Attributes
    ----------
    max_jump, max_rate, max_segment, max_program_step : float
        From the emulator's own bounded history (``SIMulation:APPLied?``).
    effective : float
        Output now (0 if switched off).
    output : bool
        Output switch now.
    """

    max_jump: float
    max_rate: float
    max_segment: float
    max_program_step: float
    effective: float
    output: bool

    @property
    def max_step(self) -> float:
        """Largest change the coil saw in one go: a jump, a segment or a program step."""
        return max(self.max_jump, self.max_segment, self.max_program_step)


def flux_record(port: int) -> FluxRecord:
    """Read the GS200 emulator's history maxima and output state."""
    values = [float(v) for v in query(port, "SIM:APPL?").split(",")]
    output = query(port, ":OUTP?") not in ("0", "OFF")
    return FluxRecord(*values[:5], output=output)


def prepare_flux(port: int, level: float) -> None:
    """Harness setup: current mode, 1 mA range, ``level`` A with the output on; clear the record.

    This is the state a previous run left the coil in; labnr must carry on from
    it without a jump and without switching it off.
    """
    query(port, ":OUTP 0;:SOUR:FUNC CURR;:SOUR:RANG 1e-3;*OPC?")
    query(port, f":SOUR:LEV {level:.9E};:OUTP 1;*OPC?")
    query(port, "SIM:APPL:CLE;*OPC?")


def identities(ports: Iterable[int]) -> list[str]:
    """``*IDN?`` of each port (to confirm a swapped station really swaps instruments)."""
    return [query(p, "*IDN?") for p in ports]


@dataclass
class PumpWatch:
    """Poll the pump outputs in a thread; remember when they were all off.

    Attributes
    ----------
    samples : list of (float, bool)
        ``(time.monotonic(), any pump on)`` per poll.
    states : list of dict
        Each pump's output at each poll (None: it did not answer).
    """

    ports: dict[str, int]
    period: float = 0.05
    samples: list[tuple[float, bool]] = field(default_factory=list)
    states: list[dict[str, bool | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> PumpWatch:
        """Start polling."""
        self._thread = threading.Thread(target=self._run, daemon=True, name="pump-watch")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        deadline = time.monotonic() + 600.0  # bounded whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            state: dict[str, bool | None] = {}
            for name, port in self.ports.items():
                try:
                    state[name] = query(port, ":OUTP?") not in ("0", "OFF")
                except OSError:
                    state[name] = None  # an emulator that does not answer is not confirmed off
            self.states.append(state)
            self.samples.append((time.monotonic(), any(v is not False for v in state.values())))
            self._stop.wait(self.period)

    def first_off_after(self, t: float) -> float | None:
        """First time >= ``t`` at which every pump read off (None: never)."""
        return next((s for s, on in self.samples if s >= t and not on), None)

    def pump_off_at(self, name: str, t: float) -> bool:
        """Whether pump ``name`` read off at the last poll before ``t``."""
        last = [st for (s, _), st in zip(self.samples, self.states, strict=True) if s <= t]
        return bool(last) and last[-1].get(name) is False

    def pump_first_off(self, name: str, t: float) -> float | None:
        """First poll at or after ``t`` at which pump ``name`` read off."""
        return next((s for (s, _), st in zip(self.samples, self.states, strict=True)
                     if s >= t and st.get(name) is False), None)  # fmt: skip

    def on_after(self, t: float) -> bool:
        """Whether a pump read on at any poll at or after ``t``."""
        return any(on for s, on in self.samples if s >= t)

    def on_at_end(self) -> bool:
        """Whether a pump was on at the last poll."""
        return bool(self.samples) and self.samples[-1][1]


def max_power_written(events: Iterable[Event]) -> float | None:
    """Largest stimulus power written to the VNA (from its proxy's log), dBm; None if none."""
    regex = re.compile(POWER_WRITE.encode(), re.IGNORECASE)
    values = []
    for e in events:
        if e.kind != "write":
            continue
        for unit in e.text.split(b";"):
            match = regex.search(unit)
            if match is not None:
                try:
                    values.append(float(match.group("dbm")))
                except ValueError:
                    values.append(float("inf"))  # a power labnr sent that we cannot read
    return max(values, default=None)
