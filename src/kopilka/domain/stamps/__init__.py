"""The stamps mechanic: pure rules, no I/O."""
