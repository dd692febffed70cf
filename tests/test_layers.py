"""The import contracts hold at run time too: what a module loads is what its layer allows.

import-linter (`lint-imports`, run by .ci/run) reads the import statements; this loads the modules for real in a
fresh interpreter and lists what came with them, so a lazy import or an import made by a package's __init__ is
seen as well.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def _loaded_by(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


def test_loading_the_his_face_loads_no_tunnel() -> None:
    loaded = _loaded_by("gateway.api.app")
    assert "gateway.relay.answer" in loaded  # the relay's answer type is there: the check looks at the right thing
    tunnel = sorted(m for m in loaded if m.startswith(("gateway.net", "gateway.tlcp")))
    assert tunnel == []
    assert "gateway.relay.forwarder" not in loaded


def test_the_tlcp_core_knows_nothing_of_http() -> None:
    # What a broken tunnel means to a caller (an HTTP status, an unknown outcome) is decided by the layers that speak
    # HTTP; the protocol core only names alerts. import-linter cannot see an attribute, so the words are checked.
    core = Path(__file__).resolve().parent.parent / "gateway" / "tlcp"
    sources = sorted(core.rglob("*.py"))
    assert len(sources) > 10  # the right folder
    named = [
        f"{p.name}:{n}"
        for p in sources
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"http", line, re.I)
    ]
    assert named == []


def test_no_module_is_over_400_lines() -> None:
    # Small modules with one job each: a module past this has more than one, and is split by what they are.
    package = Path(__file__).resolve().parent.parent / "gateway"
    sources = sorted(package.rglob("*.py"))
    assert len(sources) > 100
    long = {str(p.relative_to(package)): n for p in sources if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
