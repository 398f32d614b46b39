"""Input refused before it reaches a router: text with NUL characters.

PostgreSQL cannot store U+0000 in text or JSONB, so such input used to fail deep in a write
with a 500 (and SQLite stored it). Checked once here for every route: query parameters, the
path, and the body (a JSON ``\\u0000`` escape, or YAML's ``\\0``/``\\x00``/``\\U00000000``).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

# An escape starts at a backslash preceded by an even number of backslashes. In valid JSON
# only \\u0000 can make a NUL; the other forms are YAML escapes (invalid JSON anyway).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\(?:u0000|x00|0|U00000000)")
_ESCAPES = (b"\\u0000", b"\\x00", b"\\0", b"\\U00000000")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MESSAGE = "Text must not contain the NUL character (U+0000)."


async def nul_character_errors(request: Request) -> list[dict[str, Any]]:
    """Field errors for every place a NUL character was sent; empty when there is none."""
    errors: list[dict[str, Any]] = []
    if "\x00" in request.scope["path"]:  # the decoded path (request.url builds a URL)
        errors.append({"path": ["path"], "message": MESSAGE, "code": "invalid_character"})
    for name, value in request.query_params.multi_items() if request.scope["query_string"] else ():
        if "\x00" in name or "\x00" in value:
            errors.append(
                {
                    "path": ["query", name.replace("\x00", "")],
                    "message": MESSAGE,
                    "code": "invalid_character",
                }
            )
    if request.method in _BODY_METHODS:
        body = await request.body()
        # The precise search (which minds escaped backslashes) only runs when one of the
        # escapes occurs at all: bodies are full of \uXXXX escapes of Cyrillic text.
        if b"\x00" in body or (
            any(escape in body for escape in _ESCAPES) and _NUL_ESCAPE.search(body)
        ):
            errors.append({"path": ["body"], "message": MESSAGE, "code": "invalid_character"})
    return errors
