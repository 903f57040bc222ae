"""The :class:`~labnr.lock.Plant` of a real (or emulated) lab: VNA point reads and pump tones.

:class:`LabPlant` wraps an open :class:`labnr.session.LabSession`:

* **knobs** — per selected tone ``pump_<tone>_phase`` (periodic, ``[-pi, pi)``,
  max step ``phase_step`` = 0.25 rad by default) and ``pump_<tone>_amplitude``
  (``[0, max_amplitude]`` from the config, max step ``amplitude_step`` = 10 %
  of the operating amplitude by default). The error signal refers every reverse
  path to its forward partner, which removes the gauge of the individual tone
  phases: only the loop phase matters, so one phase knob (``phase_tones``) is
  enough and avoids a rank-deficient Jacobian; all are allowed.
* **read** — one cached CW point read (:meth:`KeysightN5242B.point`) per
  needed element at its input's band centre, receivers offset as the
  measurement plan (:func:`labnr.measure.make_plan`) says for
  frequency-converting paths. One acquisition per element, counted honestly.
* **now / wait** — a ``clock`` callable (the virtual clock in simulation) and
  a ``sleep`` callable (``time.sleep`` in a lab, advancing the virtual clock in
  simulation); the defaults are ``time.monotonic``/``time.sleep``.
* **safe_state** — ``session.pump.off()``.

This module never imports the virtual lab (truth firewall).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from labnr.lock.controller import check_command
from labnr.lock.plant import KnobSpec, Reading, element_name

__all__ = ["LabPlant"]

PHASE_STEP = 0.25  # rad per correction
AMPLITUDE_STEP = 0.10  # fraction of the operating amplitude per correction
POINTS = 16  # readings averaged per point read


class LabPlant:
    """:class:`labnr.lock.Plant` on the session's drivers (see the module docstring).

    Parameters
    ----------
    session : LabSession
        Open lab (``config``, ``vna``, ``pump``).
    operating_point : Mapping
        The calibration's ``operating_point`` result: ``settings`` (per tone
        ``amplitude``, ``phase``, ``frequency``) and ``band_centres`` (Hz per mode).
    elements : sequence of (str, str)
        (out, in) modes to read, e.g. the target's reverse and forward paths.
    phase_tones : sequence of str, optional
        Tones whose phase is a knob (default: every tone).
    amplitude_tones : sequence of str, optional
        Tones whose amplitude is a knob (default: every tone).
    phase_step : float
        Largest phase change per correction, rad.
    amplitude_step : float
        Largest amplitude change per correction, as a fraction of the
        operating amplitude.
    points : int
        Readings the analyser averages per point read. At the operating
        point the reverse transmissions sit near the read noise (one reading:
        ~1e-3 rms, i.e. ~47 dB below a -12 dB forward path), so single readings
        both under-report the isolation and feed their noise into the knobs;
        averaging costs little of the duty budget.
    clock, sleep : callable, optional
        Plant time (s) and how to let time pass.
    """

    def __init__(
        self,
        session: Any,
        operating_point: Mapping[str, Any],
        elements: Sequence[tuple[str, str]],
        *,
        phase_tones: Sequence[str] | None = None,
        amplitude_tones: Sequence[str] | None = None,
        phase_step: float = PHASE_STEP,
        amplitude_step: float = AMPLITUDE_STEP,
        points: int = POINTS,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        from labnr.measure import make_plan
        from labnr.measure.acquire import port_modes

        self.session = session
        cfg = session.config
        self.config = cfg
        settings = operating_point["settings"]
        tones = list(cfg.pumps.tones)
        self.elements = [(str(o), str(i)) for o, i in elements]
        self._clock = clock or time.monotonic
        self._sleep = sleep or time.sleep
        self._acquisitions = 0
        self.points = max(int(points), 1)
        self._values: dict[str, float] = {}
        self._specs: dict[str, KnobSpec] = {}
        for t in tones if phase_tones is None else phase_tones:
            name = f"pump_{t}_phase"
            self._values[name] = float(settings[t]["phase"])
            self._specs[name] = KnobSpec(name, 0.0, -math.pi, math.pi, phase_step, "rad", True)
        for t in tones if amplitude_tones is None else amplitude_tones:
            name = f"pump_{t}_amplitude"
            a0 = float(settings[t]["amplitude"])
            amax = float(cfg.pumps.tones[t].max_amplitude)
            step = amplitude_step * max(a0, 1e-3 * amax)
            self._values[name] = a0
            self._specs[name] = KnobSpec(name, a0, 0.0, amax, step, "V", False)
        order = list(port_modes(cfg))
        ports = sorted({m for p in self.elements for m in p}, key=order.index)
        centres = {m: float(v) for m, v in operating_point["band_centres"].items()}
        meta = make_plan(session, span=1e3, points=2, centres=centres, paths=self.elements,
                         ports=ports)  # fmt: skip
        num = meta.port_numbers
        self._reads = []
        for o, i in self.elements:
            m = meta.plan.maps[(o, i)]
            self._reads.append(
                (element_name(o, i), (num[o], num[i]), float(meta.plan.centres[i]),
                 float(m.offset), float(m.multiplier))
            )  # fmt: skip

    # ------------------------------------------------------------------ Plant protocol
    def adopt_operating_point(self, other: LabPlant) -> None:
        """Take over the knob values and limits of a plant built at a new operating point.

        Used after a re-calibration: the supervisor keeps this plant object, so
        the new settings (already written to the pumps) are copied into it,
        with the new read plan: band centres and the receiver offsets follow
        the re-solved tone frequencies (a receiver left at the old pump
        frequency would listen next to the converted signal).
        """
        self._values.update(other._values)
        self._specs.update(other._specs)
        self._reads = list(other._reads)

    def knobs(self) -> dict[str, KnobSpec]:
        out = {}
        for name, spec in self._specs.items():
            v = self._values[name]
            out[name] = KnobSpec(spec.name, spec.wrap(v) if spec.periodic else v, spec.minimum,
                                 spec.maximum, spec.max_step, spec.unit, spec.periodic)  # fmt: skip
        return out

    def set_knobs(self, values: Mapping[str, float]) -> None:
        check_command(self.knobs(), values)  # everything validated before any write
        tones: dict[str, dict[str, float]] = {}
        for name, v in values.items():
            _, tone, kind = name.split("_", 2)
            tones.setdefault(tone, {})[kind] = float(v)
        self.session.pump.set_tones(tones)
        for name, v in values.items():
            self._values[name] = float(v)

    def read(self) -> Reading:
        t0 = self._clock()
        s: dict[str, complex] = {}
        for name, pair, f, offset, mult in self._reads:
            v = self.session.vna.point([pair], f, offset, mult, points=self.points)[0]
            s[name] = complex(v)
            self._acquisitions += 1
        t1 = self._clock()
        return Reading(time=t1, s=s, duration=max(t1 - t0, 0.0), acquisitions=len(self._reads))

    def now(self) -> float:
        return float(self._clock())

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(float(seconds))

    def safe_state(self) -> None:
        """Pumps off (every source tried, with retries and reconnection); flux held."""
        from labnr.safety import safe_state

        safe_state(self.session)

    @property
    def acquisitions(self) -> int:
        return self._acquisitions
