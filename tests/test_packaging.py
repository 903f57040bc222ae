"""The package installs what the repository holds, and the model stays pure."""

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _package_dirs() -> set[str]:
    found = set()
    for init in (ROOT / "labnr").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        found.add(".".join(rel.parts))
    for init in (ROOT / "drivers").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "drivers")
        found.add(".".join(("labnr", "drivers") + rel.parts))
    return found


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    missing = _package_dirs() - listed
    assert not missing, (
        f"add these packages to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    )


def test_model_imports_nothing_else_from_labnr() -> None:
    for path in (ROOT / "labnr" / "model").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labnr"):
                assert node.module.startswith("labnr.model"), f"{path}: imports {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("labnr"):
                        assert alias.name.startswith("labnr.model"), f"{path}: imports {alias.name}"
