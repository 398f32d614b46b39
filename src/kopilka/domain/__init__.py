"""Pure business logic: no I/O, no framework."""
