"""The import contracts hold at run time too: what a module loads is what its layer allows.

import-linter (`lint-imports`, run by .ci/run) reads the import statements; this loads the modules for real in a
fresh interpreter and lists what came with them, so a lazy import or an import made by a package's __init__ is
seen as well.
"""

from __future__ import annotations

import json
import subprocess
import sys


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
