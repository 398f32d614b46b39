"""The referrals mechanic: pure rules, no I/O."""
