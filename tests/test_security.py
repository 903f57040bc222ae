"""Security basics of issue #8.

- The virtual lab's emulators listen on IPv4 loopback only, and a server asked
  to bind elsewhere refuses.
- No unsafe deserialisation or code execution in labnr/, drivers/ and
  experiments/ (an AST scan, itself tested on a snippet with every violation).
- Paths from configs are resolved against the config file and confined to the
  project folder unless absolute (the rule in :mod:`labnr.config`); the
  device name, which names the calibration state file, cannot leave its folder.
"""

from __future__ import annotations

import ast
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from labnr.calibrate.state import state_path
from labnr.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["labnr", "drivers", "experiments"]

# ---------------------------------------------------------------------- loopback only


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """inode -> (address, port) of this process's listening TCP sockets (Linux /proc)."""
    mine = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(int(target[8:-1]))
    out = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state != "0A" or inode not in mine:  # 0A: LISTEN
                continue
            hexaddr, hexport = local.split(":")
            raw = bytes.fromhex(hexaddr)
            if v6:
                words = b"".join(raw[k : k + 4][::-1] for k in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, words)
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            out[inode] = (addr, int(hexport, 16))
    return out


def test_virtual_lab_listens_on_loopback_only() -> None:
    from labnr.sim.lab import VirtualLab

    before = _listening_sockets()
    with VirtualLab("jpc_circulator", seed=1) as lab:
        new = {k: v for k, v in _listening_sockets().items() if k not in before}
        ports = {int(a.split("::")[2]) for a in lab.addresses.values()}
        assert len(ports) == len(lab.instruments) >= 5
        assert sorted(p for _, p in new.values()) == sorted(ports)  # nothing else listens
        assert {a for a, _ in new.values()} == {"127.0.0.1"}
        for server in lab.servers.values():  # the same, from the sockets themselves
            assert server._listener is not None
            assert server._listener.getsockname()[0] == "127.0.0.1"
            assert server.address.startswith("TCPIP::127.0.0.1::")
    assert not {k for k in _listening_sockets() if k not in before}  # all closed


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "", "192.168.1.10", "::", "::1", "example.com", "10.0.0.1", "127.1"]
)
def test_server_refuses_non_loopback_hosts(host: str) -> None:
    from labnr.sim.instruments.server import SCPIServer
    from labnr.sim.lab import VirtualLab

    instrument = next(iter(VirtualLab("jpc_circulator", seed=1).instruments.values()))
    before = _listening_sockets()
    with pytest.raises(ValueError, match="loopback only"):
        SCPIServer(instrument, host=host).start()
    assert _listening_sockets() == before  # refused before any socket was bound


# ---------------------------------------------------------------------- AST scan

_BANNED_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve"}
_UNSAFE_YAML = {
    "unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader",
    "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader",
}  # fmt: skip
_SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _yaml_load_is_safe(call: ast.Call) -> bool:
    loader = next((k.value for k in call.keywords if k.arg == "Loader"), None)
    if loader is None and len(call.args) > 1:
        loader = call.args[1]
    return loader is not None and _dotted(loader).rpartition(".")[2] in _SAFE_LOADERS


def security_violations(source: str, filename: str = "<snippet>") -> list[str]:
    """Unsafe deserialisation, eval/exec, shell subprocesses and pickled numpy loads."""
    hits = []

    def hit(node: ast.AST, what: str) -> None:
        hits.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in _BANNED_MODULES:
                    hit(node, f"imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in _BANNED_MODULES:
                hit(node, f"imports from {node.module}")
            if root == "yaml":
                for alias in node.names:
                    if alias.name in _UNSAFE_YAML or alias.name in ("load", "load_all"):
                        hit(node, f"imports yaml.{alias.name}")
        elif isinstance(node, ast.Attribute) and _dotted(node.value) == "yaml":
            if node.attr in _UNSAFE_YAML:
                hit(node, f"uses yaml.{node.attr}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            hit(node, f"calls {name}")
        if name in ("yaml.load", "yaml.load_all") and not _yaml_load_is_safe(node):
            hit(node, f"{name} without SafeLoader")
        if name in ("os.system", "os.popen") or name.endswith("create_subprocess_shell"):
            hit(node, f"calls {name} (a shell)")
        for kw in node.keywords:
            literal_false = isinstance(kw.value, ast.Constant) and kw.value.value is False
            if kw.arg == "shell" and not literal_false:
                hit(node, f"{name}(..., shell=...)")
            if kw.arg == "allow_pickle" and not literal_false:
                hit(node, f"{name}(..., allow_pickle=...)")
    return hits


VIOLATIONS = '''
import pickle
import marshal as m
import shelve
from cloudpickle import loads
import numpy as np, subprocess, yaml, os
from yaml import unsafe_load
eval("1 + 1")
exec("x = 1")
yaml.load(text)
yaml.load(text, Loader=yaml.FullLoader)
yaml.full_load(text)
subprocess.run("ls", shell=True)
subprocess.Popen(cmd, shell=flag)
os.system("ls")
np.load("x.npy", allow_pickle=True)
'''

CLEAN = '''
import numpy as np, subprocess, yaml
from yaml import safe_load
yaml.safe_load(text)
yaml.load(text, Loader=yaml.SafeLoader)
yaml.load(text, yaml.CSafeLoader)
subprocess.run(["ls", "-l"], shell=False, check=True)
np.load("x.npy")
np.load("x.npy", allow_pickle=False)
literal = "eval(x); import pickle"
model.eval()
'''


def test_scan_finds_every_kind_of_violation() -> None:
    found = security_violations(VIOLATIONS)
    lines = sorted(int(h.split(":")[1]) for h in found)
    # every line of the snippet but the harmless 'import numpy, subprocess, yaml, os'
    expected = [
        n for n, line in enumerate(VIOLATIONS.splitlines(), 1)
        if line and not line.startswith("import numpy")
    ]  # fmt: skip
    assert len(expected) == 14
    assert sorted(set(lines)) == expected, found
    assert any("yaml.FullLoader" in h for h in found)
    assert security_violations(CLEAN) == []


def test_no_unsafe_calls_in_the_code() -> None:
    files = [p for d in SCANNED for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 50
    hits = [h for p in files for h in security_violations(p.read_text(), str(p.relative_to(ROOT)))]
    assert hits == []


def test_config_with_python_tag_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"name: !!python/object/apply:pathlib.Path.touch [{str(marker)!r}]\n")
    with pytest.raises(ConfigError, match=r"evil.yaml: line 1, column 7: .*not valid YAML"):
        load_config(bad)
    assert not marker.exists()


# ---------------------------------------------------------------------- config paths


def _project(tmp_path: Path, marker: str | None = None) -> Path:
    """A project folder with configs/station.yaml and configs/cfg.yaml (the JPC config)."""
    project = tmp_path / "proj"
    (project / "configs").mkdir(parents=True)
    if marker:
        (project / marker).touch()
    shutil.copy(ROOT / "configs" / "station_sim.yaml", project / "configs" / "station.yaml")
    return project


def _write(project: Path, sub: str = "configs", **changes: object) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "sim_jpc_circulator.yaml").read_text())
    data["station"] = "station.yaml"
    data["storage"] = {"database": "../out/labnr.db", "data_dir": "../out/data"}
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    path = project / sub / "cfg.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_storage_stays_in_the_project() -> None:
    for name in ("sim_jpc_circulator.yaml", "sim_em_circulator.yaml"):
        cfg = load_config(ROOT / "configs" / name)
        assert cfg.path(cfg.storage.database) == ROOT / "labnr_output" / "labnr.db"
        assert cfg.path(cfg.storage.data_dir) == ROOT / "labnr_output" / "data"


def test_relative_paths_inside_project_are_resolved_against_the_config(tmp_path: Path) -> None:
    project = _project(tmp_path)  # no marker: the project is the config folder's parent
    cfg = load_config(_write(project))
    assert cfg.path(cfg.storage.database) == (project / "out" / "labnr.db").resolve()
    assert cfg.path(cfg.station) == (project / "configs" / "station.yaml").resolve()


@pytest.mark.parametrize(
    ("key", "value"),
    [("storage__database", "../../labnr.db"), ("storage__data_dir", "../../../data"),
     ("storage__data_dir", "sub/../../../data"), ("station", "../../station.yaml")],
)  # fmt: skip
def test_relative_paths_escaping_the_project_are_refused(tmp_path: Path, key, value) -> None:
    project = _project(tmp_path)
    path = _write(project, **{key: value})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: {key.replace('__', '.')}: {value!r} resolves to")
    assert f"outside the project folder {str(project.resolve())!r}" in msg
    assert "write an absolute path" in msg


def test_absolute_and_home_paths_are_explicit_choices(tmp_path: Path) -> None:
    project = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    path = _write(project, storage={"database": str(elsewhere / "x.db"), "data_dir": "~/labnr"})
    cfg = load_config(path)
    assert cfg.path(cfg.storage.database) == elsewhere / "x.db"
    assert cfg.path(cfg.storage.data_dir) == Path.home() / "labnr"


def test_symlinks_are_resolved_before_the_check(tmp_path: Path) -> None:
    project = _project(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / "configs" / "out_link").symlink_to(outside, target_is_directory=True)
    (project / "configs" / "in_link").symlink_to(project / "data", target_is_directory=True)
    bad = _write(project, storage={"database": "out_link/x.db", "data_dir": "in_link"})
    with pytest.raises(ConfigError, match=r"storage.database: 'out_link/x.db' resolves to"):
        load_config(bad)
    good = _write(project, storage={"database": "in_link/x.db", "data_dir": "in_link"})
    assert load_config(good).path("in_link") == project / "data"


def test_project_folder_is_the_repository_root(tmp_path: Path) -> None:
    project = _project(tmp_path, marker="pyproject.toml")
    sub, station = "lab/setups/configs", "../../../configs/station.yaml"
    inside = {"database": "../../../out/x.db", "data_dir": "../../../out"}
    deep = _write(project, sub=sub, station=station, storage=inside)
    assert load_config(deep).path("../../../out") == (project / "out").resolve()
    outside = {"database": "../../../../x.db", "data_dir": "../../../out"}
    shallow = _write(project, sub=sub, station=station, storage=outside)
    with pytest.raises(ConfigError, match="outside the project folder"):
        load_config(shallow)


@given(st.text(min_size=1, max_size=30))
def test_a_valid_name_keeps_the_state_file_in_its_folder(name: str) -> None:
    data = yaml.safe_load((ROOT / "configs" / "sim_jpc_circulator.yaml").read_text())
    data["name"] = name
    try:
        cfg = parse_config(data, source="c.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("c.yaml: name: ")
        assert "fix: use letters, digits" in str(exc)
        assert "/" in name or "\\" in name or ".." in name or not name[0].isalnum() or not (
            name.isascii() and name.replace("_", "").replace("-", "").replace(".", "").isalnum()
        )
        return
    folder = Path("/data/dir")
    assert "/" not in cfg.name and "\\" not in cfg.name and ".." not in cfg.name
    assert state_path(folder, cfg.name).parent == folder
    assert state_path(folder, cfg.name).name == f"calibration_{cfg.name.strip('._')}.yaml"
