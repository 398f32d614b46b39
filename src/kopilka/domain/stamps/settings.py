"""The ``stamp_cards`` section of a program document."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StampCardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
