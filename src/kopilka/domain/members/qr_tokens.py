"""Signed, rotating QR tokens: a screenshot stops working after its time window.

A token is ``<card number>.<window>.<signature>``: the window is the Unix time divided by the
window length, and the signature an HMAC over both with the tenant's secret. The current and
the previous window are accepted, to forgive a till scanning on the boundary.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class InvalidQrToken(ValueError):
    """Forged, malformed or expired token."""


def _sign(secret: str, number: str, window: int) -> str:
    mac = hmac.new(secret.encode(), f"{number}.{window}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:15]).decode().rstrip("=")


def issue_token(secret: str, number: str, unix_time: float, window_seconds: int) -> str:
    window = int(unix_time // window_seconds)
    return f"{number}.{window}.{_sign(secret, number, window)}"


def verify_token(secret: str, token: str, unix_time: float, window_seconds: int) -> str:
    """Return the card number inside ``token`` or raise :class:`InvalidQrToken`."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise InvalidQrToken("malformed token")
    number, window_text, signature = parts
    window = int(window_text)
    current = int(unix_time // window_seconds)
    if window not in (current, current - 1):
        raise InvalidQrToken("token expired")
    if not hmac.compare_digest(_sign(secret, number, window), signature):
        raise InvalidQrToken("bad signature")
    return number
