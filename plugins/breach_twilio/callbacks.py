"""Status-callback URLs that carry the delivery id, written so every HTTP stack reads them alike.

Twilio signs the exact URL it was given, and a receiver must rebuild that same string to check
``X-Twilio-Signature``. HTTP libraries normalise query strings on the way (aiohttp/yarl decodes
``%3A`` to ``:``, for instance), so the query is written in the form such a normalisation leaves
unchanged, and :func:`canonical` rewrites any received URL into that form.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: The query parameter that names the delivery (the simulator reads the same name).
DELIVERY_PARAM = "delivery_id"

# Characters a query may hold unencoded that URL normalisers decode anyway (RFC 3986 pchar, "/"
# and "?"); "&", "=", "+", ";" and "#" stay encoded because they change the meaning.
_QUERY_SAFE = "!$'()*,/:?@~"


def _query(pairs: list[tuple[str, str]]) -> str:
    return urlencode(pairs, safe=_QUERY_SAFE)


def with_delivery(url: str, delivery_id: str) -> str:
    """``url`` with ``delivery_id=<id>`` in its query (replacing any earlier value)."""
    parts = urlsplit(url)
    pairs = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != DELIVERY_PARAM
    ]
    pairs.append((DELIVERY_PARAM, delivery_id))
    return urlunsplit(parts._replace(query=_query(pairs)))


def canonical(url: str) -> str:
    """``url`` with its query re-encoded the way :func:`with_delivery` writes it."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    return urlunsplit(parts._replace(query=_query(parse_qsl(parts.query, keep_blank_values=True))))


def delivery_of(url: str) -> str | None:
    """The delivery id a callback URL carries, if any."""
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if key == DELIVERY_PARAM and value:
            return value
    return None
