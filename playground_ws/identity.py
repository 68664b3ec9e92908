"""Who a browser is: an anonymous user id in a signed cookie.

On a first visit the page response sets ``ag_user`` to a fresh id (``u-`` and 16
hex digits: a valid session id, 18 bytes) signed with the gateway's secret. The
WebSocket trusts only that cookie: a browser can never name another user's
session, since ids never come from the client. Tabs of one browser share the
cookie, hence the user's stream and state.

The seam is ``Identity``: swap in a Discord OAuth login later without touching
the rest.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Protocol

from itsdangerous import BadSignature, URLSafeSerializer

from protocol import InvalidSessionId, validate_session_id

__all__ = ["COOKIE_NAME", "CookieIdentity", "Identity", "is_user_id", "load_or_create_secret"]

COOKIE_NAME = "ag_user"
#: A signed identity cookie lives a year; the id itself never expires.
COOKIE_MAX_AGE = 365 * 24 * 3600
_USER_ID = re.compile(r"u-[0-9a-f]{16}")


def is_user_id(key: str) -> bool:
    """Whether *key* (a player key, a session id) is a playground user's id, not,
    say, a Discord guild's."""
    return _USER_ID.fullmatch(key) is not None


class Identity(Protocol):
    """Maps a request's cookies to a user id."""

    def user_from_cookie(self, value: str | None) -> str | None:
        """The user id in a cookie value, or None if absent, forged or tampered."""
        ...

    def new_user(self) -> tuple[str, str]:
        """A fresh user id and the cookie value that carries it."""
        ...


class CookieIdentity:
    """Anonymous users in signed cookies (itsdangerous)."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt="audiogate-user")

    def user_from_cookie(self, value: str | None) -> str | None:
        """See ``Identity.user_from_cookie``."""
        if not value:
            return None
        try:
            user = self._serializer.loads(value)
        except BadSignature:
            return None
        if not isinstance(user, str):
            return None
        try:
            return validate_session_id(user)
        except InvalidSessionId:
            return None

    def new_user(self) -> tuple[str, str]:
        """See ``Identity.new_user``."""
        user = f"u-{secrets.token_hex(8)}"
        return user, self._serializer.dumps(user)


def load_or_create_secret(path: Path) -> str:
    """The cookie secret kept in *path* (created with mode 600 on first use), so
    identities survive restarts."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(32)
        path.touch(mode=0o600)
        path.write_text(secret)
        return secret
