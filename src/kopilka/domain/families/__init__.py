"""The families mechanic: pure rules, no I/O."""
