"""Bounded YAML reading for every file labnr reads from a user (configs, stations, devices).

A YAML file is text a user (or an attacker) controls, so it is read within
fixed bounds, each checked before the next step costs anything:

1. **size**: at most :data:`MAX_BYTES` are read (a larger file is refused
   unread, a device like ``/dev/zero`` too);
2. **events**: the libyaml parser (the pure-Python one if libyaml is
   missing) streams the file's events, and reading stops at the first that
   exceeds :data:`MAX_NODES` nodes, :data:`MAX_ALIASES` aliases,
   :data:`MAX_DEPTH` levels of nesting or :data:`MAX_SCALAR_CHARS` characters
   in one value;
3. **graph**: the composed node graph is measured *with aliases expanded*
   (memoised per node, so a "billion laughs" costs its few dozen nodes):
   at most :data:`MAX_NODES` expanded nodes and :data:`MAX_DEPTH` levels,
   and no alias that contains itself;
4. **values**: keys given twice in one mapping (YAML would keep the last
   silently) and integers longer than :data:`MAX_INT_DIGITS` digits are
   refused, naming the key path;

and only then are Python objects constructed (safe constructor only). A
refusal is a :class:`ConfigError` with one line per problem, ``file:
where: what; fix: how``, raised in milliseconds whatever the file holds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = [
    "MAX_ALIASES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_NODES",
    "MAX_SCALAR_CHARS",
    "ConfigError",
    "YAMLProblem",
    "load_yaml_bounded",
    "read_yaml_bounded",
    "yaml_error_text",
]

#: Largest file read, bytes (labnr's configs, stations and device files are a few kB).
MAX_BYTES = 1 << 20
#: Most YAML nodes (values, lists, mappings), counted with aliases expanded.
MAX_NODES = 10_000
#: Most aliases (``*name``) in one file.
MAX_ALIASES = 200
#: Deepest nesting of lists and mappings, counted with aliases expanded.
MAX_DEPTH = 32
#: Longest single value, characters (a path is at most 4096).
MAX_SCALAR_CHARS = 16_384
#: Longest integer, digits (a 64-bit integer has 20; Python refuses > 4300).
MAX_INT_DIGITS = 30

_SAFE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT_TAG = "tag:yaml.org,2002:int"
_FIX_SMALL = "labnr's files are a few kB; check that this is the file you meant"


class ConfigError(ValueError):
    """A config file is invalid; the message lists file, key path and the fix for each problem."""


class YAMLProblem(ValueError):
    """A YAML file was refused; ``problems`` holds (where, what, fix) of every reason.

    ``where`` is ``line L, column C``, a key path or ``(file)``.
    """

    def __init__(self, where: str, what: str, fix: str, *more: tuple[str, str, str]) -> None:
        self.problems: tuple[tuple[str, str, str], ...] = ((where, what, fix), *more)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{w}: {what}; fix: {fix}" for w, what, fix in self.problems)


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """``line L, column C: problem`` of a YAML error (1-based, as editors count)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return str(what)
    text = f"{_at(mark)}: {what}"
    start = getattr(exc, "context_mark", None)
    context = getattr(exc, "context", None)
    if start is not None and context and start is not mark:
        text += f" ({context} at {_at(start)})"
    return text


# ---------------------------------------------------------------------- 1-2: bytes, events


def _read_text(path: Path, what: str) -> str:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YAMLProblem("(file)", f"the {what} cannot be read ({exc.strerror})",
                          "check that it exists and its permissions") from None  # fmt: skip
    if len(raw) > MAX_BYTES:
        raise YAMLProblem(
            "(file)", f"the {what} is larger than {MAX_BYTES} bytes (1 MiB); labnr refuses it "
            "unread", _FIX_SMALL,
        )  # fmt: skip
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YAMLProblem("(file)", f"not UTF-8 text (byte {exc.start})",
                          f"save the {what} as UTF-8 YAML") from None  # fmt: skip


#: Quoted strings and comments: their brackets do not nest.
_NOT_FLOW = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"|#[^\n]*")


def _check_flow_depth(text: str, what: str) -> None:
    """Refuse deep ``[``/``{`` nesting from the text alone, before any parser sees it.

    Some libyaml builds take time quadratic in the flow nesting depth, so the
    event stream below is not a bound for it.
    """
    table = np.zeros(256, dtype=np.int32)
    table[[ord("["), ord("{")]], table[[ord("]"), ord("}")]] = 1, -1
    raw, depth, deepest, chunk = _NOT_FLOW.sub("", text).encode("utf-8", "replace"), 0, 0, 1 << 14
    for start in range(0, len(raw), chunk):  # in chunks: bounded memory
        run = depth + np.cumsum(table[np.frombuffer(raw, np.uint8, min(chunk, len(raw) - start),
                                                    start)])  # fmt: skip
        depth, deepest = int(run[-1]), max(deepest, int(run.max()))
    if deepest > MAX_DEPTH:
        raise YAMLProblem(
            "(file)", f"the {what} nests lists and mappings deeper than {MAX_DEPTH} levels",
            "flatten the structure (a config nests 4 levels)",
        )  # fmt: skip


def _check_events(text: str, what: str) -> None:
    """Stream the parser's events; refuse at the first one beyond a bound."""
    _check_flow_depth(text, what)
    nodes = aliases = depth = 0
    for event in yaml.parse(text, Loader=_SAFE_LOADER):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise YAMLProblem(
                    _at(event.start_mark), f"the {what} has more than {MAX_ALIASES} aliases "
                    "(*name)", "write the values out instead of repeating aliases",
                )  # fmt: skip
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        nodes += 1
        if nodes > MAX_NODES:
            raise YAMLProblem(
                _at(event.start_mark), f"the {what} has more than {MAX_NODES} values, lists and "
                "mappings (an over-long list?)", _FIX_SMALL,
            )  # fmt: skip
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YAMLProblem(
                    _at(event.start_mark), f"the {what} nests lists and mappings deeper than "
                    f"{MAX_DEPTH} levels", "flatten the structure (a config nests 4 levels)",
                )  # fmt: skip
        elif isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR_CHARS:
            raise YAMLProblem(
                _at(event.start_mark), f"a value of {len(event.value)} characters (at most "
                f"{MAX_SCALAR_CHARS})", "shorten the value; names, quantities and paths are short",
            )  # fmt: skip


# ---------------------------------------------------------------------- 3-4: node graph


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_graph(root: yaml.Node, what: str) -> None:
    """Expanded node count and depth of the graph, memoised per node (no exponential walk)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = int(not isinstance(node, yaml.ScalarNode)) + max(
                (depth[id(k)] for k in kids), default=0
            )
            if size[key] > MAX_NODES or depth[key] > MAX_DEPTH:
                raise YAMLProblem(
                    _at(node.start_mark), f"aliases in the {what} expand to more than "
                    f"{MAX_NODES} values or {MAX_DEPTH} levels (an alias bomb?)",
                    "write the values out instead of nesting aliases",
                )  # fmt: skip
            continue
        if key in size:
            continue
        if key in depth:  # entered, not finished: reached again from inside itself
            raise YAMLProblem(_at(node.start_mark), f"an alias in the {what} contains itself",
                              "remove the recursive alias")  # fmt: skip
        depth[key] = -1
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


def _value_problems(root: yaml.Node) -> list[tuple[str, str, str]]:
    """Duplicate keys and over-long integers, each mapping walked once (aliases are memoised)."""
    out: list[tuple[str, str, str]] = []
    seen: set[int] = set()

    def walk(node: yaml.Node, path: str) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            digits = sum(c.isdigit() for c in node.value)
            if node.tag == _INT_TAG and digits > MAX_INT_DIGITS:
                out.append((
                    path or _at(node.start_mark),
                    f"an integer of {digits} digits ({node.value[:12]}...)",
                    "write a number of sensible size (a config's numbers have a few digits)",
                ))  # fmt: skip
        elif isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key_node, value in node.value:
                key = str(key_node.value)
                here = f"{path}.{key}" if path else key
                line = key_node.start_mark.line + 1
                if key in lines:
                    out.append((
                        here, f"key {key!r} is given twice (lines {lines[key]} and {line}); "
                        "YAML would silently keep only the second",
                        "merge the two entries into one",
                    ))  # fmt: skip
                lines[key] = line
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for k, item in enumerate(node.value):
                walk(item, f"{path}[{k}]")

    walk(root, "")
    return out


def _python_error(text: str) -> yaml.YAMLError | None:
    """The pure-Python parser's error for ``text`` (its messages are clearer than libyaml's).

    Only called after libyaml found an error within the bounds, so this
    parse stops at that error, within the same bounds.
    """
    try:
        for count, _ in enumerate(yaml.parse(text, Loader=yaml.SafeLoader)):
            if count > 2 * MAX_NODES + MAX_ALIASES:
                return None
    except yaml.YAMLError as exc:
        return exc
    return None


# ---------------------------------------------------------------------- public


def read_yaml_bounded(path: str | Path, what: str = "YAML file") -> Any:
    """Read one YAML document within the bounds of this module.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What the file is, for messages (``"config file"``, ``"station file"``).

    Returns
    -------
    Any
        The document (None for an empty file), built by the safe constructor.

    Raises
    ------
    YAMLProblem
        The first problem that stops reading (size, encoding, syntax, a bound),
        or every duplicate key and over-long integer.
    """
    text = _read_text(Path(path), what)
    try:
        _check_events(text, what)
        loader = _SAFE_LOADER(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            _check_graph(root, what)
            problems = _value_problems(root)
            if problems:
                raise YAMLProblem(*problems[0], *problems[1:])
            return loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        where, _, what_ = yaml_error_text(_python_error(text) or exc).partition(": ")
        if not what_:
            where, what_ = "(file)", where
        raise YAMLProblem(
            where, f"{what_}: not valid YAML",
            "check the indentation, colons and quotes on that line and the one before",
        ) from None


def load_yaml_bounded(path: str | Path, what: str = "YAML file") -> Any:
    """Read one YAML document within bounds; refuse with a :class:`ConfigError`.

    The public entry for every YAML file labnr reads from a user (station
    files, device files, configs). See the module docstring for the bounds.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What the file is, for messages (``"station file"``, ``"device file"``).

    Returns
    -------
    Any
        The document (None for an empty file).

    Raises
    ------
    ConfigError
        One line per problem, ``path: where: what; fix: how``.
    """
    try:
        return read_yaml_bounded(path, what)
    except YAMLProblem as exc:
        raise ConfigError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())) from None
