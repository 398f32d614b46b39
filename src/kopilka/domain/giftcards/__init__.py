"""Gift cards and certificates: stored money, numbers with a check digit, hashed PINs."""
