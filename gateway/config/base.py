"""The configuration's building blocks: when a change applies (the marks), the strict base model, common types."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    pass

DEFAULT_CONFIG_PATH = Path("/etc/ybgate/ybgate.yaml")


class Applies(enum.Enum):
    """When a changed setting takes effect. Every field carries one of these in its annotation, or sits in a
    section whose field carries one (the mark covers the whole section, which then changes as a unit): a reload
    (SIGHUP) applies LIVE fields at once and reports the RESTART fields that changed, keeping their running values
    until the next start. gateway.config_marks reads the marks; a test holds every field to having one."""

    LIVE = "live"
    RESTART = "restart"


LIVE = Applies.LIVE
RESTART = Applies.RESTART


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]
Port = Annotated[int, Field(ge=1, le=65535)]
