"""SQLAlchemy 2 storage on SQLite (embedded default) and PostgreSQL."""
