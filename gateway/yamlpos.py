"""YAML loading that remembers where every value stood, so errors can name file:line:column.

PyYAML's composer already records a mark on every node; this turns the node tree into plain values and a
table from field path to position. Duplicate keys, which PyYAML silently lets the last one win, are errors:
in a policy or config file a duplicated key is nearly always a mistake that would otherwise go unnoticed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.errors import ConfigError, Position

Loc = tuple[str | int, ...]
#: values one document may expand to. Aliases are expanded, so ten lines of nested anchors can stand for 10⁹ values
#: ("billion laughs"); a real policy or config holds a few thousand.
MAX_VALUES = 200_000


class Located:
    """Values parsed from one YAML document with the position of each path."""

    def __init__(self, value: Any, positions: dict[Loc, Position], file: str) -> None:
        self.value = value
        self.positions = positions
        self.file = file

    def position(self, loc: Loc) -> Position:
        """The position of `loc`, or of its nearest enclosing value that has one."""
        for end in range(len(loc), -1, -1):
            pos = self.positions.get(tuple(loc[:end]))
            if pos is not None:
                return pos
        return Position(self.file, 1, 1)


def _pos(file: str, node: yaml.Node) -> Position:
    return Position(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(
    node: yaml.Node,
    loc: Loc,
    file: str,
    positions: dict[Loc, Position],
    problems: list[tuple[Position | None, str, str]],
) -> Any:
    positions[loc] = _pos(file, node)
    if len(positions) > MAX_VALUES:
        raise ConfigError([(_pos(file, node), _dotted(loc), f"more than {MAX_VALUES} values (an alias expanding?)")])
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = (
                yaml.SafeLoader.construct_scalar(_SCALAR_LOADER, key_node)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if not isinstance(key, str):
                problems.append((_pos(file, key_node), _dotted(loc), "mapping keys must be plain strings"))
                continue
            if key in out:
                problems.append((_pos(file, key_node), _dotted((*loc, key)), "duplicate key"))
                continue
            out[key] = _convert(value_node, (*loc, key), file, positions, problems)
            # Point errors about a key (unknown field) at the key itself, not at its value.
            positions[(*loc, key)] = (
                _pos(file, key_node) if not isinstance(value_node, yaml.ScalarNode) else _pos(file, value_node)
            )
            positions[(*loc, key, "__key__")] = _pos(file, key_node)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*loc, i), file, positions, problems) for i, item in enumerate(node.value)]
    try:
        return _SCALAR_LOADER.construct_object(node, deep=True)
    except (ValueError, TypeError, LookupError, AttributeError):
        # PyYAML's constructors fail with these where a value does not fit its tag: 2020-13-45 (read as a date),
        # !!int x, an empty !!int, !!bool x, !!timestamp x.
        tag = node.tag.rpartition(":")[2]
        problems.append((_pos(file, node), _dotted(loc), f"{node.value!r} is not a valid {tag}"))
        return None
    finally:
        # The constructor remembers every node it built, which would keep each document loaded alive for good.
        _SCALAR_LOADER.constructed_objects.clear()
        _SCALAR_LOADER.recursive_objects.clear()


_SCALAR_LOADER = yaml.SafeLoader("")


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if part == "__key__":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def dotted(loc: Loc) -> str:
    return _dotted(loc)


def load_yaml(text: str, file: str) -> Located:
    """Parse one YAML document; syntax errors and duplicate keys raise ConfigError with positions."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigError([(None, "", "YAML nested too deeply")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(file, mark.line + 1, mark.column + 1) if mark else None
        raise ConfigError([(pos, "", f"YAML syntax: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([(None, "", f"YAML: {exc}")]) from None
    positions: dict[Loc, Position] = {}
    problems: list[tuple[Position | None, str, str]] = []
    if node is None:
        return Located({}, {(): Position(file, 1, 1)}, file)
    try:
        value = _convert(node, (), file, positions, problems)
    except RecursionError:
        raise ConfigError(
            [(_pos(file, node), "", "YAML nested too deeply, or an alias inside its own anchor")]
        ) from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        pos = Position(file, mark.line + 1, mark.column + 1) if mark else None
        raise ConfigError([(pos, "", f"YAML value: {exc.problem}")]) from None
    if problems:
        raise ConfigError(problems)
    return Located(value, positions, file)


def load_yaml_file(path: Path) -> Located:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([(None, "", f"cannot read {path}: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([(Position(str(path), 1, 1), "", f"not UTF-8 (byte {exc.start})")]) from None
    return load_yaml(text, str(path))


def validation_problems(exc: ValidationError, located: Located) -> list[tuple[Position | None, str, str]]:
    """pydantic's errors as (position, field path, message), in file order. An unknown field is pointed at by
    its key; anything else by its value."""
    problems: list[tuple[Position | None, str, str]] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = (*loc, "__key__") if err["type"] == "extra_forbidden" else loc
        problems.append((located.position(key), dotted(loc), _describe(err)))
    problems.sort(key=lambda p: (p[0].line, p[0].column) if p[0] else (0, 0))
    return problems


def _describe(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required field is missing"
    return str(err["msg"]).removeprefix("Value error, ")
