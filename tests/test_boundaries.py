"""Architecture boundaries of DESIGN.md, enforced by AST checks.

- Truth firewall: labnr.measure, labnr.fit, labnr.calibrate, labnr.lock and the
  drivers never import labnr.sim (absolute or relative imports, anywhere in a file).
- No SCPI strings in labnr/ outside the emulators (labnr/sim).
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIREWALLED = ["labnr/measure", "labnr/fit", "labnr/calibrate", "labnr/lock", "drivers"]
SCPI_RE = re.compile(
    r"^\s*:?(\*IDN\?|\*OPC\?|\*RST|\*CLS|(SENS|SENSe|CALC|CALCulate|SOUR|SOURce|OUTP|OUTPut|"
    r"INIT|INITiate|FORM|FORMat|DISP|TRIG|SYST|SYSTem|MMEM|WLIS|AWGC|CLOC)\d*[: ?])"
)


def _package_of(path: Path, root: Path) -> list[str]:
    rel = path.relative_to(root).with_suffix("").parts
    if rel[0] == "drivers":
        rel = ("labnr",) + rel
    return list(rel[:-1])


def sim_imports(folder: Path, root: Path) -> list[str]:
    """Every import of labnr.sim in the .py files under ``folder``."""
    hits = []
    for path in sorted(folder.rglob("*.py")):
        pkg = _package_of(path, root)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = pkg[: len(pkg) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            bad = [n for n in names if n == "labnr.sim" or n.startswith("labnr.sim.")]
            if bad:
                hits.append(f"{path.relative_to(root)}:{node.lineno} imports {bad[0]}")
    return hits


def scpi_strings(folder: Path, root: Path) -> list[str]:
    """String constants that look like SCPI commands."""
    hits = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and SCPI_RE.match(node.value)
            ):
                hits.append(f"{path.relative_to(root)}:{node.lineno}: {node.value[:40]!r}")
    return hits


def test_truth_firewall() -> None:
    existing = [ROOT / f for f in FIREWALLED if (ROOT / f).exists()]
    assert ROOT / "drivers" in existing
    hits = [h for folder in existing for h in sim_imports(folder, ROOT)]
    assert hits == []


def test_firewall_check_catches_violations(tmp_path: Path) -> None:
    pkg = tmp_path / "labnr" / "lock"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text("import labnr.sim.lab\n")
    (pkg / "b.py").write_text("def f():\n    from ..sim import VirtualLab\n")
    (pkg / "c.py").write_text("from labnr import sim\n")
    (pkg / "ok.py").write_text("from labnr.model import Network\nfrom .. import model\n")
    hits = sim_imports(pkg, tmp_path)
    assert len(hits) == 3, hits
    assert {h.split(":")[0] for h in hits} == {
        "labnr/lock/a.py",
        "labnr/lock/b.py",
        "labnr/lock/c.py",
    }


def test_no_scpi_outside_drivers_and_emulators() -> None:
    hits = []
    for sub in (ROOT / "labnr").iterdir():
        if sub.is_dir() and sub.name != "sim":
            hits += scpi_strings(sub, ROOT)
    top = [h for h in scpi_strings(ROOT / "labnr", ROOT) if h.count("/") == 1]
    assert hits + top == []


def test_scpi_check_catches_strings(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("CMD = 'SENS1:FREQ:STAR 1e9'\nOK = 'sensor frequency'\n")
    assert len(scpi_strings(tmp_path, tmp_path)) == 1
