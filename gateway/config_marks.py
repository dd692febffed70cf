"""What a reload may change under a running daemon, read from the marks next to each field of gateway.config.

A field annotated LIVE takes its new value on reload; one annotated RESTART keeps its running value until the
next start, and a reload names it. A section's field may carry the mark for the whole section (it then changes
as a unit, named by the section's path); a section without one has every field marked. The marks are the only
place this is written: the daemon's reload, its report and the tests all read them through this module.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gateway.config import Applies, Config


def mark_of(info: FieldInfo) -> Applies | None:
    marks = [m for m in info.metadata if isinstance(m, Applies)]
    return marks[0] if marks else None


def section_of(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (`Section` or `Section | None`), or None for a plain value."""
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def problems(model: type[BaseModel] = Config, prefix: str = "", *, inside_mark: bool = False) -> list[str]:
    """Fields with no mark of their own nor from their section, fields with two, and marks inside a section
    already marked as a whole (the rule would be written twice). Empty when every field is covered once."""
    found: list[str] = []
    for name, info in model.model_fields.items():
        path = prefix + name
        marks = [m for m in info.metadata if isinstance(m, Applies)]
        section = section_of(info.annotation)
        if len(marks) > 1:
            found.append(f"{path}: marked {len(marks)} times")
        if marks and inside_mark:
            found.append(f"{path}: marked inside a section that is marked as a whole")
        if not marks and not inside_mark and section is None:
            found.append(f"{path}: no LIVE/RESTART mark (gateway.config.Applies)")
        if section is not None:
            found += problems(section, path + ".", inside_mark=inside_mark or bool(marks))
    return found


def keep_running(old: Config, new: Config) -> tuple[Config, list[str]]:
    """`new` with every RESTART field that changed set back to its running value in `old`, and the dotted paths
    of those fields (what a reload reports as waiting for a restart)."""
    changed: list[str] = []
    kept = _walk(Config, old, new, "", changed)
    assert isinstance(kept, Config)
    return kept, changed


def _walk(
    model: type[BaseModel], old: BaseModel | None, new: BaseModel | None, prefix: str, changed: list[str]
) -> BaseModel | None:
    # An absent optional section compares as its defaults: dropping `policy:` changes no firewall setting.
    update: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        o = getattr(old, name) if old is not None else info.get_default(call_default_factory=True)
        n = getattr(new, name) if new is not None else info.get_default(call_default_factory=True)
        mark = mark_of(info)
        if mark is None:
            section = section_of(info.annotation)
            assert section is not None, f"{prefix}{name} has no mark"  # problems() is empty: tested
            sub = _walk(section, o, n, f"{prefix}{name}.", changed)
            if new is not None and sub is not n:
                update[name] = sub
        elif mark is Applies.RESTART and o != n:
            changed.append(prefix + name)
            if new is not None:
                update[name] = o
    if new is None or not update:
        return new
    return new.model_copy(update=update)
