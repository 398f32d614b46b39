"""The life-cycle sections of a program document: welcome, birthday, anniversary, win-back,
and the declared member events with their earning rules."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LifecycleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
