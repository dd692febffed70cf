"""The config loader never crashes: random text and random structures give a ConfigError or a Config."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import Config, load_config_text
from gateway.errors import ConfigError

KEYS = [
    "development",
    "state_dir",
    "api",
    "upstreams",
    "socket_mode",
    "limits",
    "port",
    "host",
    "name",
    "role",
    "transport",
    "paths",
    "tcp",
    "admin",
    "mqtt",
    "health",
    "failover",
    "logging",
    "level",
    "x",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["tcp", "primary", "0660", "127.0.0.1", "~", "null"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)


def check(text: str) -> None:
    try:
        cfg = load_config_text(text, "fuzz.yaml")
    except ConfigError as err:
        for pos, _field, message in err.problems:
            assert message
            assert pos is None or (pos.file == "fuzz.yaml" and pos.line >= 1 and pos.column >= 1)
    else:
        assert isinstance(cfg, Config)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=8))
def test_random_structures(doc: dict) -> None:
    check(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}'\"#&*!|>%@` \n\t0123456789.,?")), max_size=200))
def test_random_text(text: str) -> None:
    check(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_random_bytes_decoded_loosely(raw: bytes) -> None:
    check(raw.decode("utf-8", errors="replace"))
