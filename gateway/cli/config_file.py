"""Loading the configuration file for a command: its problems printed, one per line, and None."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.config import Config, load_config
from gateway.errors import ConfigError


def read_config(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        print(f"{path}: configuration rejected ({len(err.problems)} problem(s))", file=sys.stderr)
        return None
