"""The bearer token of an HTTP ``Authorization`` header (RFC 6750), checked once
for every API that takes one: the engine's control API and the gateway's admin calls.

The scheme is case-insensitive (RFC 7235 §2.1: ``Bearer``, ``bearer`` and ``BEARER``
are one scheme) and may be followed by more than one space; the token itself is
compared exactly, in constant time.
"""

from __future__ import annotations

import hmac

__all__ = ["bearer_matches"]


def bearer_matches(header: str | bytes | None, token: str) -> bool:
    """Whether the ``Authorization`` header value *header* carries the bearer
    *token* (False for a missing header, another scheme, or another token)."""
    if header is None or not token:
        return False
    raw = header if isinstance(header, bytes) else header.encode("latin-1", "replace")
    scheme, _, presented = raw.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(presented.strip(b" \t"), token.encode())
