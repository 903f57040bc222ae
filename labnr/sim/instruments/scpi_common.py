"""IEEE 488.2 common commands, the SCPI status model and the fault commands.

:class:`CommonCommandsMixin` is mixed into
:class:`labnr.sim.instruments.scpi.SCPIInstrument`; every emulator therefore
answers ``*IDN?``, ``*RST``, ``*CLS``, ``*OPC[?]``, ``*WAI``, ``*ESR?``,
``*ESE[?]``, ``*SRE[?]``, ``*STB?``, ``*TST?``, ``*OPT?``,
``SYSTem:ERRor[:NEXT]?``, ``SYSTem:ERRor:COUNt?``, ``SYSTem:ERRor:ALL?`` and
the ``SIMulation:FAULt:*`` commands.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, ClassVar

from labnr.sim.instruments.fault import FaultInjector
from labnr.sim.instruments.scpi_call import SCPICall, scpi_query, scpi_set
from labnr.sim.instruments.scpi_syntax import SCPI_ERROR_MESSAGES

if TYPE_CHECKING:
    from labnr.sim.instruments.backend import LabBackend

__all__ = ["CommonCommandsMixin"]

# Standard event status register bits (IEEE 488.2).
ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME, ESR_PON = 1, 4, 8, 16, 32, 128
STB_EAV, STB_MAV, STB_ESB, STB_MSS = 4, 16, 32, 64


class CommonCommandsMixin:
    """Status model (error queue, ESR, STB) and the common/fault command handlers."""

    manufacturer: ClassVar[str] = "LABNR"
    model: ClassVar[str] = "EMULATOR"
    serial: ClassVar[str] = "000000"
    firmware: ClassVar[str] = "0.1"
    #: Reply to ``*OPT?``.
    options: ClassVar[str] = "0"
    #: Capacity of the error queue.
    error_queue_size: ClassVar[int] = 30

    if TYPE_CHECKING:
        name: str
        backend: LabBackend | None
        lock: threading.RLock
        faults: FaultInjector

    def _init_status(self) -> None:
        self._errors: deque[tuple[int, str]] = deque()
        self._esr = ESR_PON
        self._ese = 0
        self._sre = 0

    # ------------------------------------------------------------- status model

    def push_error(self, code: int, message: str) -> None:
        """Append ``code,"message"`` to the error queue and set the ESR bit.

        On overflow the newest entry is replaced by ``-350,"Queue overflow"``.
        """
        with self.lock:
            if len(self._errors) >= self.error_queue_size:
                self._errors[-1] = (-350, SCPI_ERROR_MESSAGES[-350])
            else:
                self._errors.append((int(code), str(message)))
            self._esr |= _esr_bit(code)

    def pop_error(self) -> tuple[int, str]:
        """Remove and return the oldest error, ``(0, "No error")`` if none."""
        with self.lock:
            return self._errors.popleft() if self._errors else (0, SCPI_ERROR_MESSAGES[0])

    @property
    def errors(self) -> list[tuple[int, str]]:
        """Copy of the error queue, oldest first."""
        with self.lock:
            return list(self._errors)

    def clear_status(self) -> None:
        """``*CLS``: empty the error queue and the event status register."""
        with self.lock:
            self._errors.clear()
            self._esr = 0

    def reset(self) -> None:
        """``*RST``: restore the default settings. Override in emulators (and call super)."""

    def changed(self) -> None:
        """Tell the backend that device-visible state changed (``backend.notify``)."""
        if self.backend is not None:
            self.backend.notify(self.name)

    def take_nan(self) -> bool:
        """NaN hook: True if this data reply must contain NaN (consumes the fault)."""
        return self.faults.take_nan()

    @property
    def idn(self) -> str:
        """Reply to ``*IDN?``."""
        return f"{self.manufacturer},{self.model},{self.serial},{self.firmware}"

    def status_byte(self) -> int:
        """``*STB?`` value: EAV (error queue not empty), ESB, MSS."""
        with self.lock:
            stb = STB_EAV if self._errors else 0
            if self._esr & self._ese:
                stb |= STB_ESB
            if stb & self._sre:
                stb |= STB_MSS
            return stb

    # --------------------------------------------------------- common commands

    @scpi_query("*IDN")
    def _q_idn(self, call: SCPICall) -> str:
        return self.idn

    @scpi_set("*RST", nargs=0)
    def _rst(self, call: SCPICall) -> None:
        self.reset()
        self.changed()

    @scpi_set("*CLS", nargs=0)
    def _cls(self, call: SCPICall) -> None:
        self.clear_status()

    @scpi_set("*OPC", nargs=0)
    def _opc(self, call: SCPICall) -> None:
        self._esr |= ESR_OPC

    @scpi_query("*OPC")
    def _q_opc(self, call: SCPICall) -> str:
        return "1"

    @scpi_set("*WAI", nargs=0)
    def _wai(self, call: SCPICall) -> None:
        """Emulators are synchronous: nothing to wait for."""

    @scpi_query("*ESR")
    def _q_esr(self, call: SCPICall) -> int:
        value, self._esr = self._esr, 0
        return value

    @scpi_set("*ESE", nargs=1)
    def _ese_set(self, call: SCPICall) -> None:
        self._ese = call.integer(0, low=0, high=255)

    @scpi_query("*ESE")
    def _q_ese(self, call: SCPICall) -> int:
        return self._ese

    @scpi_set("*SRE", nargs=1)
    def _sre_set(self, call: SCPICall) -> None:
        self._sre = call.integer(0, low=0, high=255)

    @scpi_query("*SRE")
    def _q_sre(self, call: SCPICall) -> int:
        return self._sre

    @scpi_query("*STB")
    def _q_stb(self, call: SCPICall) -> int:
        return self.status_byte()

    @scpi_query("*TST")
    def _q_tst(self, call: SCPICall) -> str:
        return "0"

    @scpi_query("*OPT")
    def _q_opt(self, call: SCPICall) -> str:
        return self.options

    @scpi_query("SYSTem:ERRor[:NEXT]")
    def _q_error(self, call: SCPICall) -> str:
        return _format_error(*self.pop_error())

    @scpi_query("SYSTem:ERRor:COUNt")
    def _q_error_count(self, call: SCPICall) -> int:
        return len(self._errors)

    @scpi_query("SYSTem:ERRor:ALL")
    def _q_error_all(self, call: SCPICall) -> str:
        entries = [self.pop_error() for _ in range(max(1, len(self._errors)))]
        return ",".join(_format_error(code, msg) for code, msg in entries)

    # ------------------------------------------------------------ fault commands

    @scpi_set("SIMulation:FAULt:DROP", nargs=(0, 1))
    def _fault_drop(self, call: SCPICall) -> None:
        count = call.integer(0, low=0, name="messages") if call.nargs else 0
        self.faults.drop_connection(count)

    @scpi_set("SIMulation:FAULt:LATency", nargs=1)
    def _fault_latency(self, call: SCPICall) -> None:
        self.faults.add_latency(call.number(0, low=0.0, high=3600.0, name="latency", unit=" s"))

    @scpi_set("SIMulation:FAULt:FREeze", nargs=(0, 1))
    def _fault_freeze(self, call: SCPICall) -> None:
        seconds = call.number(0, low=0.0, name="duration", unit=" s") if call.nargs else None
        if seconds == 0.0:
            self.faults.unfreeze()
        else:
            self.faults.freeze(None if seconds is None or seconds == float("inf") else seconds)

    @scpi_set("SIMulation:FAULt:MALFormed", nargs=(0, 1))
    def _fault_malformed(self, call: SCPICall) -> None:
        self.faults.malformed_reply(call.integer(0, low=0, name="count") if call.nargs else 1)

    @scpi_set("SIMulation:FAULt:ERRor", nargs=(1, 2))
    def _fault_error(self, call: SCPICall) -> None:
        code = call.integer(0, name="code")
        message = call.string(1) if call.nargs > 1 else SCPI_ERROR_MESSAGES.get(code, "Error")
        self.faults.push_error(code, message)

    @scpi_set("SIMulation:FAULt:NAN", nargs=(0, 1))
    def _fault_nan(self, call: SCPICall) -> None:
        self.faults.nan_data(call.integer(0, low=0, name="count") if call.nargs else 1)

    @scpi_set("SIMulation:FAULt:CLEar", nargs=0)
    def _fault_clear(self, call: SCPICall) -> None:
        self.faults.clear()


def _esr_bit(code: int) -> int:
    if -199 <= code <= -100:
        return ESR_CME
    if -299 <= code <= -200:
        return ESR_EXE
    if -499 <= code <= -400:
        return ESR_QYE
    return ESR_DDE if code != 0 else 0


def _format_error(code: int, message: str) -> str:
    return f'{code},"{message.replace(chr(34), chr(34) * 2)}"'
