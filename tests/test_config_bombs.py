"""Hostile YAML files: refused with one clear line in well under a second and bounded memory.

Before the bounded reader, a "billion laughs" alias bomb hung the
duplicate-key check (an exponential walk over aliased subtrees) and a
3-million-item list took > 90 s and 2.2 GB. Every case here is refused by
:func:`labnr.config.load_config`, by :func:`labnr.config.load_yaml_bounded`
(station files, as the session reads them) and by the device loader of the
virtual lab, in < 1 s each and with a peak of Python allocations far below
the size that the file would expand to.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

# the range checks read the driver tables (and so import qcodes) on first use: a
# one-time cost, imported here so that it is not timed as part of a refusal
import labnr.drivers.keysight_pna_params  # noqa: F401
from labnr.config import ConfigError, load_config, load_yaml_bounded
from labnr.config_yaml import MAX_ALIASES, MAX_BYTES, MAX_DEPTH, MAX_NODES, read_yaml_bounded
from labnr.sim.spec import SpecError, load_device

ROOT = Path(__file__).resolve().parents[1]
BASE = (
    (ROOT / "tests" / "config_corpus" / "ok_jpc.yaml").read_text()
    .replace("../../configs/", str(ROOT / "configs") + "/")
    .replace("../../labnr_output/", "out/")
)  # fmt: skip

#: Wall-clock bound of one refusal, s (they take milliseconds; this is the brief's bound).
REFUSAL_SECONDS = 1.0
#: Peak of Python allocations during one refusal: the file itself (<= 1 MiB, read
#: once as bytes and once as text) plus the bounded parse; far below any expansion.
PEAK_BYTES = 4 * MAX_BYTES


def _laughs(levels: int) -> str:
    """An alias bomb: ``levels`` levels of nine aliases, 9**levels values once expanded."""
    out = "lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels + 1):
        out += f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]\n"
    return out


#: name -> (YAML text appended to a valid config, fragment of the one-line refusal)
BOMBS: dict[str, tuple[Callable[[], str], str]] = {
    "billion_laughs": (lambda: _laughs(9), "(an alias bomb?)"),
    "laughs_in_a_mapping": (
        lambda: "a: &a {x: 1, y: 1}\n" + "".join(
            f"{c}: &{c} {{" + ", ".join(f"k{k}: *{p}" for k in range(9)) + "}\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "(an alias bomb?)",
    ),  # fmt: skip
    "three_million_items": (lambda: "extra:\n" + "- 0\n" * 3_000_000, "larger than 1048576"),
    "list_within_size": (lambda: "extra: [" + "0," * 500_000 + "0]\n", "more than 10000 values"),
    "deep_nesting": (lambda: "extra: " + "[" * 100_000 + "]" * 100_000 + "\n", "deeper than"),
    "deep_mappings": (lambda: "extra: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "deeper"),
    "recursive_alias": (lambda: "extra: &x {a: [*x]}\n", "contains itself"),
    "many_aliases": (lambda: "v: &v 1\nextra: [" + ", ".join(["*v"] * 5000) + "]\n", "aliases"),
    "long_value": (lambda: "extra: " + "x" * 200_000 + "\n", "characters"),
    "huge_integer": (lambda: "extra: " + "7" * 10_000 + "\n", "an integer of 10000 digits"),
    "long_digit_quantity": (lambda: "", "is not a quantity"),  # frequency replaced below
}


def _bomb_file(tmp_path: Path, name: str) -> Path:
    make, _ = BOMBS[name]
    text = BASE.replace("storage:", make() + "storage:", 1)
    if name == "long_digit_quantity":  # quadratic backtracking bait for the unit pattern
        text = BASE.replace("frequency: 5.31 GHz", "frequency: '" + "1" * 16_000 + "x'", 1)
    path = tmp_path / "configs" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _refusal(call: Callable[[], object], error: type[Exception]) -> tuple[str, float, int]:
    """(message, seconds, peak bytes) of a call that must raise ``error``."""
    start = time.perf_counter()
    with pytest.raises(error) as info:
        call()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    try:
        with pytest.raises(error):
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(info.value), seconds, peak


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_config_bomb_is_refused_fast_in_one_line(tmp_path: Path, name: str) -> None:
    path = _bomb_file(tmp_path, name)
    message, seconds, peak = _refusal(lambda: load_config(path), ConfigError)
    assert seconds < REFUSAL_SECONDS, f"{name}: {seconds:.2f} s"
    assert peak < PEAK_BYTES, f"{name}: {peak / 2**20:.1f} MiB"
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: ") and "; fix: " in message
    assert BOMBS[name][1] in message, message


@pytest.mark.parametrize("name", ["billion_laughs", "three_million_items", "recursive_alias"])
def test_station_and_device_bombs_are_refused(tmp_path: Path, name: str) -> None:
    path = _bomb_file(tmp_path, name)
    message, seconds, _ = _refusal(lambda: load_yaml_bounded(path, "station file"), ConfigError)
    assert seconds < REFUSAL_SECONDS and BOMBS[name][1] in message
    assert "station file" in message or "1048576" in message
    message, seconds, _ = _refusal(lambda: load_device(path), SpecError)
    assert seconds < REFUSAL_SECONDS and BOMBS[name][1] in message


def test_config_with_bomb_station_names_the_station(tmp_path: Path) -> None:
    station = tmp_path / "configs" / "station.yaml"
    station.parent.mkdir()
    station.write_text("instruments: {vna: {type: x}}\n" + _laughs(9))
    config = tmp_path / "configs" / "cfg.yaml"
    config.write_text(BASE.replace(str(ROOT / "configs" / "station_sim.yaml"), "station.yaml"))
    message, seconds, _ = _refusal(lambda: load_config(config), ConfigError)
    assert seconds < REFUSAL_SECONDS
    assert message.startswith(f"{config}: station: station file 'station.yaml' is refused: ")
    assert "alias bomb" in message and len(message.splitlines()) == 1


def test_duplicate_key_under_many_aliases_is_reported_once(tmp_path: Path) -> None:
    # the old walk visited an aliased mapping once per alias (9**9 times in a bomb)
    path = tmp_path / "dup.yaml"
    path.write_text("base: &b {x: 1, x: 2}\n" + "".join(f"k{i}: *b\n" for i in range(50)))
    with pytest.raises(ConfigError) as info:
        load_yaml_bounded(path, "station file")
    assert str(info.value).splitlines() == [
        f"{path}: base.x: key 'x' is given twice (lines 1 and 1); YAML would silently keep "
        "only the second; fix: merge the two entries into one"
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a: [" + ", ".join(["0"] * (MAX_NODES - 3)) + "]\n", None),  # 1 + 1 + 1 + N - 3
        ("a: [" + ", ".join(["0"] * (MAX_NODES - 2)) + "]\n", "more than 10000 values"),
        ("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n", None),
        ("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n", "deeper than 32 levels"),
        ("v: &v 1\na: [" + ", ".join(["*v"] * MAX_ALIASES) + "]\n", None),
        ("v: &v 1\na: [" + ", ".join(["*v"] * (MAX_ALIASES + 1)) + "]\n", "more than 200 aliases"),
        ("a: " + "9" * 30 + "\n", None),
        ("a: " + "9" * 31 + "\n", "an integer of 31 digits"),
    ],
    ids=["nodes-ok", "nodes-over", "depth-ok", "depth-over", "aliases-ok", "aliases-over",
         "digits-ok", "digits-over"],  # fmt: skip
)
def test_bounds_are_exact(tmp_path: Path, text: str, fragment: str | None) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    if fragment is None:
        assert read_yaml_bounded(path) == yaml.safe_load(text)
    else:
        with pytest.raises(ConfigError, match=fragment):
            load_yaml_bounded(path)


def test_size_bound_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("a: " + "x" * 10 + "\n#" + " " * (MAX_BYTES - 16) + "\n")
    assert path.stat().st_size == MAX_BYTES and load_yaml_bounded(path) == {"a": "x" * 10}
    path.write_text(path.read_text() + " ")
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        load_yaml_bounded(path)


@pytest.mark.parametrize(
    "path",
    [
        *sorted((ROOT / "configs").glob("*.yaml")),
        *sorted((ROOT / "configs" / "devices").glob("*.yaml")),
    ],
    ids=lambda p: p.name,
)
def test_shipped_files_read_as_with_the_safe_loader(path: Path) -> None:
    assert load_yaml_bounded(path, "shipped file") == yaml.safe_load(path.read_text())
