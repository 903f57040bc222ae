"""SCPI emulator base class: command table, message execution, error queue.

Writing an emulator
-------------------
Subclass :class:`SCPIInstrument`, set the identification class attributes,
and register commands, either with method decorators::

    class MySource(SCPIInstrument):
        model = "SRC100"

        @scpi_set("[SOURce#]:FREQuency[:CW]", nargs=1)
        def _set_freq(self, call: SCPICall) -> None:
            self.state.frequency = call.number(0, low=1e6, high=20e9, name="frequency")
            self.changed()

        @scpi_query("[SOURce#]:FREQuency[:CW]")
        def _get_freq(self, call: SCPICall) -> float:
            return self.state.frequency

or at run time with :meth:`SCPIInstrument.add_command` (``set=``/``query=``
callables taking an :class:`SCPICall`), or for a plain state field with
:meth:`SCPIInstrument.add_setting` (number, bool or choice, with range check
and backend notification).

Handlers receive an :class:`SCPICall` with the numeric header suffixes
(``call.suffixes``; one per ``#`` in the pattern, 1 when omitted) and the
arguments with typed accessors that raise the proper SCPI errors. A query
handler returns the reply value:

- ``str``: sent as is; ``bool``: ``1``/``0``; ``int``/``float``: a number
  (:func:`format_number`); a sequence or numpy array: comma-separated numbers;
- ``bytes``: sent as an IEEE 488.2 definite-length block ``#<n><len><payload>``
  (use :func:`encode_floats` to pack floats with the instrument's byte order).

Execution rules
---------------
- Units of a message run in order; a following header without leading ``:``
  is first tried relative to the previous header's path (SCPI rule), then
  from the root. ``*`` common commands do not change the path.
- Each unit advances :attr:`SCPIInstrument.clock` by
  :attr:`SCPIInstrument.command_latency` (virtual time), then calls
  :meth:`SCPIInstrument.advance_state` (override for ramps and programs).
- Every failure pushes an error into the FIFO error queue (capacity
  :attr:`SCPIInstrument.error_queue_size`; on overflow the newest entry is
  replaced by ``-350,"Queue overflow"``). An unknown header pushes exactly
  ``-113,"Undefined header"``. A failing query contributes **no** text to the
  reply; the replies of the other queries of the message are still joined
  with ``;``. If no query succeeds nothing is sent (the client times out).
- A syntax error aborts the rest of the message (earlier units have run).
- Handler exceptions other than :class:`SCPIError` become ``-200`` errors and
  are logged.

Fault injection
---------------
Every instrument owns a :class:`~labnr.sim.instruments.fault.FaultInjector`
(``instrument.faults``) and understands ``SIMulation:FAULt:DROP <n>``,
``:LATency <s>``, ``:FREeze [<s>]``, ``:MALFormed <n>``,
``:ERRor <code>,"<msg>"``, ``:NAN <n>`` and ``:CLEar``. NaN hook: a query
handler returning a float/complex numpy array gets NaN injected automatically
when a NaN fault is pending; a handler producing ``bytes`` itself must call
:meth:`SCPIInstrument.take_nan` once per data reply and, if True, apply
:func:`inject_nan` to its data before encoding.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from labnr.sim.clock import VirtualClock
from labnr.sim.instruments.backend import LabBackend
from labnr.sim.instruments.fault import FaultInjector
from labnr.sim.instruments.scpi_call import (
    HeaderPattern,
    SCPICall,
    encode_floats,
    inject_nan,
    scpi_query,
    scpi_set,
)
from labnr.sim.instruments.scpi_common import CommonCommandsMixin
from labnr.sim.instruments.scpi_settings import SettingsMixin
from labnr.sim.instruments.scpi_syntax import (
    SCPI_ERROR_MESSAGES,
    Argument,
    ProgramUnit,
    QuotedString,
    SCPIError,
    decode_block,
    encode_block,
    format_number,
    iter_program_units,
    mnemonic_forms,
    parse_bool,
    parse_choice,
    parse_int,
    parse_number,
)

__all__ = [
    "SCPI_ERROR_MESSAGES",
    "Argument",
    "FaultInjector",
    "HeaderPattern",
    "QuotedString",
    "SCPICall",
    "SCPIError",
    "SCPIInstrument",
    "decode_block",
    "encode_block",
    "encode_floats",
    "format_number",
    "inject_nan",
    "mnemonic_forms",
    "parse_bool",
    "parse_choice",
    "parse_int",
    "parse_number",
    "scpi_query",
    "scpi_set",
]

log = logging.getLogger(__name__)

SetHandler = Callable[["SCPICall"], None]
QueryHandler = Callable[["SCPICall"], Any]


@dataclass
class _Entry:
    pattern: HeaderPattern
    set: SetHandler | None = None
    query: QueryHandler | None = None
    nargs: tuple[int, int] | None = None


class SCPIInstrument(CommonCommandsMixin, SettingsMixin):
    """Base class of the SCPI emulators.

    Parameters
    ----------
    name : str
        Instrument name, passed to :meth:`LabBackend.notify`.
    backend : LabBackend, optional
        The simulated lab. When None (unit tests) the instrument runs its own
        :class:`VirtualClock` and notifies nobody.

    Attributes
    ----------
    name : str
    backend : LabBackend or None
    clock : VirtualClock
        ``backend.clock``, or a private clock without backend.
    faults : FaultInjector
        Pending faults; also ``server.faults``.
    lock : threading.RLock
        Held while a message executes; hold it to read state consistently
        from another thread.
    """

    #: Virtual time each command takes, s.
    command_latency: ClassVar[float] = 1e-3

    def __init__(self, name: str, backend: LabBackend | None = None) -> None:
        self.name = name
        self.backend = backend
        self.clock: VirtualClock = backend.clock if backend is not None else VirtualClock()
        self.lock = threading.RLock()
        self.faults = FaultInjector(error_sink=self.push_error)
        self._init_status()
        self._entries: dict[tuple, _Entry] = {}
        self._lookup_cache: dict[tuple[str, ...], tuple[_Entry, tuple[int, ...]] | None] = {}
        self._register_decorated()

    # ------------------------------------------------------------------ registry

    def add_command(
        self,
        pattern: str,
        set: SetHandler | None = None,  # noqa: A002 - the SCPI vocabulary
        query: QueryHandler | None = None,
        nargs: int | tuple[int, int] | None = None,
    ) -> None:
        """Register (or override) the handlers of a header pattern.

        Parameters
        ----------
        pattern : str
            SCPI header pattern, e.g. ``"SENSe#:FREQuency:STARt"``.
        set : callable, optional
            ``set(call) -> None`` for the command form.
        query : callable, optional
            ``query(call) -> reply`` for the ``?`` form (see the module doc
            for reply types).
        nargs : int or (int, int), optional
            Argument count of the command form, checked before ``set`` runs.

        Notes
        -----
        Registering a pattern equal to an existing one (same nodes) replaces
        only the handlers given, so subclasses can override ``*IDN?`` alone.
        A form without handler answers -113 "Undefined header".
        """
        compiled = HeaderPattern(pattern)
        entry = self._entries.get(compiled.key)
        if entry is None:
            entry = self._entries[compiled.key] = _Entry(compiled)
        if set is not None:
            entry.set = set
        if query is not None:
            entry.query = query
        if nargs is not None:
            entry.nargs = (nargs, nargs) if isinstance(nargs, int) else tuple(nargs)
        self._lookup_cache.clear()

    def _register_decorated(self) -> None:
        seen: set[str] = set()
        for klass in reversed(type(self).__mro__):
            for attr, member in vars(klass).items():
                if attr in seen or not hasattr(member, "_scpi_commands"):
                    continue
                seen.add(attr)
                bound = getattr(self, attr)
                for pattern, kind, nargs in getattr(bound, "_scpi_commands", []):
                    handlers = {kind: bound}
                    self.add_command(pattern, nargs=nargs, **handlers)

    def _lookup(self, tokens: tuple[str, ...]) -> tuple[_Entry, tuple[int, ...]] | None:
        if tokens in self._lookup_cache:
            return self._lookup_cache[tokens]
        found = None
        for entry in self._entries.values():
            suffixes = entry.pattern.match(tokens)
            if suffixes is not None:
                found = (entry, suffixes)
                break
        if len(self._lookup_cache) < 4096:
            self._lookup_cache[tokens] = found
        return found

    # ----------------------------------------------------------------- execution

    def process(self, message: bytes | str) -> bytes | None:
        """Execute one program message and return the reply.

        Parameters
        ----------
        message : bytes or str
            The message, with or without terminating newline.

        Returns
        -------
        bytes or None
            Replies of the successful queries joined with ``;`` and terminated
            by ``\\n`` (binary replies as blocks), or None if there is nothing
            to send.
        """
        data = message.encode("latin-1") if isinstance(message, str) else bytes(message)
        replies: list[bytes] = []
        with self.lock:
            path: tuple[str, ...] = ()
            try:
                for unit in iter_program_units(data):
                    path = self._execute(unit, path, replies)
            except SCPIError as error:  # syntax: the rest of the message is discarded
                self.push_error(error.code, error.message)
        if not replies:
            return None
        return b";".join(replies) + b"\n"

    def ask(self, message: str) -> str:
        """In-process query helper: process ``message`` and return the reply text."""
        reply = self.process(message)
        return "" if reply is None else reply.decode("latin-1").removesuffix("\n")

    def write(self, message: str) -> None:
        """In-process command helper: process ``message``, discarding any reply."""
        self.process(message)

    def advance_state(self) -> None:
        """Bring time-dependent state (ramps, programs) up to ``clock.now``.

        Called before each command executes; the default does nothing.
        """

    def _resolve(
        self, header: str, path: tuple[str, ...]
    ) -> tuple[tuple[str, ...], tuple[_Entry, tuple[int, ...]] | None]:
        upper = header.upper()
        if upper.startswith("*"):
            return (upper,), self._lookup((upper,))
        tokens = tuple(upper.lstrip(":").split(":"))
        if path and not upper.startswith(":"):
            relative = path + tokens
            found = self._lookup(relative)
            if found is not None:
                return relative, found
        return tokens, self._lookup(tokens)

    def _execute(
        self, unit: ProgramUnit, path: tuple[str, ...], replies: list[bytes]
    ) -> tuple[str, ...]:
        self.clock.advance(self.command_latency)
        self.advance_state()
        tokens, found = self._resolve(unit.header, path)
        common = tokens[0].startswith("*")
        new_path = path if common else tokens[:-1]
        handler = None
        if found is not None:
            entry, suffixes = found
            handler = entry.query if unit.query else entry.set
        if handler is None:
            log.debug("%s: undefined header %r", self.name, unit.header)
            self.push_error(-113, SCPI_ERROR_MESSAGES[-113])
            return new_path
        call = SCPICall(self, ":".join(tokens), suffixes, unit.args, unit.query)
        try:
            if not unit.query and entry.nargs is not None:
                call.expect_args(*entry.nargs)
            result = handler(call)
            if unit.query:
                replies.append(self._format_reply(result, call))
        except SCPIError as error:
            self.push_error(error.code, error.message)
        except Exception as error:  # a bug in a handler must not kill the server
            log.exception("%s: %s failed", self.name, call.header)
            self.push_error(-200, f"{call.header}: {type(error).__name__}: {error}")
        return new_path

    def _format_reply(self, value: Any, call: SCPICall) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return encode_block(bytes(value))
        if isinstance(value, str):
            return value.encode("latin-1")
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "fc" and self.take_nan():
                value = inject_nan(value)
            if value.dtype.kind == "c":
                value = np.column_stack([value.real, value.imag]).reshape(-1)
            return ",".join(format_number(v) for v in value.reshape(-1).tolist()).encode()
        if isinstance(value, bool | int | float | np.bool_ | np.number):
            return format_number(value.item() if isinstance(value, np.generic) else value).encode()
        if isinstance(value, list | tuple):
            return ",".join(v if isinstance(v, str) else format_number(v) for v in value).encode(
                "latin-1"
            )
        raise SCPIError(-200, f"{call.header}: query produced {type(value).__name__}")
