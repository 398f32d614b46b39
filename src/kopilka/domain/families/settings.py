"""The ``family``, ``transfers`` and ``donations`` sections of a program document."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FamilySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransferSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DonationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
