"""Flux bias through a DC current source that can never jump.

:class:`FluxBias` is a QCoDeS instrument that turns a flux request in units of
the flux quantum into a coil current and moves the source there by a ramp
whose rate and step never exceed the configured limits. It drives the
hardware through the small :class:`CurrentSource` interface, so any source
that can ramp safely plugs in; :mod:`labnr.drivers.flux_gs200` provides the
Yokogawa GS200 adapter (and :class:`~labnr.drivers.flux_gs200.GS200FluxBias`,
the class a station file names).

Safety policy
-------------
- **Connect** only reads: the level is never written, the output never
  switched, the source mode and range never changed.
- **Close** only closes the connection (and the source it owns); the output
  and its level stay as they are, so the flux is held.
- **Output on** happens only from output off and only at 0 A: the source is
  put in current mode with a range covering the limits, its level is set to
  0 while the output is off (no current flows), then the output is switched
  on (0 A to 0 A). Setting a current or flux with the output off raises.
- **Output off** first ramps to 0 A, then switches the output off; the
  source refuses to switch off unless the level reads back 0 A.
- **Every level change** is a verified ramp by :meth:`CurrentSource.ramp`
  (:mod:`labnr.drivers.flux_ramp`): planned from a level read back twice
  (until two reads agree within the resolution), refused with nothing written
  if that level is ``max_step`` or more from what labnr last set
  (:meth:`FluxBias.expect_current` declares it for a fresh connection),
  breakpoints at most ``max_step`` apart and a slope of at most ``ramp_rate``
  on the instrument's own timeline, each segment read back before the next.
- **Ctrl-C during a ramp** (or any error while it runs) stops the ramp where
  it is: the source holds its present level, the flux is held, and the
  exception propagates. The next request ramps from the held level.
- **Resolution**: ``max_step`` (and ``ramp_rate`` times the source's longest
  step time) must be at least twice the level resolution of the current
  range the source uses, or the flux bias refuses to be built.
- **Limits** (``current_limits`` from config, which must contain 0 A) are
  checked by the parameters' validators before any command is sent; the
  message names the value, the allowed range, the parameter and the
  instrument. ``ramp_rate`` and ``max_step`` can be lowered at run time but
  never raised above their configured values.
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from qcodes.instrument import Instrument
from qcodes.parameters import Parameter
from qcodes.validators import Bool, Validator

from labnr.drivers.flux_ramp import CurrentSource, LevelMismatch, RampPlan, plan_ramp

if TYPE_CHECKING:
    from qcodes.instrument import InstrumentBaseKWArgs
    from typing_extensions import Unpack

__all__ = ["CurrentSource", "FluxBias", "LevelMismatch", "RampPlan", "plan_ramp"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- validators


def _is_number(value: object) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _Interval(Validator[float]):
    """A closed interval whose bounds may change (flux limits follow the calibration)."""

    is_numeric = True

    def __init__(self, bounds: Callable[[], tuple[float, float]], unit: str, origin: str) -> None:
        self._bounds = bounds
        self._unit = unit
        self._origin = origin

    @property
    def _valid_values(self) -> tuple[float, ...]:  # type: ignore[override]
        return (sum(self._bounds()) / 2,)

    def validate(self, value: float, context: str = "") -> None:
        low, high = self._bounds()
        if not _is_number(value):
            raise TypeError(f"{value!r} is not a number; {context}")
        if not low <= float(value) <= high:  # also rejects NaN
            raise ValueError(
                f"{value!r} {self._unit} is outside the allowed range [{low:.6g}, {high:.6g}] "
                f"{self._unit} ({self._origin}); {context}"
            )

    def __repr__(self) -> str:
        low, high = self._bounds()
        return f"<Interval [{low:.6g}, {high:.6g}] {self._unit}>"


class _NonZero(Validator[float]):
    """A finite, non-zero number with ``|value| <= bound``."""

    is_numeric = True

    def __init__(self, bound: float, unit: str) -> None:
        self._bound = bound
        self._unit = unit
        self._valid_values = (bound / 2,)

    def validate(self, value: float, context: str = "") -> None:
        if not _is_number(value):
            raise TypeError(f"{value!r} is not a number; {context}")
        if not 0 < abs(float(value)) <= self._bound:
            raise ValueError(
                f"{value!r} {self._unit} is not allowed: it must be non-zero with "
                f"|value| <= {self._bound:g} {self._unit}; {context}"
            )


# ---------------------------------------------------------------------- instrument


class FluxBias(Instrument):
    """Flux bias of a device through a coil driven by a :class:`CurrentSource`.

    .. math:: \\Phi / \\Phi_0 = (I - I_{offset}) / I_{\\Phi_0}

    Parameters
    ----------
    name : str
        Instrument name.
    source : CurrentSource
        The current source adapter.
    current_per_flux_quantum : float
        Calibration :math:`I_{\\Phi_0}`, A per flux quantum (non-zero; the
        sign is the coil's polarity).
    offset_current : float
        Calibration :math:`I_{offset}`, A: the current at zero flux.
    current_limits : (float, float)
        Lowest and highest current labnr may command, A (from config; must
        contain 0 A, where the output is switched).
    ramp_rate : float
        Largest ramp slope, A/s (from config; the ``ramp_rate`` parameter
        may be lowered, never raised above it).
    max_step : float
        Largest change between ramp breakpoints, A (from config; likewise).
    owns_source : bool
        Close the source's instrument when this one closes.
    **kwargs
        Passed to :class:`qcodes.instrument.Instrument`.

    Raises
    ------
    ValueError
        If a configuration value is invalid (the message names it).
    RuntimeError
        If the source is in a state labnr cannot take over without a jump.
    """

    def __init__(
        self,
        name: str,
        source: CurrentSource,
        *,
        current_per_flux_quantum: float,
        offset_current: float = 0.0,
        current_limits: Sequence[float],
        ramp_rate: float,
        max_step: float,
        owns_source: bool = False,
        **kwargs: Unpack[InstrumentBaseKWArgs],
    ) -> None:
        limits = _check_config(
            name, current_per_flux_quantum, offset_current, current_limits, ramp_rate, max_step
        )
        super().__init__(name, **kwargs)
        self._source = source
        self._owns_source = owns_source
        self._limits = limits
        self._rate_limit = float(ramp_rate)
        self._step_limit = float(max_step)
        self._ramp_lock = threading.Lock()
        self._resolution = 0.0  # of the source's current range, A (set below)
        self._add_calibration_parameters(current_per_flux_quantum, offset_current)
        self._add_ramp_parameters()
        self._add_output_parameters()
        source.check_connected()
        state, level = self._state_text()
        log.info("%s: connected; output %s, %.6g A", name, state, level)
        self._check_resolution(on=state == "on")
        if state == "on" and max(map(abs, limits)) > source.level_limit():
            log.warning(
                "%s: the source's present range reaches %.6g A, less than the current limits "
                "%s A; requests beyond it are refused until the range is changed (output off)",
                name,
                source.level_limit(),
                list(limits),
            )

    # ------------------------------------------------------------------ parameters

    def _add_calibration_parameters(self, per_quantum: float, offset: float) -> None:
        self.current_per_flux_quantum: Parameter = self.add_parameter(
            "current_per_flux_quantum",
            label="Current per flux quantum",
            unit="A/Phi0",
            initial_cache_value=float(per_quantum),
            set_cmd=self._on_calibration_change,
            get_cmd=None,
            vals=_NonZero(1.0, "A/Phi0"),
            docstring="Calibration: coil current per flux quantum. Setting it never moves "
            "the current; it changes the flux that a current means.",
        )
        """Calibration: coil current per flux quantum, A/Phi0."""
        self.offset_current: Parameter = self.add_parameter(
            "offset_current",
            label="Offset current",
            unit="A",
            initial_cache_value=float(offset),
            set_cmd=self._on_calibration_change,
            get_cmd=None,
            vals=_Interval(lambda: (-1.0, 1.0), "A", "offset calibration"),
            docstring="Calibration: the current at zero flux. Setting it never moves the current.",
        )
        """Calibration: the current at zero flux, A."""
        self.current_min: Parameter = self.add_parameter(
            "current_min",
            label="Current limit (min)",
            unit="A",
            get_cmd=lambda: self._limits[0],
            set_cmd=False,
            docstring="The lowest current labnr may command (from config).",
        )
        """The lowest current labnr may command, A (from config)."""
        self.current_max: Parameter = self.add_parameter(
            "current_max",
            label="Current limit (max)",
            unit="A",
            get_cmd=lambda: self._limits[1],
            set_cmd=False,
            docstring="The highest current labnr may command (from config).",
        )
        """The highest current labnr may command, A (from config)."""

    def _add_ramp_parameters(self) -> None:
        origin = f"configured limit of instrument {self.name!r}"
        self.ramp_rate: Parameter = self.add_parameter(
            "ramp_rate",
            label="Ramp rate",
            unit="A/s",
            initial_value=self._rate_limit,
            set_cmd=None,
            get_cmd=None,
            vals=_Interval(lambda: (self._slowest_rate(), self._rate_limit), "A/s", origin),
            docstring="Largest slope of every current change, A/s.",
        )
        """Largest slope of every current change, A/s."""
        self.max_step: Parameter = self.add_parameter(
            "max_step",
            label="Maximum ramp step",
            unit="A",
            initial_value=self._step_limit,
            set_cmd=None,
            get_cmd=None,
            vals=_Interval(lambda: (self._finest_step(), self._step_limit), "A", origin),
            docstring="Largest change between consecutive ramp breakpoints, A.",
        )
        """Largest change between consecutive ramp breakpoints, A."""

    def _add_output_parameters(self) -> None:
        origin = f"current limits configured for instrument {self.name!r}"
        self.output: Parameter = self.add_parameter(
            "output",
            label="Output",
            get_cmd=self._source.output_enabled,
            set_cmd=self._set_output,
            vals=Bool(),
            docstring="Source output. On: switches on at 0 A (only from off). Off: ramps to "
            "0 A first, then switches off.",
        )
        """Source output (bool); see the module's safety policy."""
        self.current: Parameter = self.add_parameter(
            "current",
            label="Coil current",
            unit="A",
            get_cmd=self._get_current,
            set_cmd=self._ramp_to,
            vals=_Interval(lambda: self._limits, "A", origin),
            docstring="Coil current (0 with the output off). Setting it ramps at ramp_rate "
            "in steps of at most max_step.",
        )
        """Coil current, A; setting it ramps."""
        self.flux: Parameter = self.add_parameter(
            "flux",
            label="Flux",
            unit="Phi0",
            get_cmd=self._get_flux,
            set_cmd=self._set_flux,
            vals=_Interval(self.flux_limits, "Phi0", origin + " and the flux calibration"),
            docstring="Flux through the device loop, Phi0, from the coil current and the "
            "calibration. Setting it ramps the current.",
        )
        """Flux through the device loop, Phi0; setting it ramps the current."""

    # ------------------------------------------------------------------ public API

    @property
    def source(self) -> CurrentSource:
        """The current source adapter."""
        return self._source

    @property
    def current_limits(self) -> tuple[float, float]:
        """Configured (lowest, highest) current, A."""
        return self._limits

    def flux_limits(self) -> tuple[float, float]:
        """The (lowest, highest) flux reachable within the current limits, Phi0."""
        a, b = (self.current_to_flux(i) for i in self._limits)
        return (min(a, b), max(a, b))

    def current_to_flux(self, current: float) -> float:
        """Flux in Phi0 that ``current`` (A) gives with the present calibration."""
        return (current - self.offset_current.cache()) / self.current_per_flux_quantum.cache()

    def flux_to_current(self, flux: float) -> float:
        """Current in A that gives ``flux`` (Phi0) with the present calibration."""
        return self.offset_current.cache() + flux * self.current_per_flux_quantum.cache()

    def expect_current(self, current: float, high: float | None = None) -> None:
        """Declare ``current`` A (or the span [current, high]) as what labnr last set.

        E.g. from a previous process's record. Nothing is sent. The next ramp
        refuses (nothing written) if the level read back is ``max_step`` or more
        from it. Without a declaration a fresh connection adopts the level as read.
        """
        self._source.expect_level(current, high)

    def get_idn(self) -> dict[str, str | None]:
        """Identify the driver; the source's own identity is in its snapshot."""
        return {"vendor": "labnr", "model": type(self).__name__, "serial": None, "firmware": None}

    def close(self) -> None:
        """Close the connection; the output and its level are left as they are."""
        if self._owns_source:
            self._owns_source = False
            self._source.close()
        super().close()

    def snapshot_base(
        self, update: bool | None = False, params_to_skip_update: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Snapshot, with the source instrument's snapshot under ``"source"``."""
        snap = super().snapshot_base(update, params_to_skip_update)
        snap["source"] = self._source.instrument.snapshot(update=update)
        return snap

    # ------------------------------------------------------------------ set/get

    def _state_text(self) -> tuple[str, float]:
        on = self._source.output_enabled()
        return ("on" if on else "off", self._source.level() if on else 0.0)

    def _on_calibration_change(self, value: float) -> None:
        self.flux.cache.invalidate()

    def _get_current(self) -> float:
        return self._source.level() if self._source.output_enabled() else 0.0

    def _get_flux(self) -> float:
        return self.current_to_flux(self._get_current())

    def _set_flux(self, flux: float) -> None:
        self._ramp_to(self.flux_to_current(flux))
        self.current.cache.invalidate()

    def _ramp_to(self, target: float) -> None:
        low, high = self._limits
        if not low <= target <= high:  # flux rounding at the edge of the limits
            target = min(max(target, low), high)
        with self._ramp_lock:
            if not self._source.output_enabled():
                raise RuntimeError(
                    f"{self.name}: cannot set a current of {target:.6g} A with the output off; "
                    f"switch it on with {self.name}.output(True) (it switches on at 0 A)"
                )
            rate, step = self.ramp_rate.cache(), self.max_step.cache()
            log.info(
                "%s: ramping to %.6g A at %.3g A/s, steps <= %.3g A", self.name, target, rate, step
            )
            self._source.ramp(target, rate, step)
        self.flux.cache.invalidate()

    def _set_output(self, on: bool) -> None:
        with self._ramp_lock:
            enabled = self._source.output_enabled()
            if on and not enabled:
                self._check_resolution(on=False)  # of the range it will switch on in
                self._source.enable_output(max(abs(b) for b in self._limits))
            elif enabled and not on:
                self._source.ramp(0.0, self.ramp_rate.cache(), self.max_step.cache())
                self._source.disable_output()
        self.current.cache.invalidate()
        self.flux.cache.invalidate()

    def _finest_step(self) -> float:
        """Smallest max_step the source can honour: 2 resolution steps, A."""
        return max(1e-12, 2 * self._resolution)

    def _slowest_rate(self) -> float:
        """Slowest ramp rate the source can honour: 2 resolution steps per longest step, A/s."""
        return max(1e-12, 2 * self._resolution / self._source.max_interval)

    def _check_resolution(self, *, on: bool) -> None:
        """Refuse a ``max_step`` or ``ramp_rate`` finer than the source can step (reads only)."""
        limit = max(abs(b) for b in self._limits)
        res = self._source.resolution() if on else self._source.resolution(limit)
        where = f"{self.name}: " + (
            f"{self._source.instrument.name}'s present current range"
            if on
            else f"the current range {self._source.instrument.name} uses for |I| <= {limit:g} A"
        )
        if self._step_limit < 2 * res:
            raise ValueError(
                f"{where} has a level resolution of {res:g} A, too coarse for max_step="
                f"{self._step_limit:g} A (steps must be at least twice the resolution); raise "
                f"max_step to at least {2 * res:g} A"
            )
        step_time = self._source.max_interval
        if self._rate_limit * step_time < 2 * res:
            raise ValueError(
                f"{where} has a level resolution of {res:g} A, too coarse for ramp_rate="
                f"{self._rate_limit:g} A/s (its longest step, {step_time:g} s, must move at least "
                f"twice the resolution); raise ramp_rate to at least {2 * res / step_time:g} A/s"
            )
        self._resolution = res


def _check_config(
    name: str,
    per_quantum: float,
    offset: float,
    limits: Sequence[float],
    rate: float,
    step: float,
) -> tuple[float, float]:
    """Validate the configuration of a :class:`FluxBias`; return the limits as floats."""
    where = f"FluxBias {name!r}"
    if len(limits) != 2 or not all(math.isfinite(float(v)) for v in limits):
        raise ValueError(f"{where}: current_limits={limits!r} must be two finite numbers (A)")
    low, high = float(limits[0]), float(limits[1])
    if not low <= 0.0 <= high or low == high:
        raise ValueError(
            f"{where}: current_limits=[{low:g}, {high:g}] A must satisfy low <= 0 <= high and "
            "low < high (the output is switched at 0 A)"
        )
    for key, value in (("ramp_rate", rate), ("max_step", step)):
        if not (math.isfinite(value) and value >= 1e-12):  # the ramp parameters' lower bound
            raise ValueError(f"{where}: {key}={value!r} must be a finite number >= 1e-12")
    if not (math.isfinite(per_quantum) and 0 < abs(per_quantum) <= 1.0):
        raise ValueError(
            f"{where}: current_per_flux_quantum={per_quantum!r} A/Phi0 must be non-zero with "
            "magnitude <= 1 A/Phi0"
        )
    if not (math.isfinite(offset) and abs(offset) <= 1.0):
        raise ValueError(f"{where}: offset_current={offset!r} A must be finite, |value| <= 1 A")
    return (low, high)
