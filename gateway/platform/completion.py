"""Envelope completion: header fields a HIS leaves out, filled by the gateway for the clients that ask for it.

Some HIS send half an envelope and rely on a middle layer (the province's front service) to complete it. A policy
client may name the fields the gateway completes (`complete: [...]`); only a field that is absent, null or empty
is filled, and every filled field is logged as filled by the gateway. Values come from the gateway's own
configuration (the sign-in operator's identity, `session:`), never guessed from the request.

The fields a client may name are listed in the policy schema (policy.schema.Completable).

inf_time is taken from the msgid's own time (characters 13-26, yyyyMMddHHmmss), not from the clock: the same
raw body must complete to the same bytes whenever it comes, or a retry under its msgid would look like a
different request. sign_no is left empty for the gateway's sign-in to fill (relay.session), so it needs
session.sign_in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import EnvelopeError


@dataclass(frozen=True)
class Completion:
    """What one client asks the gateway to fill, and what the gateway has to fill it with."""

    fields: tuple[str, ...]
    #: configured values by field name (inf_time and sign_no are never here: see the module's docstring)
    values: Mapping[str, str] = field(default_factory=dict)
    #: the gateway signs in on the HIS's behalf (session.sign_in), so an empty sign_no gets filled
    signs_in: bool = False


def complete(fields: dict[str, Any], completion: Completion) -> tuple[str, ...]:
    """Fill the missing fields `completion` names, in place; the names of the fields filled."""
    filled: list[str] = []
    for name in completion.fields:
        if fields.get(name) not in (None, ""):
            continue
        if name == "inf_time":
            msgid = fields.get("msgid")
            if not (isinstance(msgid, str) and len(msgid) == 30 and msgid[12:26].isdigit()):
                continue  # the msgid check names the problem
            stamp = msgid[12:26]
            value = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[8:10]}:{stamp[10:12]}:{stamp[12:14]}"
        elif name == "sign_no":
            if not completion.signs_in:
                raise EnvelopeError(
                    name, "missing; this client asks the gateway to complete it, but session.sign_in is off"
                )
            fields[name] = ""  # the gateway's sign-in fills it when the request is sent
            filled.append(name)
            continue
        elif name in completion.values:
            value = completion.values[name]
        else:
            raise EnvelopeError(
                name,
                "missing; this client asks the gateway to complete it, but ybgate.yaml has no session: values",
            )
        fields[name] = value
        filled.append(name)
    return tuple(filled)
