"""What the simulated platform's handlers raise, and the clock it speaks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

#: the platform speaks Beijing time whatever zone the machine running the simulator is in
PLATFORM_TZ = timezone(timedelta(hours=8))


class PlatformError(Exception):
    """A business refusal: becomes infcode -1 with the Chinese err_msg the platform would send."""

    def __init__(self, err_msg: str, infcode: int = -1) -> None:
        super().__init__(err_msg)
        self.err_msg = err_msg
        self.infcode = infcode


def platform_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, PLATFORM_TZ).strftime("%Y-%m-%d %H:%M:%S")


def platform_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, PLATFORM_TZ).strftime("%Y-%m-%d")


def input_data(req: dict[str, Any], *required: str) -> dict[str, Any]:
    """input.data of a request, with the fields the transaction cannot do without."""
    data = req["input"].get("data")
    if not isinstance(data, dict):
        raise PlatformError("输入参数[input.data]不能为空")
    for name in required:
        if data.get(name) in (None, ""):
            raise PlatformError(f"输入参数[{name}]不能为空")
    return data
