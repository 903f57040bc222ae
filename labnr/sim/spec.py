"""Device description files of the virtual lab (``configs/devices/*.yaml``).

A device file holds the *true* parameters of a simulated device — the numbers
calibration must find out through instruments. Every key is checked on load:
an unknown key, a missing one or a bad value raises :class:`SpecError` naming
the file, the key path and what is allowed.

See ``configs/devices/jpc_circulator.yaml`` for a documented example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labnr.config_yaml import YAMLProblem, read_yaml_bounded


class SpecError(ValueError):
    """A device file is malformed; the message names file, key path and the fix."""


class _Reader:
    """Walks a parsed YAML mapping and records the key path for errors."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        self.data = data
        self.path = path
        self.source = source

    def fail(self, msg: str) -> SpecError:
        return SpecError(f"{self.source}: {self.path or '<top>'}: {msg}")

    def mapping(self, allowed: set[str], required: set[str] = frozenset()) -> None:
        if not isinstance(self.data, dict):
            raise self.fail(f"expected a mapping, got {type(self.data).__name__} {self.data!r}")
        unknown = sorted(set(map(str, self.data)) - allowed)
        if unknown:
            raise self.fail(f"unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")
        missing = sorted(required - set(self.data))
        if missing:
            raise self.fail(f"missing required key(s) {missing}")

    def child(self, key: str | int) -> _Reader:
        sub = f"{self.path}.{key}" if self.path else str(key)
        return _Reader(self.data[key], sub, self.source)

    def get(self, key: str, default: Any = None) -> _Reader | None:
        if isinstance(self.data, dict) and key in self.data:
            return self.child(key)
        return None if default is None else _Reader(default, f"{self.path}.{key}", self.source)

    def number(self, minimum: float | None = None, maximum: float | None = None) -> float:
        v = self.data
        if isinstance(v, str):
            # YAML 1.1 reads 5.2e9 (no sign in the exponent) as a string.
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(f"{v!r} is not a number; write it in SI units, e.g. 5.2e9 for 5.2 GHz")
        v = float(v)
        if not math.isfinite(v):
            raise self.fail(f"{v!r} is not allowed; it must be finite")
        if minimum is not None and v < minimum:
            raise self.fail(f"{v!r} is not allowed; it must be >= {minimum:g}")
        if maximum is not None and v > maximum:
            raise self.fail(f"{v!r} is not allowed; it must be <= {maximum:g}")
        return v

    def integer(self, minimum: int | None = None) -> int:
        v = self.data
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(f"{v!r} is not an integer")
        if minimum is not None and v < minimum:
            raise self.fail(f"{v!r} is not allowed; it must be >= {minimum}")
        return v

    def string(self, choices: set[str] | None = None) -> str:
        v = self.data
        if not isinstance(v, str) or not v:
            raise self.fail(f"{v!r} is not a non-empty string")
        if choices is not None and v not in choices:
            raise self.fail(f"{v!r} is not allowed; choose one of {sorted(choices)}")
        return v

    def boolean(self) -> bool:
        if not isinstance(self.data, bool):
            raise self.fail(f"{self.data!r} is not true/false")
        return self.data


@dataclass(frozen=True)
class ModeSpec:
    """One mode of the device (true values)."""

    name: str
    frequency: float  # Hz; the sweet-spot (maximum) frequency for a tunable mode
    kappa_ext: float
    kappa_int: float
    vna_port: int | None
    flux_tunable: bool
    stark_per_volt2: float  # Hz per V^2 of total pump amplitude at the device
    frequency_drift: float = (
        0.0  # Hz / sqrt(s), random walk (e.g. thermal drift of a mechanical mode)
    )


@dataclass(frozen=True)
class LinkSpec:
    """A pumpable process between two modes: conversion (difference) or gain (sum)."""

    a: str
    b: str
    kind: str  # "conversion" | "gain"
    coupling_per_volt: float  # Hz of g per V of resonant tone amplitude at the device


@dataclass(frozen=True)
class PumpLineSpec:
    """The line from one pump source output to the device (unknown to calibration)."""

    name: str
    source: dict[
        str, Any
    ]  # {"sgs": name} | {"awg": channel} | {"iq": {"i": ch, "q": ch, "lo": name}}
    attenuation_db: float
    phase: float  # rad, the line phase at t = 0
    phase_drift: float  # rad / sqrt(s), random walk
    amplitude_drift: float  # fractional / sqrt(s), random walk
    iq_gain_imbalance: float = 0.0  # fractional Q/I gain error of the IQ mixer
    iq_phase_imbalance: float = 0.0  # rad, quadrature error of the IQ mixer


@dataclass(frozen=True)
class FluxSpec:
    """Flux bias: Phi/Phi0 = (I - offset_current) / current_per_flux_quantum + drift."""

    source: str
    current_per_flux_quantum: float  # A
    offset_current: float  # A
    drift: float  # Phi0 / sqrt(s), random walk
    noise: float  # Phi0 rms, white, per acquisition


@dataclass(frozen=True)
class LineSpec:
    """A VNA-side line: gain (dB), delay (s) and a fixed phase (rad)."""

    gain_db: float
    delay: float
    phase: float


@dataclass(frozen=True)
class ChainSpec:
    """The measurement chain between the VNA and the device."""

    input_lines: dict[int, LineSpec]
    output_lines: dict[int, LineSpec]
    leakage_db: float  # direct port-to-port leakage, relative to a unity through path
    noise_db: float  # rms ratio noise at 1 kHz IFBW, 1 average, 0 dBm source power


@dataclass(frozen=True)
class InstrumentsSpec:
    """Names of the emulated instruments the lab serves."""

    vna: str = "vna"
    awg: str | None = None
    sources: tuple[str, ...] = ()
    flux: str | None = None


@dataclass(frozen=True)
class DeviceSpec:
    """A whole simulated device, as loaded from a device file."""

    name: str
    description: str
    modes: dict[str, ModeSpec]
    links: list[LinkSpec]
    pump_lines: dict[str, PumpLineSpec]
    flux: FluxSpec | None
    chain: ChainSpec
    instruments: InstrumentsSpec
    coupling_window: float = 3.0  # a tone couples a pair within this many linewidths
    source: str = "<dict>"
    extra: dict[str, Any] = field(default_factory=dict)


def _mode(r: _Reader, name: str) -> ModeSpec:
    r.mapping(
        {
            "frequency",
            "kappa_ext",
            "kappa_int",
            "vna_port",
            "flux_tunable",
            "stark_per_volt2",
            "frequency_drift",
        },
        {"frequency"},
    )
    port = r.get("vna_port")
    return ModeSpec(
        name=name,
        frequency=r.child("frequency").number(minimum=0.0),
        kappa_ext=r.get("kappa_ext", 0.0).number(minimum=0.0),
        kappa_int=r.get("kappa_int", 0.0).number(minimum=0.0),
        vna_port=None if port is None else port.integer(minimum=1),
        flux_tunable=r.get("flux_tunable", False).boolean(),
        stark_per_volt2=r.get("stark_per_volt2", 0.0).number(),
        frequency_drift=r.get("frequency_drift", 0.0).number(minimum=0.0),
    )


def _link(r: _Reader, modes: dict[str, ModeSpec]) -> LinkSpec:
    r.mapping({"modes", "kind", "coupling_per_volt"}, {"modes", "kind", "coupling_per_volt"})
    m = r.child("modes")
    if not isinstance(m.data, list) or len(m.data) != 2:
        raise m.fail(f"{m.data!r} must be a list of two mode names, e.g. [a, b]")
    a, b = (m.child(i).string(set(modes)) for i in range(2))
    if a == b:
        raise m.fail(f"a link needs two different modes, got [{a}, {b}]")
    return LinkSpec(
        a,
        b,
        r.child("kind").string({"conversion", "gain"}),
        r.child("coupling_per_volt").number(minimum=0.0),
    )


def _pump_line(r: _Reader, name: str, inst: InstrumentsSpec) -> PumpLineSpec:
    r.mapping(
        {
            "source",
            "attenuation_db",
            "phase",
            "phase_drift",
            "amplitude_drift",
            "iq_gain_imbalance",
            "iq_phase_imbalance",
        },
        {"source"},
    )
    s = r.child("source")
    s.mapping({"sgs", "awg", "iq"})
    if len(s.data) != 1:
        raise s.fail("give exactly one of sgs: NAME, awg: CHANNEL, iq: {i:, q:, lo:}")
    (kind,) = s.data
    if kind == "sgs":
        src = {"sgs": s.child("sgs").string(set(inst.sources))}
    elif kind == "awg":
        src = {"awg": s.child("awg").integer(minimum=1)}
    else:
        iq = s.child("iq")
        iq.mapping({"i", "q", "lo"}, {"i", "q", "lo"})
        src = {
            "iq": {
                "i": iq.child("i").integer(1),
                "q": iq.child("q").integer(1),
                "lo": iq.child("lo").string(set(inst.sources)),
            }
        }
    if ("awg" in src or "iq" in src) and inst.awg is None:
        raise s.fail("an AWG source needs instruments.awg to name the AWG")
    return PumpLineSpec(
        name=name,
        source=src,
        attenuation_db=r.get("attenuation_db", 0.0).number(),
        phase=r.get("phase", 0.0).number(),
        phase_drift=r.get("phase_drift", 0.0).number(minimum=0.0),
        amplitude_drift=r.get("amplitude_drift", 0.0).number(minimum=0.0),
        iq_gain_imbalance=r.get("iq_gain_imbalance", 0.0).number(minimum=-0.5, maximum=0.5),
        iq_phase_imbalance=r.get("iq_phase_imbalance", 0.0).number(minimum=-0.5, maximum=0.5),
    )


def _line(r: _Reader) -> LineSpec:
    r.mapping({"gain_db", "delay", "phase"})
    return LineSpec(
        r.get("gain_db", 0.0).number(),
        r.get("delay", 0.0).number(minimum=0.0),
        r.get("phase", 0.0).number(),
    )


def _chain(r: _Reader) -> ChainSpec:
    r.mapping({"input_lines", "output_lines", "leakage_db", "noise_db"})
    lines = {}
    for key in ("input_lines", "output_lines"):
        sub = r.get(key, {})
        sub.mapping({str(k) for k in sub.data} if isinstance(sub.data, dict) else set())
        out = {}
        for port in sub.data:
            p = _Reader(port, f"{sub.path}.{port}", r.source).integer(minimum=1)
            out[p] = _line(sub.child(port))
        lines[key] = out
    return ChainSpec(
        lines["input_lines"],
        lines["output_lines"],
        r.get("leakage_db", -200.0).number(maximum=0.0),
        r.get("noise_db", -200.0).number(maximum=0.0),
    )


def _instruments(r: _Reader) -> InstrumentsSpec:
    r.mapping({"vna", "awg", "sources", "flux"}, {"vna"})
    srcs = r.get("sources", [])
    if not isinstance(srcs.data, list):
        raise srcs.fail(f"{srcs.data!r} must be a list of source names")
    awg, flux = r.get("awg"), r.get("flux")
    return InstrumentsSpec(
        vna=r.child("vna").string(),
        awg=None if awg is None else awg.string(),
        sources=tuple(srcs.child(i).string() for i in range(len(srcs.data))),
        flux=None if flux is None else flux.string(),
    )


def parse_device(data: Any, source: str = "<dict>") -> DeviceSpec:
    """Validate a parsed device file and return its :class:`DeviceSpec`."""
    r = _Reader(data, "", source)
    r.mapping(
        {
            "name",
            "description",
            "modes",
            "links",
            "pump_lines",
            "flux",
            "measurement",
            "instruments",
            "coupling_window",
        },
        {"name", "modes", "links", "pump_lines", "measurement", "instruments"},
    )
    inst = _instruments(r.child("instruments"))
    mr = r.child("modes")
    mr.mapping({str(k) for k in mr.data} if isinstance(mr.data, dict) else set())
    if not mr.data:
        raise mr.fail("a device needs at least one mode")
    modes = {str(k): _mode(mr.child(k), str(k)) for k in mr.data}
    ports = [m.vna_port for m in modes.values() if m.vna_port is not None]
    if len(ports) != len(set(ports)):
        raise mr.fail(f"two modes share a VNA port: {ports}")
    for m in modes.values():
        if m.vna_port is not None and m.kappa_ext <= 0:
            raise mr.fail(f"mode {m.name!r} has vna_port {m.vna_port} but kappa_ext = 0")
    lr = r.child("links")
    if not isinstance(lr.data, list):
        raise lr.fail("links must be a list of {modes: [a, b], kind:, coupling_per_volt:}")
    links = [_link(lr.child(i), modes) for i in range(len(lr.data))]
    pr = r.child("pump_lines")
    pr.mapping({str(k) for k in pr.data} if isinstance(pr.data, dict) else set())
    lines = {str(k): _pump_line(pr.child(k), str(k), inst) for k in pr.data}
    flux = None
    if (fr := r.get("flux")) is not None:
        fr.mapping(
            {"source", "current_per_flux_quantum", "offset_current", "drift", "noise"},
            {"source", "current_per_flux_quantum"},
        )
        src = fr.child("source").string()
        if src != inst.flux:
            raise fr.child("source").fail(f"{src!r} is not the flux instrument ({inst.flux!r})")
        cpf = fr.child("current_per_flux_quantum").number()
        if cpf == 0:
            raise fr.child("current_per_flux_quantum").fail("0 is not allowed")
        flux = FluxSpec(
            src,
            cpf,
            fr.get("offset_current", 0.0).number(),
            fr.get("drift", 0.0).number(minimum=0.0),
            fr.get("noise", 0.0).number(minimum=0.0),
        )
    return DeviceSpec(
        name=r.child("name").string(),
        description=str(r.data.get("description", "")),
        modes=modes,
        links=links,
        pump_lines=lines,
        flux=flux,
        chain=_chain(r.child("measurement")),
        instruments=inst,
        coupling_window=r.get("coupling_window", 3.0).number(minimum=0.0),
        source=source,
    )


def load_device(path: str | Path) -> DeviceSpec:
    """Load and validate a device file.

    Parameters
    ----------
    path : str or Path
        A YAML file, or the name of a shipped preset (``"jpc_circulator"``,
        ``"em_circulator"``) looked up in ``configs/devices/``.
    """
    p = Path(path)
    if not p.suffix and not p.exists():
        p = presets_dir() / f"{path}.yaml"
    if not p.is_file():
        raise SpecError(f"device file {str(path)!r} not found (looked at {p})")
    try:  # bounded: size, nodes, aliases, nesting (labnr.config_yaml)
        data = read_yaml_bounded(p, "device file")
    except YAMLProblem as exc:
        raise SpecError("\n".join(f"{p}: {line}" for line in str(exc).splitlines())) from None
    return parse_device(data, source=str(p))


def presets_dir() -> Path:
    """Folder of the shipped device presets."""
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "configs" / "devices", here.parent / "devices"):
        if cand.is_dir():
            return cand
    return here.parents[2] / "configs" / "devices"
