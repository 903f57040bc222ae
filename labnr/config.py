"""labnr experiment configuration: one validated YAML file per device setup.

A config names the QCoDeS station file, the device's modes (expected
frequencies and VNA ports), the pump tones (which pair of modes each drives
and how), the target function, the safety limits, and where data go. With
``simulate: true`` labnr starts the embedded virtual lab and points the
station at it, so a user needs nothing else. See
``configs/sim_jpc_circulator.yaml`` for a commented example.

Quantities are SI numbers, or strings with a unit (``"5.31 GHz"``,
``"100 uA"``, ``"30 dB"``); the unit must fit the key. Every problem is
reported at once, one line each, as ``file: key.path: what is wrong; fix:
what to do``, in a :class:`ConfigError` (a ``ValueError``).

Files are read within bounds (:func:`load_yaml_bounded`, from
:mod:`labnr.config_yaml`: at most 1 MiB, 10 000 nodes with aliases expanded,
32 levels, no recursive alias, no integer of more than 30 digits) and with
YAML's safe loader only (no Python objects); a key given twice in one
mapping is an error. ``name`` becomes part of file names (the calibration
state file), so it is letters, digits, ``_``, ``-`` and ``.`` only. Mode,
tone and mixer names are identifiers (ASCII letters, digits and ``_``).

Every value that reaches an instrument is range-checked against that
instrument (:mod:`labnr.config_ranges`: IF bandwidth, averages, points,
span, power, the flux source's resolution), and ``vna.power`` must not
exceed the stimulus limit ``vna.max_power`` (dBm, one number or
``{port: dBm}``; default -10 dBm, conservative for cryogenic work).

**Paths** (``station``, ``storage.database``, ``storage.data_dir``, a device
YAML in ``virtual_lab.device``) follow one rule:

- A *relative* path is resolved against the config file's folder, symlinks
  included, and must stay inside the *project folder*: the nearest folder
  above the config holding ``.git`` or ``pyproject.toml``, else the config
  folder's parent (configs live in ``<project>/configs/``). So
  ``../labnr_output/labnr.db`` next to ``configs/`` is fine, while
  ``../../../etc/x`` is refused.
- An *absolute* path (also ``~/...``) is an explicit choice of the user and
  is allowed anywhere.

Cross-checks (:mod:`labnr.config_checks`) also refuse contradictory pump maps
(unknown or repeated modes, two tones on one pair and kind, a conversion tone
at 0 Hz, undefined IQ mixers, AWG channels wired twice, one CW source for two
tones), targets the pumps cannot reach, flux limits that exclude 0 A or the
zero-flux offset, and a ``max_amplitude`` above the hard cap of 2 V.

The station file must exist, and every instrument the config names
(``instruments.*``, tone sources, the AWG, mixer LOs) must be in it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from labnr import config_checks as checks
from labnr import config_ranges as ranges
from labnr.config_types import (
    Amps,
    AmpsPerSecond,
    Count,
    DBm,
    Hz,
    PowerLimits,
    Radians,
    Volts,
    identifiers,
    short,
)
from labnr.config_yaml import ConfigError, YAMLProblem, load_yaml_bounded, read_yaml_bounded

__all__ = ["Config", "ConfigError", "load_config", "load_yaml_bounded", "parse_config"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

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
    gain_imbalance: float = Field(default=0.0, ge=-0.5, le=0.5, description="Q gain is 1 + it")
    phase_imbalance: Radians = Field(default=0.0, ge=-math.pi / 4, le=math.pi / 4)
    i_offset: Volts = Field(default=0.0, ge=-1.0, le=1.0)
    q_offset: Volts = Field(default=0.0, ge=-1.0, le=1.0)


class PumpsConfig(_Model):
    """Pump tones and their backend."""

    backend: Literal["cw", "awg"]
    awg: str | None = None
    frequency_resolution: Hz = Field(default=10e3, gt=0)
    sample_rate: Hz | None = Field(default=None, gt=0, description="AWG: highest rate used")
    mixers: dict[str, MixerConfig] = {}
    tones: dict[str, ToneConfig]

    @field_validator("mixers", "tones")
    @classmethod
    def _names(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        return identifiers("mixer" if info.field_name == "mixers" else "tone", value)


class TargetConfig(_Model):
    """What the device should do: circulate in a sense, or isolate one way."""

    kind: Literal["circulator", "isolator"]
    sense: tuple[str, ...] | None = Field(default=None, description="circulator: a -> b -> c -> a")
    forward: tuple[str, str] | None = Field(default=None, description="isolator: (from, to)")

    @model_validator(mode="after")
    def _shape(self) -> TargetConfig:
        if self.kind == "circulator" and (self.sense is None or len(self.sense) < 3):
            raise ValueError(
                "a circulator needs sense: [a, b, c] (at least three modes); "
                "fix: list the modes in the order of circulation"
            )
        if self.kind == "isolator" and self.forward is None:
            raise ValueError(
                "an isolator needs forward: [from_mode, to_mode]; "
                "fix: add forward: with the mode signals should pass from and the one they reach"
            )
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
                f"min_current {self.min_current} must be below max_current {self.max_current}; "
                "fix: give min_current < max_current, e.g. -1 mA and 1 mA"
            )
        return self


class VNAConfig(_Model):
    """Default acquisition settings."""

    power: DBm = -30.0
    max_power: PowerLimits = Field(
        default=ranges.DEFAULT_MAX_POWER,
        description="stimulus limit, dBm: one for every port, or {port: dBm} (others -10 dBm)",
    )
    if_bandwidth: Hz = Field(default=1e3, gt=0)
    averages: Count = Field(default=1, ge=1)
    points: Count = Field(default=401, ge=2, le=100001)
    span: Hz = Field(default=150e6, gt=0)

    def port_limits(self, n_ports: int) -> dict[int, float]:
        """The stimulus limit of every VNA port 1..``n_ports``, dBm (from ``max_power``).

        A single ``max_power`` applies to every port; with ``{port: dBm}``,
        ports not listed get :data:`labnr.config_ranges.DEFAULT_MAX_POWER`.
        The session hands each to the driver (``vna.limit_power(port, dBm)``).
        """
        mp = self.max_power
        if isinstance(mp, dict):
            return {p: float(mp.get(p, ranges.DEFAULT_MAX_POWER)) for p in range(1, n_ports + 1)}
        return dict.fromkeys(range(1, n_ports + 1), float(mp))


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
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


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

    @field_validator("modes")
    @classmethod
    def _mode_names(cls, value: dict[str, ModeConfig]) -> dict[str, ModeConfig]:
        return identifiers("mode", value)

    @field_validator("name")
    @classmethod
    def _file_safe_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value) or ".." in value:
            raise ValueError(
                f"{short(value)} is not a file-safe device name (it names the calibration "
                "state file); fix: use letters, digits, '_', '-' and '.' only, e.g. jpc_circulator"
            )
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems = checks.cross_problems(self)
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


#: The fix for each kind of pydantic error ({...} filled from the error's context).
_FIXES = {
    "missing": "add the key (see configs/sim_jpc_circulator.yaml for an example)",
    "greater_than": "use a value above {gt}",
    "greater_than_equal": "use a value of at least {ge}",
    "less_than": "use a value below {lt}",
    "less_than_equal": "use a value of at most {le}",
    "literal_error": "use one of {expected}",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "int_parsing": "write a whole number, e.g. 3",
    "int_type": "write a whole number, e.g. 3",
    "int_from_float": "write a whole number, e.g. 3",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "finite_number": "write a finite number (not .nan or .inf)",
    "string_type": "write a name or text (quote it if YAML reads it as something else)",
    "dict_type": "write a mapping (indented key: value lines) under this key",
    "model_type": "write a mapping (indented key: value lines) under this key",
    "model_attributes_type": "write a mapping (indented key: value lines) under this key",
    "tuple_type": "write a list, e.g. [a, b]",
    "list_type": "write a list, e.g. [a, b]",
    "too_short": "give the number of items this key expects",
    "too_long": "give the number of items this key expects",
}
_MESSAGES = {
    "missing": "missing required key",
    "dict_type": "expected a mapping of keys",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
}


def _line(source: str, err: Any) -> list[str]:
    """The message line(s) of one pydantic error."""
    loc = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    msg = _MESSAGES.get(kind, err["msg"].removeprefix("Value error, "))
    got = err.get("input")
    hidden = isinstance(got, (dict, list, tuple)) or kind == "missing" or short(got) in msg
    shown = "" if hidden else f" (got {short(got)})"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(err["loc"])
        hint = checks.did_you_mean(str(err["loc"][-1]), allowed)
        msg = f"unknown key{hint}; fix: rename or remove it; allowed keys here: {allowed}"
        shown = ""
    elif kind != "value_error":
        ctx = {
            k: f"{v:g}" if isinstance(v, (int, float)) else v
            for k, v in (err.get("ctx") or {}).items()
        }
        try:
            fix = _FIXES.get(kind, "see configs/sim_jpc_circulator.yaml").format(**ctx)
        except (KeyError, IndexError):
            fix = "see configs/sim_jpc_circulator.yaml for a valid example"
        msg = f"{msg}; fix: {fix}"
    lines = []
    for part in msg.split("\n"):  # cross-checks of the whole file name their own key paths
        what, sep, fix = part.partition("; fix: ")
        text = f"{what}{shown}{sep}{fix}" if sep else f"{what}{shown}"
        lines.append(f"{source}: {loc}: {text}" if loc else f"{source}: {text}")
    return lines


def _format(exc: ValidationError, source: str) -> str:
    return "\n".join(line for err in exc.errors() for line in _line(source, err))


def parse_config(data: Any, source: str = "<dict>", base_dir: Path | None = None) -> Config:
    """Validate a parsed config mapping; raise :class:`ConfigError` listing every problem.

    With ``base_dir`` (the config file's folder) the files it names are
    checked too: the path rule of this module, the station file and the
    instrument names in it.
    """
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}, not a mapping of keys"
        raise ConfigError(
            f"{source}: (whole file): the file is {kind}; the file must be a mapping of keys "
            "(name:, station:, modes:, ...); fix: start from configs/sim_jpc_circulator.yaml"
        )
    if "base_dir" in data:  # a field labnr sets itself, not a key of the file
        raise ConfigError(
            f"{source}: base_dir: unknown key; fix: remove it (relative paths start at the "
            "config file's folder)"
        )
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ConfigError(
            f"{source}: (top level): keys must be names, got {bad_keys!r}; "
            "fix: write every top-level key as a name followed by a colon"
        )
    try:
        cfg = Config(**data, base_dir=base_dir or Path("."))
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None
    problems, station = [], None
    if base_dir is not None:
        problems = checks.file_problems(cfg, base_dir)
        station = checks.station_instruments(cfg, base_dir)
    problems += ranges.range_problems(cfg, station)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return cfg


def load_config(path: str | Path) -> Config:
    """Load and validate a labnr config file (YAML, safe loader)."""
    p = Path(path)
    if not p.is_file():
        what = ("is a folder, not a file" if p.is_dir()
                else "is not a regular file" if p.exists() else "not found")  # fmt: skip
        raise ConfigError(
            f"{p}: (file): config file {what}; fix: check the path (relative paths start "
            f"at {str(Path.cwd())!r})"
        )
    try:
        data = read_yaml_bounded(p, "config file")
    except YAMLProblem as exc:
        raise ConfigError("\n".join(f"{p}: {line}" for line in str(exc).splitlines())) from None
    return parse_config(data, source=str(p), base_dir=p.resolve().parent)
