"""The profiles shipped with ybgate, and what configuration loading needs of them without parsing them whole.

Kept apart from gateway.platform.profile, which loads the crypto backends: the HIS-facing path families are read
on every configuration load and CLI start.
"""

from __future__ import annotations

import functools
from importlib.resources import files

import yaml

BUNDLED = ("national", "plain", "tif", "sm2sm4", "gbk", "hunan", "jiangxi")


@functools.cache
def bundled_his_paths() -> tuple[str, ...]:
    """Every path family the bundled profiles know HIS code to use, each once, in profile order.

    Read from the files' his_paths alone (with libyaml's loader where there is one): every configuration load
    and CLI start asks for these, and parsing whole profiles with their catalogues would cost a quarter second."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found: list[str] = []
    for name in BUNDLED:
        text = files("gateway.platform").joinpath(f"profiles/{name}.yaml").read_text("utf-8")
        found += yaml.load(text, Loader=loader).get("his_paths", [])  # noqa: S506 - a safe loader
    return tuple(dict.fromkeys(found))
