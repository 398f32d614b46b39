"""The lifecycle mechanic: pure rules, no I/O."""
