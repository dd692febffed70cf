"""Which URL paths the HIS may post to: the platform paths it uses today, some with an {infno} segment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PathMatch:
    template: str
    infno: str | None


class PathTable:
    def __init__(self, templates: list[str] | tuple[str, ...]) -> None:
        self.exact = {t for t in templates if "{infno}" not in t}
        self.patterns = [tuple(t.split("{infno}", 1)) for t in templates if "{infno}" in t]

    def match(self, path: str) -> PathMatch | None:
        if path in self.exact:
            return PathMatch(path, None)
        for prefix, suffix in self.patterns:
            if path.startswith(prefix) and path.endswith(suffix) and len(path) > len(prefix) + len(suffix):
                infno = path[len(prefix) : len(path) - len(suffix)]
                if "/" not in infno:
                    return PathMatch(prefix + "{infno}" + suffix, infno)
        return None
