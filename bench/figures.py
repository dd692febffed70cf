"""One shape for every benchmark's results: a figure, ybgate's value, the baseline measured in the same run,
the ratio, and the target where the project has one. Each bench script writes its figures as JSON with
`--json FILE`; `ybgate bench` runs the scripts and puts their figures in one table."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Figure:
    figure: str
    ybgate: float
    baseline: float | None
    baseline_name: str
    unit: str = ""
    #: "ratio>=0.8": ybgate/baseline at least 0.8; "max=5": ybgate at most 5 (unit); "min=2000": at least
    target: str | None = None

    @property
    def ratio(self) -> float | None:
        return self.ybgate / self.baseline if self.baseline else None

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        kind, _, value = self.target.partition("=")
        bound = float(value)
        if kind == "ratio>":
            return self.ratio is not None and self.ratio >= bound
        if kind == "ratio<":
            return self.ratio is not None and self.ratio <= bound
        if kind == "max":
            return self.ybgate <= bound
        if kind == "min":
            return self.ybgate >= bound
        raise ValueError(f"unknown target {self.target!r}")

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"ratio": self.ratio, "met": self.met}


def machine() -> dict[str, object]:
    return {
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "python": sys.version.split()[0],
        "system": f"{platform.system()} {platform.release()}",
    }


def write(path: str | None, bench: str, figures: list[Figure], **notes: object) -> None:
    if not path:
        return
    doc = {"bench": bench, "machine": machine(), "figures": [f.as_dict() for f in figures], "notes": notes}
    Path(path).write_text(json.dumps(doc, ensure_ascii=False, indent=1))
