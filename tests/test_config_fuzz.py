"""The config loader never crashes: random text and random structures give a ConfigError or a Config."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.config import Config, load_config_text
from gateway.errors import ConfigError
from gateway.yamlpos import _SCALAR_LOADER, MAX_VALUES, load_yaml

from conftest import fuzz_examples

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


@settings(max_examples=fuzz_examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=8))
def test_random_structures(doc: dict) -> None:
    check(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=fuzz_examples(400), deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}'\"#&*!|>%@` \n\t0123456789.,?")), max_size=200))
def test_random_text(text: str) -> None:
    check(text)


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(st.binary(max_size=100))
def test_random_bytes_decoded_loosely(raw: bytes) -> None:
    check(raw.decode("utf-8", errors="replace"))


# YAML's own machinery, which random text rarely reaches: tags whose constructors reject a value, implicit dates
# that are no dates, anchors and aliases (self-referencing, expanding), merge keys, directives, deep nesting.
YAML_TOKENS = [
    "a: ", "upstreams:", "\n", "  ", "- ", "[", "]", "{", "}", ", ", ": ", "? ", "---\n", "...\n", "%YAML 1.1\n",
    "&x ", "*x", "&y [*x, *x, *x, *x, *x, *x, *x, *x]", "&z [*y, *y, *y, *y, *y, *y, *y, *y]", "&s [*s]", "<<: *x",
    "!!timestamp ", "!!int ", "!!float ", "!!bool ", "!!binary ", "!!str ", "!!set ", "!!omap ", "!!null ", "!t ",
    "!!python/object/apply:os.system ", "2020-13-45", "2001-12-14t21:59:43.10-05:00", "9999-99-99", "0x1F", "0o17",
    "1_000", ".inf", "-.nan", "~", "'q'", '"\\x00"', "|\n  x", ">-\n  y", "#c", "1" * 5000, "[" * 200, "\t", "\ufeff",
]  # fmt: skip
# Seven lines that alias their way to 10⁶ values.
LAUGHS = "a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 7)
)
yaml_texts = st.lists(st.sampled_from(YAML_TOKENS) | st.text(max_size=3), max_size=30).map("".join)


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(yaml_texts)
@example("a: 2020-13-45\n")
@example("a: !!timestamp x\n")
@example("a: &s [*s]\n")
@example("[" * 700)
@example(LAUGHS)
def test_yaml_machinery_gives_config_errors(text: str) -> None:
    try:
        located = load_yaml(text, "fuzz.yaml")
    except ConfigError as err:
        assert err.problems and all(message for _pos, _field, message in err.problems)
        return
    assert len(located.positions) <= MAX_VALUES + 1
    check(text)


def test_the_scalar_constructor_forgets_each_document() -> None:
    for _ in range(3):
        load_yaml("a: [1, 2, 3]\nb: x\n", "f.yaml")
    assert not _SCALAR_LOADER.constructed_objects
