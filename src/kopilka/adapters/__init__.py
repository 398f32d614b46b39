"""Concrete implementations of the services' ports: database, mail, wallets."""
