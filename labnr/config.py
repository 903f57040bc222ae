"""labnr experiment configuration: one validated YAML file per device setup.

A config names the QCoDeS station file, the device's modes (expected
frequencies and VNA ports), the pump tones (which pair of modes each drives
and how), the target function, the safety limits, and where data go. With
``simulate: true`` labnr starts the embedded virtual lab and points the
station at it, so a user needs nothing else. See
``configs/sim_jpc_circulator.yaml`` for a commented example.

Quantities are SI numbers, or strings with a unit (``"5.31 GHz"``,
``"100 uA"``, ``"30 dB"``); the unit must fit the key. Every problem is
reported at once, one line each, as ``file: key.path: what is wrong``, in a
:class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

_PREFIX = {"": 0, "p": -12, "n": -9, "u": -6, "µ": -6, "m": -3, "k": 3, "M": 6, "G": 9}
_QTY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµ°/]*)\s*$")


class ConfigError(ValueError):
    """A config file is invalid; the message lists file, key path and the fix for each problem."""


def _quantity(unit: str, *, allow_prefix: bool = True, also: dict[str, float] | None = None):
    """A pydantic pre-validator turning ``"5 GHz"`` (or a bare number) into SI floats."""
    extra = also or {}

    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        if isinstance(value, (int, float)):
            return float(value)
        if not isinstance(value, str):
            return value
        m = _QTY.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a quantity; write e.g. '5.3 G{unit}' or 5.3e9")
        number, u = Decimal(m.group(1)), m.group(2)
        if u == "" or u in extra or u == unit:
            return float(number) * extra.get(u, 1.0)
        if allow_prefix and u.endswith(unit) and u[: -len(unit)] in _PREFIX:
            return float(number.scaleb(_PREFIX[u[: -len(unit)]]))  # exact: 100 uA -> 1e-4
        allowed = sorted({f"{p}{unit}" for p in ("", "k", "M", "G", "m", "u", "n")} | set(extra))
        raise ValueError(
            f"unit {u!r} does not fit here; use one of {allowed} (or a bare SI number)"
        )

    return BeforeValidator(parse)


Hz = Annotated[float, _quantity("Hz"), Field(allow_inf_nan=False)]
Amps = Annotated[float, _quantity("A"), Field(allow_inf_nan=False)]
Volts = Annotated[float, _quantity("V"), Field(allow_inf_nan=False)]
Seconds = Annotated[float, _quantity("s"), Field(allow_inf_nan=False)]
AmpsPerSecond = Annotated[float, _quantity("A/s"), Field(allow_inf_nan=False)]
Decibels = Annotated[float, _quantity("dB", allow_prefix=False), Field(allow_inf_nan=False)]
DBm = Annotated[float, _quantity("dBm", allow_prefix=False), Field(allow_inf_nan=False)]
Radians = Annotated[
    float,
    _quantity("rad", allow_prefix=False, also={"deg": math.pi / 180, "°": math.pi / 180}),
    Field(allow_inf_nan=False),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModeConfig(_Model):
    """What the user expects of a mode (a starting guess; calibration measures it)."""

    frequency: Hz = Field(gt=0, description="expected frequency, Hz")
    linewidth: Hz | None = Field(default=None, gt=0, description="expected FWHM, Hz")
    vna_port: int | None = Field(default=None, ge=1, le=4)
    flux_tunable: bool = False


class ToneConfig(_Model):
    """One pump tone: the pair it drives, how, the instrument channel, and its limit."""

    modes: tuple[str, str]
    kind: Literal["conversion", "gain"] = "conversion"
    max_amplitude: Volts = Field(gt=0, description="hard limit at the instrument output, V")
    source: str | None = Field(default=None, description="CW backend: station name of the source")
    channel: int | None = Field(default=None, ge=1, le=8, description="AWG backend: direct channel")
    iq: str | None = Field(default=None, description="AWG backend: name of a mixer in pumps.mixers")
    sideband: Literal["+", "-"] = "+"
    amplitude: Volts = Field(default=0.0, ge=0, description="initial amplitude, V")
    phase: Radians = 0.0


class MixerConfig(_Model):
    """An IQ up-converter: two AWG channels and an LO source."""

    i: int = Field(ge=1, le=8)
    q: int = Field(ge=1, le=8)
    lo: str
    lo_frequency: Hz = Field(gt=0)
    lo_power: DBm = 13.0
    gain_imbalance: float = 0.0
    phase_imbalance: Radians = 0.0
    i_offset: Volts = 0.0
    q_offset: Volts = 0.0


class PumpsConfig(_Model):
    """Pump tones and their backend."""

    backend: Literal["cw", "awg"]
    awg: str | None = None
    frequency_resolution: Hz = Field(default=10e3, gt=0)
    mixers: dict[str, MixerConfig] = {}
    tones: dict[str, ToneConfig]

    @model_validator(mode="after")
    def _backend_keys(self) -> PumpsConfig:
        problems = []
        for name, t in self.tones.items():
            if self.backend == "cw" and t.source is None:
                problems.append(
                    f"tones.{name}.source: the cw backend needs the source's station name"
                )
            if self.backend == "awg":
                if (t.channel is None) == (t.iq is None):
                    problems.append(
                        f"tones.{name}: the awg backend needs exactly one of channel: or iq:"
                    )
                if t.iq is not None and t.iq not in self.mixers:
                    problems.append(
                        f"tones.{name}.iq: {t.iq!r} is not in pumps.mixers {sorted(self.mixers)}"
                    )
        if self.backend == "awg" and self.awg is None:
            problems.append("awg: the awg backend needs the AWG's station name")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class TargetConfig(_Model):
    """What the device should do: circulate in a sense, or isolate one way."""

    kind: Literal["circulator", "isolator"]
    sense: tuple[str, ...] | None = Field(default=None, description="circulator: a -> b -> c -> a")
    forward: tuple[str, str] | None = Field(default=None, description="isolator: (from, to)")

    @model_validator(mode="after")
    def _shape(self) -> TargetConfig:
        if self.kind == "circulator" and (self.sense is None or len(self.sense) < 3):
            raise ValueError("a circulator needs sense: [a, b, c] (at least three modes)")
        if self.kind == "isolator" and self.forward is None:
            raise ValueError("an isolator needs forward: [from_mode, to_mode]")
        return self

    def paths(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(forward, reverse) paths as (out_mode, in_mode) pairs."""
        if self.kind == "isolator":
            a, b = self.forward  # type: ignore[misc]
            return [(b, a)], [(a, b)]
        s = list(self.sense)  # type: ignore[arg-type]
        fwd = [(s[(k + 1) % len(s)], s[k]) for k in range(len(s))]
        return fwd, [(i, o) for o, i in fwd]


class FluxConfig(_Model):
    """Flux bias limits and the starting guess of its calibration."""

    min_current: Amps
    max_current: Amps
    ramp_rate: AmpsPerSecond = Field(gt=0)
    max_step: Amps = Field(gt=0)
    current_per_flux_quantum: Amps | None = Field(default=None, description="guess, A per Phi0")
    offset_current: Amps = 0.0

    @model_validator(mode="after")
    def _order(self) -> FluxConfig:
        if self.min_current >= self.max_current:
            raise ValueError(
                f"min_current {self.min_current} must be below max_current {self.max_current}"
            )
        return self


class VNAConfig(_Model):
    """Default acquisition settings."""

    power: DBm = -30.0
    if_bandwidth: Hz = Field(default=1e3, gt=0)
    averages: int = Field(default=1, ge=1)
    points: int = Field(default=401, ge=2, le=100001)
    span: Hz = Field(default=150e6, gt=0)


class StorageConfig(_Model):
    """Where data go (relative paths are relative to the config file's folder)."""

    database: str = "labnr.db"
    data_dir: str = "data"
    export_hdf5: bool = Field(
        default=True, description="write <data_dir>/run_<id>.h5 after each run"
    )


class VirtualLabConfig(_Model):
    """The embedded virtual lab (``simulate: true``)."""

    device: str = Field(description="device preset name or device YAML path")
    seed: int = 0


class InstrumentsConfig(_Model):
    """Station names of the instruments labnr drives."""

    vna: str
    flux: str | None = None


class Config(_Model):
    """A whole labnr experiment configuration."""

    name: str
    station: str
    simulate: bool = False
    virtual_lab: VirtualLabConfig | None = None
    instruments: InstrumentsConfig
    modes: dict[str, ModeConfig]
    pumps: PumpsConfig
    target: TargetConfig
    flux: FluxConfig | None = None
    vna: VNAConfig = VNAConfig()
    storage: StorageConfig = StorageConfig()
    #: folder of the config file (set on load), for resolving relative paths
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems = []
        names = set(self.modes)
        for tname, tone in self.pumps.tones.items():
            for m in tone.modes:
                if m not in names:
                    problems.append(
                        f"pumps.tones.{tname}.modes: unknown mode {m!r}; modes are {sorted(names)}"
                    )
            if tone.modes[0] == tone.modes[1]:
                problems.append(f"pumps.tones.{tname}.modes: a tone drives two different modes")
            if tone.amplitude > tone.max_amplitude:
                problems.append(
                    f"pumps.tones.{tname}.amplitude: {tone.amplitude} V exceeds "
                    f"max_amplitude {tone.max_amplitude} V"
                )
        pairs = [frozenset(t.modes) for t in self.pumps.tones.values()]
        if len(pairs) != len(set(pairs)):
            problems.append("pumps.tones: two tones drive the same pair of modes")
        ports = [m.vna_port for m in self.modes.values() if m.vna_port is not None]
        if len(ports) != len(set(ports)):
            problems.append(f"modes: two modes share a VNA port ({ports})")
        target_modes = list(self.target.sense or ()) + list(self.target.forward or ())
        for m in target_modes:
            if m not in names:
                problems.append(f"target: unknown mode {m!r}; modes are {sorted(names)}")
            elif self.modes[m].vna_port is None:
                problems.append(
                    f"target: mode {m!r} has no vna_port, so its path cannot be measured"
                )
        if self.simulate and self.virtual_lab is None:
            problems.append("virtual_lab: simulate: true needs virtual_lab: {device: PRESET}")
        if any(m.flux_tunable for m in self.modes.values()) and self.flux is None:
            problems.append("flux: flux-tunable modes need a flux: section with limits")
        if self.flux is not None and self.instruments.flux is None:
            problems.append(
                "instruments.flux: a flux: section needs the flux source's station name"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def path(self, relative: str) -> Path:
        """A path from the config resolved against the config file's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the config section at ``loc`` (for 'did you mean')."""
    model: Any = Config
    for part in loc[:-1]:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(part))
        if field is None:  # a user-named key (mode name, tone name): look inside the values
            continue
        ann = field.annotation
        args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type)]
        model = next(
            (a for a in [ann, *args] if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if model is None and args:  # dict[str, Model]
            model = args[-1]
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [k for k in model.model_fields if k != "base_dir"]
    return []


def _format(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list, tuple)) else f" (got {got!r})"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"])
            close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"unknown key{hint}; allowed keys here: {allowed}"
            shown = ""
        elif err["type"] == "missing":
            msg, shown = "missing required key", ""
        for part in msg.split("\n"):
            # cross-checks of the whole file name their own key paths
            lines.append(f"{source}: {loc}: {part}{shown}" if loc else f"{source}: {part}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<dict>", base_dir: Path | None = None) -> Config:
    """Validate a parsed config mapping; raise :class:`ConfigError` listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the file must be a mapping of keys, got {type(data).__name__}"
        )
    try:
        return Config(**data, base_dir=base_dir or Path("."))
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path) -> Config:
    """Load and validate a labnr config file (YAML, safe loader)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, source=str(p), base_dir=p.resolve().parent)
