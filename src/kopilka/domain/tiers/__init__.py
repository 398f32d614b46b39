"""The tiers mechanic: pure rules, no I/O."""
