"""PINs for online use: generated digits, stored only as a salted scrypt hash.

The stored form names its parameters (``scrypt$n$r$p$salt$hash``), so the cost can be
raised later without invalidating the PINs already issued.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PIN_LENGTH = 8
_N, _R, _P = 2**14, 8, 1  # ~16 MiB and tens of milliseconds a check: slow for guessing
_DKLEN = 32


def new_pin(length: int = PIN_LENGTH) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    """A fresh salted hash of ``pin`` (a per-card random salt unless given)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    """Does ``pin`` match the stored hash? Compared in constant time; False if malformed."""
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(hash_hex)
        digest = hashlib.scrypt(
            pin.encode(),
            salt=bytes.fromhex(salt_hex),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)
