"""Referral codes, share links and fingerprints: pure functions, no I/O."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from urllib.parse import parse_qs, urlsplit

# No 0/O, 1/I/L: a code read aloud or copied from a receipt cannot be mistyped into another.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
MIN_LENGTH, MAX_LENGTH = 6, 16
_CODE = re.compile(f"^[{ALPHABET}]{{{MIN_LENGTH},{MAX_LENGTH}}}$")
# Separators people type or that apps insert when sharing: "ABCD-2345", "abcd 2345".
_SEPARATORS = re.compile(r"[\s\-_.]+")
# Query parameters a share link may carry the code in, when it is not the tenant's own link.
_LINK_PARAMS = ("ref", "code", "referral", "referral_code", "invite")
FINGERPRINT_KIND = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
MAX_FINGERPRINT_VALUE = 1000


def generate_code(length: int) -> str:
    """A random code of ``length`` characters of :data:`ALPHABET` (31**8 ≈ 8.5e11 for 8)."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"A code has {MIN_LENGTH} to {MAX_LENGTH} characters.")
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def share_link(template: str | None, code: str) -> str | None:
    """The share link for ``code``, or None when the program has no ``share_url``."""
    return template.replace("{code}", code) if template else None


def _from_template(template: str, raw: str) -> str | None:
    before, _, after = template.partition("{code}")
    pattern = re.escape(before) + r"(?P<code>[^/?#&]+)" + re.escape(after) + r"$"
    found = re.match(pattern, raw, flags=re.IGNORECASE)
    return found.group("code") if found else None


def _from_any_link(raw: str) -> str | None:
    parts = urlsplit(raw)
    query = parse_qs(parts.query)
    for name in _LINK_PARAMS:
        if query.get(name):
            return query[name][0]
    segments = [s for s in parts.path.split("/") if s]
    return segments[-1] if segments else None


def normalize_code(raw: str, template: str | None = None) -> str | None:
    """The code a customer typed, pasted or followed, in canonical form; None when it
    cannot be a code. Accepts any case and separators, and a share link (the program's
    own ``template``, or any link carrying the code in ``?ref=`` or as its last segment)."""
    text = raw.strip()
    if "://" in text:
        found = _from_template(template, text) if template else None
        text = found if found is not None else (_from_any_link(text) or "")
    code = _SEPARATORS.sub("", text).upper()
    return code if _CODE.match(code) else None


def canonical_email(email: str | None) -> str | None:
    """An address with the variations that reach the same mailbox removed: case,
    ``+tag`` suffixes, and dots in Gmail user names (ivan.p+ref@gmail.com ~ ivanp@gmail.com)."""
    if not email or "@" not in email:
        return None
    user, _, domain = email.strip().lower().rpartition("@")
    user = user.split("+", 1)[0]
    if domain in ("gmail.com", "googlemail.com"):
        user, domain = user.replace(".", ""), "gmail.com"
    return f"{user}@{domain}" if user else None


def fingerprint_digest(tenant_id: uuid.UUID, kind: str, value: str) -> str:
    """What is stored of a fingerprint: a digest salted with the tenant, so raw device ids
    and the like are never kept, and equal values of one tenant still compare equal."""
    data = b"\x00".join((tenant_id.bytes, kind.encode(), value.strip().lower().encode()))
    return hashlib.sha256(data).hexdigest()
