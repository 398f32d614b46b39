"""Tables and stores of the loyalty mechanics and promotions, one module per feature.

Importing this package registers every mechanic's tables on the shared ``metadata``.
"""

from kopilka.adapters.db import outbox  # noqa: F401 - the outbox's table
from kopilka.adapters.db.mechanics import (  # noqa: F401 - imported for their tables
    awards,
    campaigns,
    clubs,
    coupons,
    draws,
    families,
    giftcards,
    lifecycle,
    referrals,
    rewards,
    stamps,
    tiers,
)
