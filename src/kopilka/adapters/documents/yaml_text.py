"""YAML for program documents, with clock times and dates left as text.

PyYAML reads YAML 1.1, where an unquoted ``8:00`` is the base-60 number 480 and an
unquoted ``2026-03-01`` a date object: a rule's ``hours: {from: 8:00}`` or a schedule's
``starts_at`` then failed with a bare "Invalid value", although the document's own fields
parse those texts. Here they stay strings; everything else is ``yaml.safe_load``'s (no tags
that build Python objects).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
# Digits and colons, as in 8:00, 10:30, 7:30:15 (and 1:30.5): base 60 in YAML 1.1.
_CLOCK = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")


class DocumentLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    """``yaml.SafeLoader`` without timestamps or base-60 numbers (both stay strings)."""


DocumentLoader.yaml_implicit_resolvers = {
    first: [
        *([("tag:yaml.org,2002:str", _CLOCK)] if first in "+-0123456789" else []),
        *(entry for entry in resolvers if entry[0] != _TIMESTAMP),
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    """Parse ``text`` as a YAML document (``yaml.YAMLError`` when it is not one)."""
    return yaml.load(text, Loader=DocumentLoader)  # noqa: S506 - a SafeLoader subclass
