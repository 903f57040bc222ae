"""Table-driven registration of simple settings (one state field per command).

Mixed into :class:`labnr.sim.instruments.scpi.SCPIInstrument`; use it for the
many commands that only store a value::

    self.add_number_setting("[SOURce]:PULM:PERiod", self.state, "pulse_period",
                            low=100e-9, high=100.0, unit=" s")
    self.add_choice_setting("[SOURce]:ROSCillator:SOURce", self.state, "ref_source",
                            ("INTernal", "EXTernal"))

``target`` is the object holding the field, or a callable receiving the
header's numeric suffixes and returning that object (per-channel state:
``lambda s: self.state.channels[s[0] - 1]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from labnr.sim.instruments.scpi_syntax import SCPIError, mnemonic_forms

if TYPE_CHECKING:
    from labnr.sim.instruments.scpi import SCPICall

Target = Any | Callable[[tuple[int, ...]], Any]


class SettingsMixin:
    """Helpers registering setter/query pairs that store one attribute."""

    if TYPE_CHECKING:

        def add_command(
            self,
            pattern: str,
            set: Any = None,
            query: Any = None,  # noqa: A002
            nargs: int | tuple[int, int] | None = None,
        ) -> None: ...

        def changed(self) -> None: ...

    def add_setting(
        self,
        pattern: str,
        target: Target,
        attr: str,
        parse: Callable[[SCPICall], Any],
        reply: Callable[[Any], Any] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """Register a command storing ``parse(call)`` in ``target.attr`` and its query.

        Parameters
        ----------
        pattern : str
            SCPI header pattern.
        target : object or callable
            Holder of the attribute, or ``f(suffixes) -> holder``.
        attr : str
            Attribute name.
        parse : callable
            ``parse(call) -> value``; raises :class:`SCPIError` for bad input.
        reply : callable, optional
            Converts the stored value for the query reply (default: as is).
        on_change : callable, optional
            Called after the value changed, instead of ``self.changed()``
            (which notifies the backend).
        """

        def holder(call: SCPICall) -> Any:
            if callable(target) and not hasattr(target, attr):
                try:
                    return target(call.suffixes)
                except (IndexError, KeyError):
                    raise SCPIError(-114, f"{call.header}: suffix {call.suffixes}") from None
            return target

        def set_value(call: SCPICall) -> None:
            value = parse(call)
            obj = holder(call)
            if getattr(obj, attr) != value:
                setattr(obj, attr, value)
                (on_change or self.changed)()

        def get_value(call: SCPICall) -> Any:
            value = getattr(holder(call), attr)
            return reply(value) if reply is not None else value

        self.add_command(pattern, set=set_value, query=get_value, nargs=1)

    def add_number_setting(
        self,
        pattern: str,
        target: Target,
        attr: str,
        *,
        low: float,
        high: float,
        unit: str = "",
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """Register a float setting limited to ``[low, high]`` (else -222, value kept)."""
        self.add_setting(
            pattern,
            target,
            attr,
            lambda call: call.number(0, low=low, high=high, name=attr, unit=unit),
            on_change=on_change,
        )

    def add_integer_setting(
        self,
        pattern: str,
        target: Target,
        attr: str,
        *,
        low: int,
        high: int,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """Register an integer setting limited to ``[low, high]``."""
        self.add_setting(
            pattern,
            target,
            attr,
            lambda call: call.integer(0, low=low, high=high, name=attr),
            on_change=on_change,
        )

    def add_bool_setting(
        self,
        pattern: str,
        target: Target,
        attr: str,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """Register an ``ON|OFF|1|0`` setting; the query answers ``1``/``0``."""
        self.add_setting(
            pattern, target, attr, lambda call: call.boolean(0, name=attr), on_change=on_change
        )

    def add_choice_setting(
        self,
        pattern: str,
        target: Target,
        attr: str,
        choices: Sequence[str],
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """Register an enumerated setting.

        The value stored (and answered by the query) is the short form of the
        matching mnemonic, upper case: ``"INTernal"`` is stored as ``"INT"``,
        as SCPI instruments answer.
        """
        self.add_setting(
            pattern,
            target,
            attr,
            lambda call: mnemonic_forms(call.choice(0, choices, name=attr))[0],
            on_change=on_change,
        )
