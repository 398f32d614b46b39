"""Reading program documents written in YAML."""
