"""Members, their cards, consents and identifiers."""
