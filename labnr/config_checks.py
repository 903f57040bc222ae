"""Checks of a labnr config beyond single fields: cross-references and files.

Every problem is one line, ``key.path: what is wrong; fix: what to do``;
:mod:`labnr.config` prefixes the file name. :func:`cross_problems` needs only
the parsed config; :func:`file_problems` also reads the files the config
names (the station YAML) and applies the path rule of :mod:`labnr.config`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labnr.config_yaml import YAMLProblem, read_yaml_bounded

if TYPE_CHECKING:
    from labnr.config import Config

#: Largest ``max_amplitude`` a config may give a pump tone, V. The shipped
#: configs use 0.3 V; a larger number is almost always a unit slip (mV written
#: as V) and would put watts into the fridge's pump lines.
HARD_MAX_AMPLITUDE = 2.0

#: Largest |current_per_flux_quantum| the flux driver accepts, A per Phi0.
MAX_CURRENT_PER_FLUX_QUANTUM = 1.0

#: Files whose presence marks a project folder (see :func:`project_root`).
PROJECT_MARKERS = (".git", "pyproject.toml")


def problem(path: str, what: str, fix: str) -> str:
    """One line of a :class:`~labnr.config.ConfigError` (without the file name)."""
    return f"{path}: {what}; fix: {fix}"


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fmt_hz(value: float) -> str:
    return f"{value / 1e9:.6g} GHz" if value >= 1e6 else f"{value:.6g} Hz"


# ---------------------------------------------------------------------- cross checks


def cross_problems(cfg: Config) -> list[str]:
    """Every cross-reference problem of a config whose fields are each valid."""
    if not cfg.modes:  # everything else would only repeat "unknown mode"
        return _mode_problems(cfg)
    return [
        *_mode_problems(cfg),
        *_tone_problems(cfg),
        *_backend_problems(cfg),
        *_target_problems(cfg),
        *_flux_problems(cfg),
        *_section_problems(cfg),
    ]


def _mode_problems(cfg: Config) -> list[str]:
    if not cfg.modes:
        return [problem(
            "modes", "no modes are defined",
            "add the device's modes, e.g. a: {frequency: 5.31 GHz, vna_port: 1}",
        )]  # fmt: skip
    out = []
    owner: dict[int, str] = {}
    for name, mode in cfg.modes.items():
        port = mode.vna_port
        if port is not None and port in owner:
            out.append(problem(
                "modes",
                f"two modes share a VNA port ({owner[port]!r} and {name!r} on port {port})",
                f"give modes.{name}.vna_port a port of its own",
            ))  # fmt: skip
        elif port is not None:
            owner[port] = name
    return out


def _tone_problems(cfg: Config) -> list[str]:
    out = []
    names = sorted(cfg.modes)
    seen: dict[tuple[frozenset[str], str], str] = {}
    for tname, tone in cfg.pumps.tones.items():
        key = f"pumps.tones.{tname}"
        unknown = [m for m in tone.modes if m not in cfg.modes]
        for m in unknown:
            out.append(problem(
                f"{key}.modes", f"unknown mode {m!r}{did_you_mean(m, names)}; modes are {names}",
                f"use one of the modes or add {m!r} under modes:",
            ))  # fmt: skip
        if tone.modes[0] == tone.modes[1]:
            out.append(problem(
                f"{key}.modes", f"a tone drives two different modes, got {list(tone.modes)}",
                "name the two modes the tone couples, e.g. [a, b]",
            ))  # fmt: skip
        elif not unknown:
            pair = (frozenset(tone.modes), tone.kind)
            if pair in seen:
                out.append(problem(
                    f"{key}.modes",
                    f"two tones drive the same pair of modes: {seen[pair]!r} and {tname!r} "
                    f"both couple {tone.modes[0]}-{tone.modes[1]} by {tone.kind}",
                    f"remove one of them or change the modes or kind of {tname!r}",
                ))  # fmt: skip
            seen.setdefault(pair, tname)
            fa, fb = (cfg.modes[m].frequency for m in tone.modes)
            if tone.kind == "conversion" and fa == fb:
                out.append(problem(
                    f"{key}.modes",
                    f"modes {tone.modes[0]!r} and {tone.modes[1]!r} are both at {_fmt_hz(fa)}, "
                    "so the conversion pump would be at 0 Hz",
                    "check the two modes' frequencies",
                ))  # fmt: skip
        if tone.max_amplitude > HARD_MAX_AMPLITUDE:
            out.append(problem(
                f"{key}.max_amplitude",
                f"{tone.max_amplitude:g} V is above labnr's hard cap of {HARD_MAX_AMPLITUDE:g} V",
                "give the limit in V at the instrument output (e.g. 0.3 V, or 300 mV)",
            ))  # fmt: skip
        if tone.amplitude > tone.max_amplitude:
            out.append(problem(
                f"{key}.amplitude",
                f"{tone.amplitude} V exceeds max_amplitude {tone.max_amplitude} V",
                "start at or below the limit (0 V is safe)",
            ))  # fmt: skip
    return out


def _backend_problems(cfg: Config) -> list[str]:
    p = cfg.pumps
    out = []
    sources: dict[str, str] = {}
    mixer_names = sorted(p.mixers)
    for tname, t in p.tones.items():
        key = f"pumps.tones.{tname}"
        if p.backend == "cw":
            if t.source is None:
                out.append(problem(
                    f"{key}.source", "the cw backend needs the source's station name",
                    f"add source: NAME (an instrument of the station) to tone {tname!r}",
                ))  # fmt: skip
            elif t.source in sources:
                out.append(problem(
                    f"{key}.source",
                    f"source {t.source!r} already drives tone {sources[t.source]!r}",
                    "give every tone its own source (one SGS100A per tone)",
                ))  # fmt: skip
            else:
                sources[t.source] = tname
            for k in ("channel", "iq"):
                if getattr(t, k) is not None:
                    out.append(problem(
                        f"{key}.{k}", "only the awg backend uses this key",
                        "remove it, or set pumps.backend: awg",
                    ))  # fmt: skip
            continue
        if (t.channel is None) == (t.iq is None):
            out.append(problem(
                key, "the awg backend needs exactly one of channel: or iq:",
                "give either channel: N (direct synthesis) or iq: MIXER (up-conversion)",
            ))  # fmt: skip
        if t.iq is not None and t.iq not in p.mixers:
            out.append(problem(
                f"{key}.iq",
                f"{t.iq!r} is not in pumps.mixers {mixer_names}{did_you_mean(t.iq, mixer_names)}",
                f"define pumps.mixers.{t.iq}: {{i: 1, q: 2, lo: LO_NAME, lo_frequency: ...}}",
            ))  # fmt: skip
        if t.source is not None:
            out.append(problem(
                f"{key}.source", "only the cw backend uses source:",
                "remove it, or set pumps.backend: cw",
            ))  # fmt: skip
    if p.backend == "awg":
        if p.awg is None:
            out.append(problem(
                "pumps.awg", "the awg backend needs the AWG's station name",
                "add awg: NAME (the AWG5208 of the station) under pumps:",
            ))  # fmt: skip
        out += _channel_problems(cfg)
    return out


def _channel_problems(cfg: Config) -> list[str]:
    """AWG channels: each feeds at most one mixer input, and no mixer feeds a direct tone."""
    out = []
    used: dict[int, str] = {}
    for mname, m in cfg.pumps.mixers.items():
        for k in ("i", "q"):
            ch = getattr(m, k)
            if ch in used:
                out.append(problem(
                    f"pumps.mixers.{mname}.{k}",
                    f"AWG channel {ch} is already used by {used[ch]}",
                    "wire every mixer input to its own AWG channel",
                ))  # fmt: skip
            else:
                used[ch] = f"pumps.mixers.{mname}.{k}"
    for tname, t in cfg.pumps.tones.items():
        if t.channel is not None and t.channel in used:
            out.append(problem(
                f"pumps.tones.{tname}.channel",
                f"AWG channel {t.channel} is the input {used[t.channel]}",
                "use a channel no mixer is wired to, or iq: with that mixer",
            ))  # fmt: skip
    return out


def _target_problems(cfg: Config) -> list[str]:
    t = cfg.target
    names = sorted(cfg.modes)
    out = []
    key, listed = ("target.sense", t.sense or ()) if t.kind == "circulator" else (
        "target.forward", t.forward or ())
    other = "target.forward" if t.kind == "circulator" else "target.sense"
    if (t.forward if t.kind == "circulator" else t.sense) is not None:
        out.append(problem(
            other, f"a {t.kind} does not use this key", f"remove it (a {t.kind} uses {key})",
        ))  # fmt: skip
    for i, m in enumerate(listed):
        if m not in cfg.modes:
            out.append(problem(
                key, f"unknown mode {m!r}{did_you_mean(m, names)}; modes are {names}",
                f"use one of the modes or add {m!r} under modes:",
            ))  # fmt: skip
        elif m in listed[:i]:
            out.append(problem(
                key, f"mode {m!r} appears twice in {list(listed)}",
                "list each mode once, e.g. [a, b, c] for a -> b -> c -> a",
            ))  # fmt: skip
        elif cfg.modes[m].vna_port is None:
            out.append(problem(
                key, f"mode {m!r} has no vna_port, so its path cannot be measured",
                f"give modes.{m}.vna_port, or target modes that are wired to the VNA",
            ))  # fmt: skip
    if not out and cfg.pumps.tones and not _tone_problems(cfg):
        out += _coupling_problems(cfg, key, listed)
    return out


def _coupling_problems(cfg: Config, key: str, listed: Iterable[str]) -> list[str]:
    """Target modes must be linked by chains of pump tones (else nothing can route)."""
    links: dict[str, set[str]] = {m: set() for m in cfg.modes}
    for tone in cfg.pumps.tones.values():
        a, b = tone.modes
        links[a].add(b)
        links[b].add(a)
    listed = list(listed)
    reached, todo = {listed[0]}, [listed[0]]
    while todo:
        for nxt in links[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    return [
        problem(
            key, f"mode {m!r} is not coupled to {listed[0]!r} by any chain of pump tones",
            f"add a tone under pumps.tones that couples {m!r} to the other target modes",
        )
        for m in listed if m not in reached
    ]  # fmt: skip


def _flux_problems(cfg: Config) -> list[str]:
    f = cfg.flux
    if f is None or f.min_current >= f.max_current:  # the order is checked with the section
        return []
    out = []
    if not f.min_current <= 0.0 <= f.max_current:
        side = "flux.min_current" if f.min_current > 0 else "flux.max_current"
        out.append(problem(
            side, f"the range [{f.min_current:g}, {f.max_current:g}] A excludes 0 A, where "
            "the output is switched on and off",
            "widen the range so that min_current <= 0 <= max_current",
        ))  # fmt: skip
    if not f.min_current <= f.offset_current <= f.max_current:
        out.append(problem(
            "flux.offset_current",
            f"{f.offset_current:g} A (zero flux) lies outside the flux range "
            f"[{f.min_current:g}, {f.max_current:g}] A",
            "widen min_current/max_current to include the offset, or correct the offset",
        ))  # fmt: skip
    q = f.current_per_flux_quantum
    if q is not None and not 0 < abs(q) <= MAX_CURRENT_PER_FLUX_QUANTUM:
        out.append(problem(
            "flux.current_per_flux_quantum",
            f"{q:g} A per flux quantum must be non-zero and at most "
            f"{MAX_CURRENT_PER_FLUX_QUANTUM:g} A in size",
            "give the coil's design value, e.g. 1 mA (calibration measures it)",
        ))  # fmt: skip
    if f.max_step > f.max_current - f.min_current:
        out.append(problem(
            "flux.max_step", f"{f.max_step:g} A is larger than the whole flux range",
            "use a step of a few uA (the largest change between ramp breakpoints)",
        ))  # fmt: skip
    return out


def _section_problems(cfg: Config) -> list[str]:
    out = []
    if cfg.simulate and cfg.virtual_lab is None:
        out.append(problem(
            "virtual_lab", "simulate: true needs virtual_lab: {device: PRESET}",
            "add virtual_lab: {device: jpc_circulator} or set simulate: false",
        ))  # fmt: skip
    tunable = [m for m, c in cfg.modes.items() if c.flux_tunable]
    if tunable and cfg.flux is None:
        out.append(problem(
            "flux", f"flux-tunable modes need a flux: section with limits ({tunable} are tunable)",
            "add flux: {min_current: -1 mA, max_current: 1 mA, ramp_rate: 100 uA/s, "
            "max_step: 5 uA}",
        ))  # fmt: skip
    if cfg.flux is not None and cfg.instruments.flux is None:
        out.append(problem(
            "instruments.flux", "a flux: section needs the flux source's station name",
            "add flux: NAME under instruments:",
        ))  # fmt: skip
    return out


# ---------------------------------------------------------------------- files


def project_root(config_dir: Path) -> Path:
    """The project folder of a config: nearest ancestor with ``.git`` or ``pyproject.toml``.

    Without such a marker it is the config folder's parent (configs usually
    sit in ``<project>/configs/``).
    """
    config_dir = config_dir.resolve()
    for folder in (config_dir, *config_dir.parents):
        if any((folder / m).exists() for m in PROJECT_MARKERS):
            return folder
    return config_dir.parent


def confined(value: str, config_dir: Path, root: Path) -> tuple[Path, str | None]:
    """``value`` resolved against ``config_dir`` (symlinks too); a problem text if it escapes.

    Absolute paths (also ``~/...``) are explicit user choices and always allowed.
    """
    try:
        raw = Path(value).expanduser()
        resolved = raw.resolve() if raw.is_absolute() else (config_dir / raw).resolve()
    except (ValueError, OSError, RuntimeError) as exc:  # a NUL byte, a symlink loop, no $HOME
        return Path(config_dir), f"{value!r} is not a usable path ({exc})"
    if raw.is_absolute() or resolved.is_relative_to(root):
        return resolved, None
    return resolved, (
        f"{value!r} resolves to {str(resolved)!r}, outside the project folder {str(root)!r}"
    )


def _station_names(cfg: Config) -> list[tuple[str, str]]:
    """(key path, station name) of every instrument the config refers to."""
    out = [("instruments.vna", cfg.instruments.vna)]
    if cfg.instruments.flux is not None:
        out.append(("instruments.flux", cfg.instruments.flux))
    p = cfg.pumps
    if p.backend == "cw":
        out += [(f"pumps.tones.{n}.source", t.source) for n, t in p.tones.items() if t.source]
    else:
        out += [("pumps.awg", p.awg)] if p.awg else []
        out += [(f"pumps.mixers.{n}.lo", m.lo) for n, m in p.mixers.items()]
    return out


def file_problems(cfg: Config, config_dir: Path) -> list[str]:
    """Problems of the files a config names: escaping paths, missing or bad station file."""
    root = project_root(config_dir)
    out = []
    paths = [("station", cfg.station), ("storage.database", cfg.storage.database),
             ("storage.data_dir", cfg.storage.data_dir)]  # fmt: skip
    device = cfg.virtual_lab.device if cfg.virtual_lab is not None else ""
    if device.endswith((".yaml", ".yml")):
        paths.append(("virtual_lab.device", device))
    resolved: dict[str, Path] = {}
    for key, value in paths:
        resolved[key], escape = confined(value, config_dir, root)
        if escape and "not a usable path" in escape:
            out.append(problem(key, escape, "write a plain file path"))
        elif escape:
            out.append(problem(
                key, escape,
                "keep relative paths inside the project, or write an absolute path to choose "
                "a place outside it deliberately",
            ))  # fmt: skip
    if out:
        return out
    for key in ("storage.data_dir", "storage.database"):
        kind_ok = resolved[key].is_dir() if key == "storage.database" else resolved[key].is_file()
        if kind_ok:
            other = "a folder" if key == "storage.database" else "a file"
            out.append(problem(
                key, f"{str(resolved[key])!r} is {other}",
                "point database: at a .db file and data_dir: at a folder",
            ))  # fmt: skip
    if "virtual_lab.device" in resolved and not resolved["virtual_lab.device"].is_file():
        out.append(problem(
            "virtual_lab.device", f"device file {device!r} not found",
            "give a preset name (jpc_circulator, em_circulator) or an existing device YAML",
        ))  # fmt: skip
    return out + _station_problems(cfg, resolved["station"])


def _read_station(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the station's ``instruments:`` mapping, None) or (None, what is wrong with the file)."""
    try:
        data: Any = read_yaml_bounded(path, "station file")
    except YAMLProblem as exc:
        return None, "; ".join(f"{w}: {what}" for w, what, _ in exc.problems)
    entries = data.get("instruments") if isinstance(data, dict) else None
    return (entries, None) if isinstance(entries, dict) else (None, "no instruments:")


def station_instruments(cfg: Config, config_dir: Path) -> dict[str, Any] | None:
    """The ``instruments:`` mapping of the config's station file; None if it cannot be read."""
    path, escape = confined(cfg.station, config_dir, project_root(config_dir))
    return None if escape or not path.is_file() else _read_station(path)[0]


def _station_problems(cfg: Config, path: Path) -> list[str]:
    where = f"station file {cfg.station!r}"
    if not path.is_file():
        return [problem(
            "station", f"{where} not found (looked for {str(path)!r})",
            "give the QCoDeS station YAML's path, relative to the config file's folder",
        )]  # fmt: skip
    entries, bad = _read_station(path)
    if bad == "no instruments:" or entries is None and bad is None:
        return [problem(
            "station", f"{where} has no instruments: mapping",
            "point station: at a QCoDeS station YAML (see configs/station_sim.yaml)",
        )]  # fmt: skip
    if entries is None:
        return [problem("station", f"{where} is refused: {bad}",
                        "fix the station file (YAML syntax, size, UTF-8 text)")]  # fmt: skip
    known = sorted(str(k) for k in entries)
    return [
        problem(
            key, f"{name!r} is not an instrument of {where}{did_you_mean(name, known)}; "
            f"it has {known}",
            "use one of those names or add the instrument to the station file",
        )
        for key, name in _station_names(cfg) if name not in entries
    ]  # fmt: skip
