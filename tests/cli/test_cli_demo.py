"""The README's main command (for now ``labnr demo``) and the command line."""

import subprocess
import sys
from pathlib import Path

import pytest

from labnr.cli import main


def test_demo_prints_permutation_and_saves_plot(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # b <- a and a <- c transmit with 0 dB at the centre; reverse paths are nulls.
    lines = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.strip().startswith(("a ", "b ", "c "))
    }
    assert "0.0 dB" in lines["b"].split("< -240 dB")[0]
    assert "> 200 dB (ideal)" in out
    png = tmp_path / "circulator_smatrix.png"
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_argument_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--kappa", "-1", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "kappa=-1.0 is not allowed" in err


def test_console_entry_point_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "labnr", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.startswith("labnr ")


@pytest.mark.parametrize("argv", [[], ["nonsense"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
