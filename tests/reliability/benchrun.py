"""A bench script under bench/ run as the README runs it, for the tests of its short form: its own process,
the checkout on PYTHONPATH, its figures read back from its --json file."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from gateway.cli.bench import bench_dir


async def run_bench(script: str, args: list[str], work: Path, limit: float) -> tuple[int | None, dict[str, Any], str]:
    """Exit code, the JSON document (empty when none was written) and what it printed. `limit` bounds a hang; it
    is not a measurement."""
    out = work / f"{script}.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(bench_dir() / script),
        *args,
        "--json",
        str(out),
        cwd=work,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=os.environ | {"PYTHONPATH": str(bench_dir().parent)},
    )
    printed, _ = await asyncio.wait_for(proc.communicate(), limit)
    doc = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, doc, printed.decode(errors="replace")


def load_bench(script: str) -> ModuleType:
    """A bench script as a module, for checks of its pieces (its own imports of bench/ modules resolve)."""
    sys.path.insert(0, str(bench_dir()))
    try:
        spec = importlib.util.spec_from_file_location(f"{Path(script).stem}_bench", bench_dir() / script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(bench_dir()))
