"""Who a campaign is for, and who of them is held out as its control group."""

from __future__ import annotations

import hashlib

from kopilka.domain.campaigns.definition import Audience
from kopilka.domain.rules.facts import MemberFacts

BUCKETS = 10_000  # a percent is 100 buckets


def in_audience(audience: Audience, facts: MemberFacts | None, listed: bool) -> bool:
    """Whether the member (None: an anonymous buyer) is in the audience; ``listed``: the
    member is on the campaign's member list."""
    if audience.kind == "everyone":
        return True
    if facts is None:
        return False
    if audience.kind == "members":
        return listed
    wanted = set(audience.values)
    if audience.kind == "tiers":
        return facts.tier in wanted
    if audience.kind == "segments":
        return bool(wanted & facts.segments)
    return bool(wanted & facts.clubs)


def bucket(seed: str, member_id: str) -> int:
    """A stable pseudo-random bucket in [0, 10000) for the member in this campaign: the
    same member falls in the same bucket at every till, for the campaign's whole life, and
    campaigns with different seeds draw independently."""
    digest = hashlib.sha256(f"{seed}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def held_out(seed: str, member_id: str, percent: int) -> bool:
    """Whether the member is in the control group of ``percent`` % of the audience."""
    return bucket(seed, member_id) < percent * (BUCKETS // 100)
