"""Phone numbers normalised to E.164; the tenant's region (RU, so +7) is the default."""

from __future__ import annotations

import phonenumbers


class InvalidPhone(ValueError):
    """The text is not a possible phone number."""


def normalize_phone(raw: str, default_region: str = "RU") -> str:
    """Return ``raw`` in E.164 (``+79161234567``) or raise :class:`InvalidPhone`.

    Russian habits are accepted: ``8 916 123-45-67`` and ``9161234567`` both mean +7.
    """
    text = raw.strip()
    if not text or len(text) > 32:
        raise InvalidPhone("empty or too long")
    if default_region == "RU" and not text.startswith("+"):
        digits = "".join(ch for ch in text if ch.isdigit())
        # A leading 8 is the trunk prefix inside Russia and Kazakhstan.
        if len(digits) == 11 and digits[0] == "8":
            text = "+7" + digits[1:]
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(str(exc)) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone("not a valid number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def mask_phone(e164: str | None) -> str | None:
    """Show a phone to a cashier without revealing it: ``+7916***4567``."""
    if not e164:
        return None
    return e164[:5] + "***" + e164[-4:]
