"""Use cases. Each function opens a unit of work, does one business operation, commits."""
