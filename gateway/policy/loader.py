"""Loading policy files: parse each with positions, validate, merge, compile — all or nothing.

Order: the paths as given; a directory stands for its *.yaml and *.yml files in name order (00-…, 10-…), like
/etc/*.d. Sections merge across files: groups, clients, rate limits and windows must have unique names
(a second definition is an error naming both places, never a silent override); upstreams and callback peers
add up. Any error anywhere rejects the whole set, so a typo never half-changes what is allowed.
"""

from __future__ import annotations

import grp
import ipaddress
import pwd
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from gateway.errors import ConfigError, Position
from gateway.policy import model
from gateway.policy.schema import Client, PolicyFile, valid_infno_pattern
from gateway.yamlpos import Located, dotted, load_yaml, load_yaml_file, validation_problems

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Problem = tuple[Position | None, str, str]


class PolicyError(ConfigError):
    """A policy file is wrong; the policy in force stays."""

    kind = "policy"


def policy_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            files.append(path)
    return files


def load_policy(paths: Sequence[Path]) -> model.Policy:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise PolicyError(
            [
                (
                    None,
                    "policy.paths",
                    f"{', '.join(missing)} does not exist: with default deny, no policy means no "
                    "client may call anything; install the policy files (see policies/README.md)",
                )
            ]
        )
    files = policy_files(paths)
    if not files:
        raise PolicyError([(None, "", f"no policy files in {', '.join(map(str, paths))}: nothing would be allowed")])
    parsed = []
    for path in files:
        try:
            located = load_yaml_file(path)
        except ConfigError as exc:
            raise PolicyError(exc.problems) from None
        parsed.append((located, _validate(located)))
    return compile_policy(parsed)


def load_policy_text(text: str, file: str = "<policy>") -> model.Policy:
    try:
        located = load_yaml(text, file)
    except ConfigError as exc:
        raise PolicyError(exc.problems) from None
    return compile_policy([(located, _validate(located))])


def _validate(located: Located) -> PolicyFile:
    if not isinstance(located.value, dict):
        raise PolicyError([(located.position(()), "", "a policy file is a mapping (groups:, clients:, upstreams: …)")])
    try:
        return PolicyFile.model_validate(located.value)
    except ValidationError as exc:
        raise PolicyError(validation_problems(exc, located)) from None


class _Compiler:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.groups: dict[str, model.InfnoSet] = {}
        self.group_at: dict[str, Position] = {}
        self.clients: list[model.ClientRule] = []
        self.client_at: dict[str, Position] = {}
        self.upstreams: set[tuple[str, int]] = set()
        self.rates: list[model.InfnoRate] = []
        self.rate_at: dict[str, Position] = {}
        self.windows: list[model.Window] = []
        self.window_at: dict[str, Position] = {}
        self.peers: list[tuple[str, tuple[str, ...]]] = []
        self.callback: model.Callback | None = None
        self.callback_at: Position | None = None

    def error(self, pos: Position | None, field: str, message: str) -> None:
        self.problems.append((pos, field, message))

    def once(self, seen: dict[str, Position], name: str, pos: Position, field: str, what: str) -> bool:
        """Record `name` as defined at `pos`; False (and an error naming both places) when it already was."""
        if name in seen:
            self.error(pos, field, f"{what} {name!r} defined twice (first at {seen[name]})")
            return False
        seen[name] = pos
        return True

    def items(self, words: list[str], located: Located, loc: tuple[str | int, ...]) -> model.InfnoSet:
        exact: set[str] = set()
        prefixes: set[str] = set()
        for i, word in enumerate(words):
            if word in self.groups:
                g = self.groups[word]
                exact |= g.exact
                prefixes |= set(g.prefixes)
            elif valid_infno_pattern(word):
                if word.endswith("*"):
                    prefixes.add(word[:-1])
                else:
                    exact.add(word)
            else:
                self.error(
                    located.position((*loc, i)),
                    dotted((*loc, i)),
                    f"{word!r} is neither a transaction number (2207, 2203A), a prefix (5*) nor a defined group"
                    + (f" (groups: {', '.join(sorted(self.groups))})" if self.groups else ""),
                )
        return model.InfnoSet(frozenset(exact), tuple(sorted(prefixes)))

    def add_groups(self, located: Located, doc: PolicyFile) -> None:
        for name, words in doc.groups.items():
            pos = located.position(("groups", name, "__key__"))
            if not self.once(self.group_at, name, pos, f"groups.{name}", "group"):
                continue
            for i, word in enumerate(words):
                if not valid_infno_pattern(word):
                    self.error(
                        located.position(("groups", name, i)),
                        f"groups.{name}[{i}]",
                        f"{word!r}: groups hold transaction numbers and prefixes only",
                    )
            self.groups[name] = self.items([w for w in words if valid_infno_pattern(w)], located, ("groups", name))

    def unix_ids(self, client: Client, located: Located, loc: tuple[str | int, ...]) -> tuple[set[int], set[int]]:
        if client.unix is None:
            return set(), set()
        uids, gids = set(client.unix.uids), set(client.unix.gids)
        for j, user in enumerate(client.unix.users):
            try:
                uids.add(pwd.getpwnam(user).pw_uid)
            except KeyError:
                self.error(
                    located.position((*loc, "unix", "users", j)),
                    dotted((*loc, "unix", "users", j)),
                    f"no user {user!r} on this host",
                )
        for j, group in enumerate(client.unix.groups):
            try:
                gids.add(grp.getgrnam(group).gr_gid)
            except KeyError:
                self.error(
                    located.position((*loc, "unix", "groups", j)),
                    dotted((*loc, "unix", "groups", j)),
                    f"no group {group!r} on this host",
                )
        if not (client.unix.uids or client.unix.gids or client.unix.users or client.unix.groups):
            self.error(
                located.position((*loc, "unix")), dotted((*loc, "unix")), "name at least one uid, gid, user or group"
            )
        return uids, gids

    def add_client(self, located: Located, i: int, client: Client) -> None:
        loc: tuple[str | int, ...] = ("clients", i)
        pos = located.position((*loc, "name"))
        if not self.once(self.client_at, client.name, pos, f"clients[{i}].name", "client"):
            return
        if client.unix is None and client.tcp is None:
            self.error(
                located.position(loc), f"clients[{i}]", "say who this is: unix (uids/gids/users/groups) or tcp (cidrs)"
            )
            return
        uids, gids = self.unix_ids(client, located, loc)
        self.clients.append(
            model.ClientRule(
                name=client.name,
                rank=len(self.clients),
                position=pos,
                uids=frozenset(uids),
                gids=frozenset(gids),
                cidrs=tuple(ipaddress.ip_network(n) for n in client.tcp.cidrs) if client.tcp else (),
                allow=self.items(client.allow, located, (*loc, "allow")),
                deny=self.items(client.deny, located, (*loc, "deny")),
                allow_words=tuple(client.allow),
                rate=_rate(client.rate.per_second, client.rate.burst) if client.rate else None,
                answer=client.answer,
                charset=client.charset,
                complete=tuple(dict.fromkeys(client.complete)),
            )
        )

    def add_rest(self, located: Located, doc: PolicyFile) -> None:
        for up in doc.upstreams:
            self.upstreams.add((str(ipaddress.ip_address(up.host)), up.port))
        for key, spec in doc.rate_limits.items():
            pos = located.position(("rate_limits", key, "__key__"))
            if self.once(self.rate_at, key, pos, f"rate_limits.{key}", "rate limit"):
                infnos = self.items([key], located, ("rate_limits", key, "__key__"))
                self.rates.append(model.InfnoRate(infnos, key, _rate(spec.per_second, spec.burst), pos))
        for i, w in enumerate(doc.maintenance):
            pos = located.position(("maintenance", i, "name"))
            if not self.once(self.window_at, w.name, pos, f"maintenance[{i}].name", "window"):
                continue
            start, end = _minutes(w.start), _minutes(w.end)
            if start == end:
                self.error(
                    located.position(("maintenance", i, "to")), f"maintenance[{i}].to", "a window must not be empty"
                )
            deny = self.items(w.deny, located, ("maintenance", i, "deny"))
            days = frozenset(DAYS.index(d) for d in w.days)
            self.windows.append(model.Window(w.name, pos, days, start, end, deny, w.message))
        self.peers += [(peer.subject, tuple(peer.cidrs)) for peer in doc.callback_peers]
        if doc.callback is not None:
            pos = located.position(("callback", "__key__"))
            if self.callback_at is not None:
                self.error(pos, "callback", f"one callback listener only (first at {self.callback_at})")
            self.callback_at = pos
            cb = doc.callback
            self.callback = model.Callback(str(ipaddress.ip_address(cb.address)), cb.port, tuple(cb.sources))


def _rate(per_second: float, burst: int | None) -> model.RateSpec:
    return model.RateSpec(per_second, burst or max(1, int(per_second)))


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def compile_policy(parsed: list[tuple[Located, PolicyFile]]) -> model.Policy:
    c = _Compiler()
    # Groups first (from every file), so a client in 10-clients.yaml can name a group from 00-groups.yaml.
    for located, doc in parsed:
        c.add_groups(located, doc)
    for located, doc in parsed:
        for i, client in enumerate(doc.clients):
            c.add_client(located, i, client)
        c.add_rest(located, doc)
    if c.problems:
        c.problems.sort(key=lambda p: (p[0].file, p[0].line, p[0].column) if p[0] else ("", 0, 0))
        raise PolicyError(c.problems)
    ordered = tuple(c.clients)
    by_uid, by_gid, by_net, by_net6 = model.build_indexes(ordered)
    return model.Policy(
        files=tuple(located.file for located, _ in parsed),
        clients=ordered,
        upstreams=frozenset(c.upstreams),
        rates=tuple(c.rates),
        windows=tuple(c.windows),
        callback_peers=tuple(c.peers),
        callback=c.callback,
        groups=dict(c.groups),
        by_uid=by_uid,
        by_gid=by_gid,
        by_net=by_net,
        by_net6=by_net6,
    )
