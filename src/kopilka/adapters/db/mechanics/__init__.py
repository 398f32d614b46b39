"""Tables and stores of the loyalty mechanics, one module per mechanic.

Importing this package registers every mechanic's tables on the shared ``metadata``.
"""

from kopilka.adapters.db.mechanics import (  # noqa: F401 - imported for their tables
    awards,
    clubs,
    families,
    lifecycle,
    referrals,
    stamps,
    tiers,
)
