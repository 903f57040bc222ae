"""A corpus of broken experiment configs: each gives one clear line per problem.

``tests/config_corpus/*.yaml`` holds 154 broken configs (most are one edit of
a valid config, ``ok_*.yaml``; ``bomb_*`` are denial-of-service files, refused
by the bounded reader, ``range_*``/``plaus_*``/``power_*``/``name_*`` values an
instrument could not take or that are unit slips), each starting with
``# expect: <text>`` lines,
one per problem the file has (`` ... `` separates fragments of one line). For
each file, :func:`load_config` must raise :class:`ConfigError` (never another
exception, no chained traceback), with exactly one line per expected problem,
every line naming the file, a key path and a fix (``file: key.path: what;
fix: how``), and no pydantic boilerplate. Two paths that are not files (none,
a folder) make 156 broken configs in all; all 156 give a clear message. A
few go through ``labnr calibrate`` too: exit code 2, the message on stderr,
no traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labnr.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "config_corpus"
BROKEN = sorted(p for p in CORPUS.glob("*.yaml") if not p.name.startswith("ok_"))
VALID = sorted(CORPUS.glob("ok_*.yaml"))

#: ``file: key path: what is wrong; fix: how`` (the key path may be a YAML line/column
#: or ``(file)``, ``(whole file)``, ``(top level)`` for problems of the file itself)
LINE = re.compile(r"^(?P<file>.+?): (?P<key>[\w.\[\]]+|line \d+, column \d+|\([a-z ]+\)): "
                  r"(?P<what>.+?); fix: (?P<fix>\S.+)$")  # fmt: skip
BOILERPLATE = ("pydantic", "For further information", "errors.pydantic.dev", "Traceback",
               "type=", "validation error", "input_value")  # fmt: skip


def expectations(path: Path) -> list[str]:
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    return [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]


def check_message(msg: str, source: str, expected: list[str]) -> None:
    lines = msg.splitlines()
    assert len(lines) == len(expected), f"one line per problem expected:\n{msg}"
    for line in lines:
        m = LINE.match(line)
        assert m is not None, f"not 'file: key: what; fix: how': {line!r}"
        assert m["file"] == source
        assert len(m["fix"]) > 8, line
        assert not any(b in line for b in BOILERPLATE), line
    unmatched = list(lines)
    for text in expected:  # each expectation is met by a line of its own
        parts = text.split(" ... ")  # fragments of one line
        hit = next((line for line in unmatched if all(p in line for p in parts)), None)
        assert hit is not None, f"{text!r} not in:\n{msg}"
        unmatched.remove(hit)


def test_corpus_is_large() -> None:
    assert len(BROKEN) >= 150
    assert all(expectations(p) for p in BROKEN), "every corpus file says what it expects"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_corpus_bases_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.path(cfg.station).is_file()


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_config_gives_one_clear_line_per_problem(path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.type is ConfigError
    # no chained traceback from deep inside (pydantic, yaml, the file system)
    assert exc.value.__cause__ is None
    assert exc.value.__context__ is None or exc.value.__suppress_context__
    check_message(str(exc.value), str(path), expectations(path))


def test_paths_that_are_not_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as exc:
        load_config(missing)
    check_message(str(exc.value), str(missing), ["(file): config file not found"])
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    check_message(str(exc.value), str(tmp_path), ["(file): config file is a folder"])


CLI_CASES = ["key_typo_mode_frequency", "unit_current_in_ghz", "file_yaml_unclosed_bracket",
             "unknown_instrument_vna", "path_database_escapes", "bomb_alias_billion_laughs",
             "power_above_max_power"]  # fmt: skip


@pytest.mark.parametrize("stem", CLI_CASES)
def test_cli_reports_broken_config_without_traceback(stem: str) -> None:
    path = CORPUS / f"{stem}.yaml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "labnr.cli", "calibrate", str(path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.startswith("labnr calibrate: error: ")
    message = proc.stderr.removeprefix("labnr calibrate: error: ").rstrip("\n")
    check_message(message, str(path), expectations(path))
