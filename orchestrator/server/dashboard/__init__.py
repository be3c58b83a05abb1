"""The commander's dashboard at ``/``: server-rendered pages over the ``Breach`` session.

Log in with an API token (its roles apply: approve and reject buttons show only for a gated
step whose roles the token holds, and the server checks again on every POST). Pages are Jinja2,
autoescaped; one small script (``static/dashboard.js``) refreshes an incident's live section and
counts deadline clocks down. No inline script, no CDN, no build step. Every response carries a
strict Content-Security-Policy (``frame-ancestors 'none'``), every form a CSRF token.
"""

from __future__ import annotations

from .pages import create_dashboard

__all__ = ["create_dashboard"]
