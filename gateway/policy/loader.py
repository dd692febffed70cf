"""Policy files → one validated, compiled Policy, or a PolicyError listing every problem with its position.

Merge order (documented in policies/README.md): the configured paths in the order given; a directory stands
for its *.yaml and *.yml files (not hidden, not recursive) in byte order of their names. Sections are joined,
never overridden: a group, client or window defined twice, a uid/gid/network claimed by two clients, or an
upstream listed twice is an error naming both places, because a silent override is how a policy grows a hole.
Nothing is compiled until every file has been read and every problem collected.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from gateway.errors import ConfigError, Position
from gateway.yamlpos import Located, dotted, load_yaml

from .engine import Callback, Client, Matcher, Policy, Rate, Rule, Window, _Net
from .errors import PolicyError
from .model import ClientSpec, PolicyFile, RateSpec, day_index, minutes

Problem = tuple[Position | None, str, str]


@dataclass(frozen=True)
class _Parsed:
    located: Located
    doc: PolicyFile

    def at(self, *loc: str | int) -> Position:
        return self.located.position(tuple(loc))


def discover(paths: Sequence[Path]) -> list[Path]:
    """The files a list of configured paths stands for, in merge order."""
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")),
                key=lambda p: p.name.encode(),
            )
            files.extend(p for p in found if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            problems.append((None, "", f"{path}: no such policy file or directory"))
    if problems:
        raise PolicyError(problems)
    if not files:
        raise PolicyError([(None, "", f"no policy files in {', '.join(map(str, paths))} (default deny: write one)")])
    return files


def load_policy(paths: Sequence[Path]) -> Policy:
    sources: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for file in discover(paths):
        try:
            sources.append((str(file), file.read_bytes().decode("utf-8")))
        except OSError as exc:
            problems.append((None, "", f"cannot read {file}: {exc.strerror}"))
        except UnicodeDecodeError as exc:
            problems.append((Position(str(file), 1, 1), "", f"not UTF-8 (byte {exc.start})"))
    if problems:
        raise PolicyError(problems)
    return load_policy_texts(sources)


def load_policy_texts(sources: Sequence[tuple[str, str]]) -> Policy:
    """Parse, validate and compile (name, text) pairs in the order given. Only PolicyError comes out."""
    parsed: list[_Parsed] = []
    problems: list[Problem] = []
    for name, text in sources:
        try:
            located = load_yaml(text, name)
        except ConfigError as err:
            problems.extend(err.problems)
            continue
        if not isinstance(located.value, dict):
            problems.append((located.position(()), "", "a policy file is a mapping of sections (groups, clients, …)"))
            continue
        try:
            parsed.append(_Parsed(located, PolicyFile.model_validate(located.value)))
        except ValidationError as exc:
            problems.extend(_positions(exc, located))
    if problems:
        raise PolicyError(_sorted(problems))
    digest = hashlib.sha256()
    for name, text in sources:
        digest.update(f"{len(name)}:{name}{len(text)}:".encode() + text.encode("utf-8"))
    return _Compiler(parsed, tuple(n for n, _ in sources), digest.hexdigest()).compile()


def _positions(exc: ValidationError, located: Located) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = (*loc, "__key__") if err["type"] == "extra_forbidden" else loc
        kind = err["type"]
        msg = (
            "unknown field"
            if kind == "extra_forbidden"
            else "required field is missing"
            if kind == "missing"
            else str(err["msg"]).removeprefix("Value error, ")
        )
        out.append((located.position(key), dotted(loc), msg))
    return out


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p[0].file, p[0].line, p[0].column) if p[0] else ("", 0, 0))


class _Compiler:
    def __init__(self, parsed: list[_Parsed], files: tuple[str, ...], digest: str) -> None:
        self.parsed = parsed
        self.files = files
        self.digest = digest
        self.problems: list[Problem] = []
        self.groups: dict[str, tuple[tuple[str, ...], Position]] = {}

    def problem(self, pos: Position | None, field: str, message: str) -> None:
        self.problems.append((pos, field, message))

    def compile(self) -> Policy:
        for p in self.parsed:
            for name, entries in p.doc.groups.items():
                pos = p.at("groups", name, "__key__")
                if name in self.groups:
                    self.problem(pos, f"groups.{name}", f"group defined twice (first at {self.groups[name][1]})")
                    continue
                self.groups[name] = (tuple(entries), pos)
        for name, (entries, pos) in self.groups.items():
            self._check_group(name, entries, pos, ())
        clients = self._clients()
        upstreams = self._upstreams()
        callback = self._callback()
        infno_rates = self._infno_rates()
        windows = self._windows({c.name for c in clients})
        if self.problems:
            raise PolicyError(_sorted(self.problems))
        by_uid = {uid: c for c in clients for uid in c.uids}
        by_gid = {gid: c for c in clients for gid in c.gids}
        nets4, nets6 = _nets(clients)
        return Policy(
            clients=tuple(clients),
            by_uid=by_uid,
            by_gid=by_gid,
            nets4=nets4,
            nets6=nets6,
            upstreams=upstreams,
            callback=callback,
            infno_rates=infno_rates,
            windows=tuple(windows),
            groups={name: entries for name, (entries, _) in self.groups.items()},
            files=self.files,
            digest=self.digest,
        )

    def _check_group(self, name: str, entries: tuple[str, ...], pos: Position, seen: tuple[str, ...]) -> None:
        if name in seen:
            self.problem(pos, f"groups.{name}", f"groups include each other: {' → '.join((*seen, name))}")
            return
        for entry in entries:
            if entry.startswith("@"):
                inner = self.groups.get(entry[1:])
                if inner is None:
                    self.problem(pos, f"groups.{name}", f"unknown group {entry}")
                else:
                    self._check_group(entry[1:], inner[0], pos, (*seen, name))

    def _expand(self, entries: Iterable[str], seen: frozenset[str] = frozenset()) -> Iterable[tuple[str, str]]:
        """(pattern, the entry it came from as written)."""
        for entry in entries:
            if entry.startswith("@"):
                group = self.groups.get(entry[1:])
                if group is None or entry[1:] in seen:
                    continue
                for pattern, _ in self._expand(group[0], seen | {entry[1:]}):
                    yield pattern, entry
            else:
                yield entry, entry

    def _matcher(self, p: _Parsed, base: tuple[str | int, ...], label: str, entries: list[str]) -> Matcher:
        exact: dict[str, Rule] = {}
        prefixes: list[tuple[str, Rule]] = []
        any_rule: Rule | None = None
        for i, entry in enumerate(entries):
            pos = p.at(*base, i)
            if entry.startswith("@") and entry[1:] not in self.groups:
                self.problem(
                    pos, dotted((*base, i)), f"unknown group {entry} (groups: {', '.join(self.groups) or '-'})"
                )
                continue
            rule = Rule(f"{label} {entry}", str(pos))
            for pattern, _ in self._expand([entry]):
                if pattern == "*":
                    any_rule = any_rule or rule
                elif pattern.endswith("*"):
                    prefixes.append((pattern[:-1], rule))
                else:
                    exact.setdefault(pattern, rule)
        # Longest prefix first: "220*" is more specific than "2*".
        prefixes.sort(key=lambda pr: -len(pr[0]))
        return Matcher(exact, tuple(prefixes), any_rule)

    @staticmethod
    def _rate(spec: RateSpec, label: str, pos: Position) -> Rate:
        return Rate(spec.per_second, spec.capacity, Rule(label, str(pos)))

    def _clients(self) -> list[Client]:
        out: list[Client] = []
        names: dict[str, Position] = {}
        claimed: dict[tuple[str, str], tuple[str, Position]] = {}
        for p in self.parsed:
            for i, spec in enumerate(p.doc.clients):
                base = ("clients", i)
                pos = p.at(*base)
                if spec.name in names:
                    self.problem(pos, f"clients[{i}].name", f"client {spec.name} twice (first at {names[spec.name]})")
                    continue
                names[spec.name] = pos
                self._claim(p, base, spec, claimed)
                label = f"clients[{spec.name}]"
                out.append(
                    Client(
                        name=spec.name,
                        where=str(pos),
                        uids=frozenset(spec.uids),
                        gids=frozenset(spec.gids),
                        cidrs=tuple(spec.cidrs),
                        allow=self._matcher(p, (*base, "allow"), f"{label}.allow", spec.allow),
                        deny=self._matcher(p, (*base, "deny"), f"{label}.deny", spec.deny),
                        rate=self._rate(spec.rate, f"{label}.rate", p.at(*base, "rate")) if spec.rate else None,
                        infno_rates={
                            infno: self._rate(r, f"{label}.infno_rates.{infno}", p.at(*base, "infno_rates", infno))
                            for infno, r in spec.infno_rates.items()
                        },
                        allow_entries=tuple(spec.allow),
                        deny_entries=tuple(spec.deny),
                    )
                )
        return out

    def _claim(
        self,
        p: _Parsed,
        base: tuple[str | int, ...],
        spec: ClientSpec,
        claimed: dict[tuple[str, str], tuple[str, Position]],
    ) -> None:
        """A uid, gid or network belongs to one client: two claims would make the answer depend on order."""
        for kind, values in (("uids", spec.uids), ("gids", spec.gids), ("cidrs", spec.cidrs)):
            for j, value in enumerate(values):
                pos = p.at(*base, kind, j)
                key = (kind, str(value))
                if key in claimed and claimed[key][0] != spec.name:
                    other, where = claimed[key]
                    self.problem(pos, dotted((*base, kind, j)), f"{value} already belongs to client {other} ({where})")
                elif key in claimed:
                    self.problem(pos, dotted((*base, kind, j)), f"{value} listed twice")
                else:
                    claimed[key] = (spec.name, pos)

    def _upstreams(self) -> dict[tuple[str, int], Rule]:
        out: dict[tuple[str, int], Rule] = {}
        for p in self.parsed:
            for i, u in enumerate(p.doc.upstreams):
                pos = p.at("upstreams", i)
                key = (u.host, u.port)
                if key in out:
                    self.problem(pos, f"upstreams[{i}]", f"{_hostport(*key)} listed twice (first at {out[key].where})")
                    continue
                out[key] = Rule(f"upstreams {_hostport(*key)}", str(pos))
        return out

    def _callback(self) -> Callback | None:
        found: Callback | None = None
        for p in self.parsed:
            cb = p.doc.callback
            if cb is None:
                continue
            pos = p.at("callback")
            if found is not None:
                self.problem(pos, "callback", f"callback listener defined twice (first at {found.where})")
                continue
            found = Callback(cb.address, cb.port, tuple(cb.peers), tuple(cb.sources), str(pos))
        return found

    def _infno_rates(self) -> dict[str, Rate]:
        out: dict[str, Rate] = {}
        for p in self.parsed:
            for infno, spec in p.doc.infno_rates.items():
                pos = p.at("infno_rates", infno)
                if infno in out:
                    self.problem(pos, f"infno_rates.{infno}", f"set twice (first at {out[infno].rule.where})")
                    continue
                out[infno] = self._rate(spec, f"infno_rates.{infno}", pos)
        return out

    def _windows(self, client_names: set[str]) -> list[Window]:
        out: list[Window] = []
        names: dict[str, Position] = {}
        for p in self.parsed:
            for i, w in enumerate(p.doc.maintenance):
                base = ("maintenance", i)
                pos = p.at(*base)
                if w.name in names:
                    self.problem(pos, f"maintenance[{i}].name", f"window {w.name} twice (first at {names[w.name]})")
                    continue
                names[w.name] = pos
                for j, c in enumerate(w.clients):
                    if c not in client_names:
                        self.problem(p.at(*base, "clients", j), f"maintenance[{i}].clients[{j}]", f"unknown client {c}")
                out.append(
                    Window(
                        name=w.name,
                        rule=Rule(f"maintenance[{w.name}] {w.start}-{w.end}", str(pos)),
                        days=frozenset(day_index(d) for d in w.days),
                        start=minutes(w.start),
                        end=minutes(w.end),
                        infnos=self._matcher(p, (*base, "infnos"), f"maintenance[{w.name}]", w.infnos),
                        clients=frozenset(w.clients),
                        message=f"maintenance window {w.name} ({w.start}-{w.end}): {w.message}",
                    )
                )
        return out


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _nets(clients: list[Client]) -> tuple[tuple[_Net, ...], tuple[_Net, ...]]:
    tables: dict[tuple[int, int], dict[int, Client]] = {}
    for c in clients:
        for text in c.cidrs:
            net = ipaddress.ip_network(text)
            tables.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = c
    out: dict[int, list[_Net]] = {4: [], 6: []}
    for (version, plen), table in tables.items():
        bits = 32 if version == 4 else 128
        mask = ((1 << plen) - 1) << (bits - plen)
        out[version].append(_Net(plen, mask, table))
    for nets in out.values():
        nets.sort(key=lambda n: -n.prefixlen)
    return tuple(out[4]), tuple(out[6])
