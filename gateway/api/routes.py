"""Which URL paths the HIS may post to: the paths of the province gateways HIS code is written for.

A template is a path whose segments may hold placeholders: `{infno}` (the transaction number, a whole segment or
inside one, as in `/CSB/hsa-fsi-{infno}`), `{*}` (any one segment: a paasid, an environment name) and `{**}`
(one or more segments). A path matches the first template that fits it; an exact path is looked up first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\{[^}]*\}")
_PARTS = {"{infno}": r"(?P<infno>[^/]+)", "{*}": r"[^/]+", "{**}": r"[^/]+(?:/[^/]+)*"}


@dataclass(frozen=True)
class PathMatch:
    template: str
    #: the infno the path names (the envelope's must be the same), None where the path names none
    infno: str | None


def template_problem(template: str) -> str | None:
    """Why `template` is not a usable path template, or None."""
    if not template.startswith("/"):
        return "a path starts with /"
    unknown = [p for p in _PLACEHOLDER.findall(template) if p not in _PARTS]
    if unknown or template.count("{") != len(_PLACEHOLDER.findall(template)):
        return "the placeholders are {infno} (once), {*} (one segment) and {**} (one or more segments)"
    if template.count("{infno}") > 1:
        return "{infno} may appear once"
    if any(("{*}" in seg and seg != "{*}") or ("{**}" in seg and seg != "{**}") for seg in template.split("/")):
        return "{*} and {**} stand for whole segments"
    return None


def _compile(template: str) -> re.Pattern[str]:
    pieces = _PLACEHOLDER.split(template)
    holders = _PLACEHOLDER.findall(template)
    regex = re.escape(pieces[0]) + "".join(_PARTS[h] + re.escape(p) for h, p in zip(holders, pieces[1:], strict=True))
    return re.compile(regex)


class PathTable:
    def __init__(self, templates: list[str] | tuple[str, ...]) -> None:
        self.exact = {t for t in templates if "{" not in t}
        self.patterns = [(t, _compile(t)) for t in templates if "{" in t]

    def match(self, path: str) -> PathMatch | None:
        if path in self.exact:
            return PathMatch(path, None)
        for template, pattern in self.patterns:
            m = pattern.fullmatch(path)
            if m is not None:
                return PathMatch(template, m.groupdict().get("infno"))
        return None
