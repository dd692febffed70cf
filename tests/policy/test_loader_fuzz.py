"""Random YAML never crashes the loader: it yields a Policy or a PolicyError, nothing else."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy import Policy, PolicyError, load_policy_texts

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=True),
    st.sampled_from(["1101", "@q", "5*", "*", "10.0.0.0/8", "::1", "23:00", "mon", "x", "", "@"]),
    st.text(max_size=8),
)
_keys = st.sampled_from(
    [
        "version",
        "groups",
        "clients",
        "upstreams",
        "callback",
        "infno_rates",
        "maintenance",
        "name",
        "uids",
        "gids",
        "cidrs",
        "allow",
        "deny",
        "rate",
        "per_second",
        "burst",
        "host",
        "port",
        "start",
        "end",
        "days",
        "infnos",
        "q",
    ]
)
_docs = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=25,
)


def _outcome(sources: list[tuple[str, str]]) -> None:
    try:
        assert isinstance(load_policy_texts(sources), Policy)
    except PolicyError as err:
        assert err.problems and all(isinstance(line, str) for line in err.lines())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_docs, min_size=1, max_size=3))
def test_structured_yaml(docs: list[object]) -> None:
    _outcome([(f"f{i}.yaml", yaml.safe_dump(d, allow_unicode=True)) for i, d in enumerate(docs)])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-'\"&*!|>#% \n\tab1@5/.")), max_size=80))
def test_raw_text(text: str) -> None:
    _outcome([("raw.yaml", text)])
