"""The clubs mechanic: pure rules, no I/O."""
