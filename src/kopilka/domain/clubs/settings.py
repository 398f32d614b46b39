"""The ``clubs`` section of a program document: closed clubs and paid memberships."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ClubSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
