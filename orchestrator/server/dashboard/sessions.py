"""Dashboard logins: a token exchanged for a session cookie, and a CSRF token per session.

The cookie carries a random session id only (``Secure``, ``HttpOnly``, ``SameSite=Strict``);
the session, kept in this process's memory, names the API token it was opened with and its
roles. Every form carries the session's CSRF token, compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from ..config import ApiToken

__all__ = ["COOKIE", "LIFETIME_SECONDS", "Session", "Sessions"]

COOKIE = "breach_session"
LIFETIME_SECONDS = 8 * 3600  # a shift


@dataclass(frozen=True)
class Session:
    """One logged-in browser."""

    token: ApiToken
    csrf: str
    expires: float

    def csrf_ok(self, given: str | None) -> bool:
        """Does ``given`` (a form's hidden field) match this session's CSRF token?"""
        return bool(given) and hmac.compare_digest(str(given).encode(), self.csrf.encode())


class Sessions:
    """The open sessions of this server process (a restart logs everyone out)."""

    def __init__(self) -> None:
        self._open: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, token: ApiToken) -> str:
        """A new session for ``token``; returns its id (the cookie's value)."""
        sid = secrets.token_urlsafe(32)
        session = Session(token, secrets.token_urlsafe(32), time.time() + LIFETIME_SECONDS)
        with self._lock:
            now = time.time()
            self._open = {k: s for k, s in self._open.items() if s.expires > now}
            self._open[sid] = session
        return sid

    def get(self, sid: str | None) -> Session | None:
        """The live session of this cookie value, or None."""
        if not sid:
            return None
        with self._lock:
            session = self._open.get(sid)
            if session is not None and session.expires <= time.time():
                del self._open[sid]
                return None
            return session

    def close(self, sid: str | None) -> None:
        """Log out."""
        with self._lock:
            self._open.pop(sid or "", None)
