"""The NUL guard on request bodies: every escape form is caught, escaped backslashes and
ordinary \\uXXXX escapes (Cyrillic text sent as ASCII JSON) are not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import Request

from kopilka.api.guards import nul_character_errors


def _errors(body: bytes) -> list[dict[str, Any]]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/x", "query_string": b"", "headers": []}
    return asyncio.run(nul_character_errors(Request(scope, receive)))


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "A\\u0000"}',
        b'{"name": "A\x00"}',
        b'name: "A\\0"',
        b'name: "A\\x00"',
        b'name: "A\\U00000000"',
        b'{"name": "A\\\\\\u0000"}',  # an escaped backslash, then the escape
    ],
)
def test_every_nul_escape_is_refused(body: bytes) -> None:
    assert [e["path"] for e in _errors(body)] == [["body"]]


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "\\u0410\\u043d\\u043d\\u0430"}',  # "Anna" in Cyrillic, ASCII-escaped
        b'{"path": "C:\\\\0"}',  # an escaped backslash followed by a zero
        b'{"name": "\\\\u0000"}',  # the text \u0000, not a NUL
        b'{"lines": [{"sku": "A-1", "qty": 1, "price": 100}]}',
    ],
)
def test_ordinary_bodies_pass(body: bytes) -> None:
    assert _errors(body) == []
