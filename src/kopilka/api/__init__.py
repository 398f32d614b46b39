"""The HTTP API (FastAPI): routers per audience, problem+json errors."""
