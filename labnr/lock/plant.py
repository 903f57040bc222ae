r"""The lock's view of the lab: knobs with limits, fast point reads, a safe state.

The lock never talks to instruments. It talks to a :class:`Plant`, which the
lab side implements on top of the drivers (cached CW point reads of the VNA,
the pump tones, the flux bias) and the tests implement on top of
:mod:`labnr.model`. This module also defines what a read *means* to the lock:
:class:`ErrorSignal` turns the complex S-parameters of a :class:`Reading` into
the real error vector that vanishes at the directional operating point, and
into the isolation and forward transmission that are logged.

Error signal
------------
For every reverse path :math:`r_k = (o, i)` with forward partner
:math:`f_k = (i, o)` the error has two real components, the real and
imaginary parts of

.. math::

    \epsilon_k = S_{r_k}\, \frac{S_{f_k}}{|S_{f_k}|},

the reverse transmission referred to the phase of its forward partner. The
phase of every pump tone (and its drifting line phase) enters
:math:`S_{oi}` and :math:`S_{io}` with opposite signs (a gauge transformation
:math:`a_j \to a_j e^{i\theta_j}` multiplies :math:`S_{oi}` by
:math:`e^{i(\theta_o-\theta_i)}`), so the product removes the gauge drift of
the individual tones and leaves only what moves
the balance (loop phase, coupling magnitudes, detunings). Without a forward
partner in the read (``phase_reference=False`` or element missing) the raw
:math:`S_{r_k}` is used. Optional matched ports add their reflections
:math:`S_{pp}` (which vanish at an impedance-matched operating point).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "ErrorSignal",
    "KnobSpec",
    "Plant",
    "Reading",
    "element_name",
]


def element_name(out_mode: str, in_mode: str) -> str:
    """Name of an S-matrix element in a :class:`Reading`: ``S_b_a`` is out ``b``, in ``a``.

    Same convention as the measurement layer's datasets.
    """
    return f"S_{out_mode}_{in_mode}"


@dataclass(frozen=True)
class KnobSpec:
    """A knob the lock may move: present value, limits and the largest step per correction.

    Parameters
    ----------
    name : str
        Physical parameter name, e.g. ``pump_bc_phase``.
    value : float
        Present value, in ``unit``.
    minimum, maximum : float
        Limits from the config (the lab implementation checks the driver's
        own limits again before writing). For a periodic knob they span
        exactly one period, e.g. ``(-pi, pi)``, and commands are wrapped
        into ``[minimum, maximum)``.
    max_step : float
        Largest change per correction (for a periodic knob: the shortest
        distance around the circle), in ``unit``.
    unit : str
        SI unit (``rad``, ``V``).
    periodic : bool
        True for a phase.
    """

    name: str
    value: float
    minimum: float
    maximum: float
    max_step: float
    unit: str = ""
    periodic: bool = False

    def __post_init__(self) -> None:
        for key in ("value", "minimum", "maximum", "max_step"):
            v = getattr(self, key)
            if not isinstance(v, int | float | np.floating) or not math.isfinite(v):
                raise ValueError(f"knob {self.name!r}: {key}={v!r} must be a finite number")
            object.__setattr__(self, key, float(v))
        if not self.minimum < self.maximum:
            raise ValueError(
                f"knob {self.name!r}: minimum {self.minimum} must be below maximum {self.maximum}"
            )
        if self.max_step <= 0:
            raise ValueError(f"knob {self.name!r}: max_step={self.max_step} must be > 0")

    @property
    def period(self) -> float:
        """Length of the range (one period for a periodic knob)."""
        return self.maximum - self.minimum

    def wrap(self, x: float) -> float:
        """``x`` itself, or for a periodic knob ``x`` wrapped into ``[minimum, maximum)``."""
        if not self.periodic:
            return float(x)
        w = self.minimum + (float(x) - self.minimum) % self.period
        return self.minimum if w >= self.maximum else w

    def distance(self, start: float, end: float) -> float:
        """Signed change from ``start`` to ``end`` (shortest way round if periodic)."""
        d = float(end) - float(start)
        if self.periodic:
            d = (d + self.period / 2) % self.period - self.period / 2
        return d

    def within_limits(self, x: float) -> bool:
        """True if ``x`` may be commanded (finite and inside ``[minimum, maximum]``)."""
        return math.isfinite(x) and self.minimum <= x <= self.maximum


@dataclass(frozen=True)
class Reading:
    """One fast point read at band centre.

    Attributes
    ----------
    time : float
        Plant clock at the end of the read, s (virtual time in simulation).
    s : Mapping[str, complex]
        Complex S-parameters by element name (``S_<out>_<in>``): at least the
        reverse transmissions; forward transmissions and reflections if read.
    duration : float
        Time the read took, s (counts toward the measurement duty).
    acquisitions : int
        VNA acquisitions the read made (several if the paths need different
        frequency-offset settings).
    """

    time: float
    s: Mapping[str, complex]
    duration: float
    acquisitions: int = 1

    def largest(self) -> float:
        """Largest :math:`|S|` in the read (the instability watch)."""
        return max((abs(v) for v in self.s.values()), default=0.0)


@runtime_checkable
class Plant(Protocol):
    """What the lock needs from the lab.

    The real implementation wraps the VNA driver's cached point reads and the
    pump driver; in simulation ``now``/``wait`` run on the virtual clock.
    Implementations validate every value against the drivers' limits again
    in :meth:`set_knobs` and never write a value the driver would refuse.
    """

    def knobs(self) -> dict[str, KnobSpec]:
        """The knobs the lock may move, by name, with present values and limits."""
        ...

    def set_knobs(self, values: Mapping[str, float]) -> None:
        """Write new values (a subset of :meth:`knobs`), all validated before any write."""
        ...

    def read(self) -> Reading:
        """One fast point read at band centre; counts its acquisitions."""
        ...

    def now(self) -> float:
        """Plant clock, s."""
        ...

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass (sleep in the lab, advance the virtual clock in simulation)."""
        ...

    def safe_state(self) -> None:
        """Pumps off, flux held where it is."""
        ...

    @property
    def acquisitions(self) -> int:
        """VNA acquisitions made through this plant so far."""
        ...


def _pairs(pairs: Sequence[Sequence[str]], what: str) -> tuple[tuple[str, str], ...]:
    out = []
    for p in pairs:
        if len(p) != 2 or not all(isinstance(x, str) for x in p):
            raise ValueError(f"{what}: {p!r} is not an (out_mode, in_mode) pair of names")
        out.append((p[0], p[1]))
    return tuple(out)


@dataclass(frozen=True)
class ErrorSignal:
    """Which elements of a read form the error, and the isolation they imply.

    Parameters
    ----------
    reverse : sequence of (str, str)
        (out, in) modes of the paths to cancel, e.g. ``[("a", "b")]`` for an
        isolator a→b.
    forward : sequence of (str, str), optional
        (out, in) of each reverse path's forward partner, same order. Default:
        the reversed pairs.
    reflections : sequence of str
        Ports whose reflection is part of the error (only when the operating
        point is impedance matched).
    phase_reference : bool
        Refer each reverse element to the phase of its forward partner (see
        the module docstring).

    Examples
    --------
    >>> sig = ErrorSignal.circulator(["a", "b", "c"])
    >>> sig.reverse_names
    ('S_a_b', 'S_b_c', 'S_c_a')
    >>> sig.size
    6
    """

    reverse: tuple[tuple[str, str], ...]
    forward: tuple[tuple[str, str], ...] = ()
    reflections: tuple[str, ...] = ()
    phase_reference: bool = True
    _names: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rev = _pairs(self.reverse, "ErrorSignal reverse")
        if not rev:
            raise ValueError("ErrorSignal needs at least one reverse path")
        fwd = _pairs(self.forward, "ErrorSignal forward") or tuple((i, o) for o, i in rev)
        if len(fwd) != len(rev):
            raise ValueError(
                f"ErrorSignal: {len(fwd)} forward paths for {len(rev)} reverse paths; "
                "give one forward partner per reverse path"
            )
        object.__setattr__(self, "reverse", rev)
        object.__setattr__(self, "forward", fwd)
        object.__setattr__(self, "reflections", tuple(self.reflections))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def circulator(cls, sense: Sequence[str], **kwargs: object) -> ErrorSignal:
        """Circulation ``sense[0] -> sense[1] -> ... -> sense[0]``; the reverse paths cancel."""
        s = list(sense)
        if len(s) < 3:
            raise ValueError(f"a circulator needs at least three modes in its sense; got {s}")
        fwd = [(s[(k + 1) % len(s)], s[k]) for k in range(len(s))]
        return cls(reverse=tuple((i, o) for o, i in fwd), forward=tuple(fwd), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def isolator(cls, forward: Sequence[str], **kwargs: object) -> ErrorSignal:
        """Isolator passing ``forward[0] -> forward[1]``; the path back cancels."""
        a, b = forward
        return cls(reverse=((a, b),), forward=((b, a),), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_paths(
        cls,
        forward: Sequence[Sequence[str]],
        reverse: Sequence[Sequence[str]],
        **kwargs: object,
    ) -> ErrorSignal:
        """From ``labnr.config.TargetConfig.paths()``: (forward, reverse) lists of (out, in)."""
        return cls(reverse=tuple(map(tuple, reverse)), forward=tuple(map(tuple, forward)), **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ names
    @property
    def reverse_names(self) -> tuple[str, ...]:
        """Element names of the reverse paths."""
        return tuple(element_name(o, i) for o, i in self.reverse)

    @property
    def forward_names(self) -> tuple[str, ...]:
        """Element names of the forward partners."""
        return tuple(element_name(o, i) for o, i in self.forward)

    @property
    def elements(self) -> tuple[str, ...]:
        """Every element a read should contain (reverse, forward, reflections)."""
        refl = tuple(element_name(p, p) for p in self.reflections)
        return self.reverse_names + self.forward_names + refl

    @property
    def size(self) -> int:
        """Length of the real error vector."""
        return 2 * (len(self.reverse) + len(self.reflections))

    # ------------------------------------------------------------------ evaluation
    def complex_error(self, s: Mapping[str, complex]) -> np.ndarray:
        """The complex error components (reverse paths, then reflections)."""
        missing = [n for n in self.reverse_names if n not in s]
        missing += [element_name(p, p) for p in self.reflections if element_name(p, p) not in s]
        if missing:
            raise KeyError(f"the read lacks {missing}; it has {sorted(s)}")
        out = []
        for rev, fwd in zip(self.reverse_names, self.forward_names, strict=True):
            v = complex(s[rev])
            f = complex(s.get(fwd, 0.0)) if self.phase_reference else 0.0
            if f != 0.0:
                v *= f / abs(f)
            out.append(v)
        out += [complex(s[element_name(p, p)]) for p in self.reflections]
        return np.asarray(out, dtype=complex)

    def error(self, s: Mapping[str, complex]) -> np.ndarray:
        """Real error vector ``[Re eps_1, ..., Re eps_K, Im eps_1, ..., Im eps_K]``."""
        c = self.complex_error(s)
        return np.concatenate([c.real, c.imag])

    def forward_db(self, s: Mapping[str, complex]) -> np.ndarray:
        """Forward transmission per path, dB (NaN if the read lacks it)."""
        return np.array([_db(s.get(n)) for n in self.forward_names])

    def isolation_db(self, s: Mapping[str, complex]) -> np.ndarray:
        """Isolation per path, :math:`20\\log_{10}|S_{fwd}/S_{rev}|` in dB.

        Without the forward element, :math:`-20\\log_{10}|S_{rev}|`.
        """
        fwd = np.nan_to_num(self.forward_db(s), nan=0.0)
        rev = np.array([_db(s.get(n)) for n in self.reverse_names])
        return fwd - rev

    def target_error(self, isolation_db: float) -> float:
        """Norm of the error vector when every path sits at ``isolation_db`` (unit forward)."""
        return float(10 ** (-isolation_db / 20) * math.sqrt(len(self.reverse)))


def _db(v: complex | None) -> float:
    if v is None:
        return float("nan")
    a = abs(complex(v))
    return float(20 * math.log10(a)) if a > 0 else float("-inf")
