"""The ``referral`` section of a program document."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ReferralSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
