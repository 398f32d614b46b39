"""Double-entry points ledger: balanced transactions, lots, expiry, descriptions."""
