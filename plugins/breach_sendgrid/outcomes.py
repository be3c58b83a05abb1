"""How one ``/v3/mail/send`` answer becomes the outcome of every message in that request.

=====================================  ===========  =========================================
SendGrid answer                        outcome      notes
=====================================  ===========  =========================================
202 (200 in sandbox mode)              sent         provider id: ``X-Message-Id``
429                                    transient    retry after ``X-RateLimit-Reset`` (a Unix
                                                    time) minus now, else ``Retry-After``;
                                                    the rest of the batch waits too
500, 502, 503, 504 and any 5xx         transient
400 naming personalizations            permanent    for those personalizations only; the
                                                    others are sent again without them
400 otherwise, 413, other 4xx          permanent    SendGrid's own error message kept
401, 403                               permanent    the API key: fix it, then re-queue
connection refused, name unknown       transient    the request never left; the rest of the
                                                    batch waits too
reset, dropped, timeout after sending  transient    uncertain: SendGrid may have it (a possible
                                                    duplicate); the rest of the batch waits too
=====================================  ===========  =========================================
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.plugin import Outcome
from orchestrator.plugin.reasons import mask_reason

_PERSONALIZATION_FIELD = re.compile(r"^personalizations\.(\d+)\.")
_AUTH_HINT = "SendGrid refused the API key: check SENDGRID_API_KEY and its Mail Send permission"


@dataclass(frozen=True)
class Answer:
    """What one request came to, for every message it carried (except ``rejected`` ones)."""

    outcome: Outcome
    message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    #: personalization index -> reason, when a 400 blames single personalizations
    rejected: Mapping[int, str] = field(default_factory=dict)
    #: the rest of the batch should not be tried now (rate limit, endpoint unreachable)
    stop: bool = False
    #: the request went out but its answer was lost (the connection dropped, no answer in
    #: time): SendGrid may have accepted it, so a retry may send it twice
    uncertain: bool = False


def _errors(body: Any) -> list[tuple[str, str | None]]:
    """``(message, field)`` of SendGrid's ``{"errors": [...]}`` body; [] when not that shape."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return []
    out = []
    for error in errors:
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            where = error.get("field")
            out.append((error["message"], where if isinstance(where, str) else None))
    return out


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    return str(value) if value is not None else None


def retry_after(headers: Any, now: float) -> float | None:
    """Seconds to wait: until ``X-RateLimit-Reset`` (a Unix time: SendGrid's own header), else
    ``Retry-After`` (seconds, as a proxy in front of it may send)."""
    for name, relative in (("X-RateLimit-Reset", False), ("Retry-After", True)):
        raw = _header(headers, name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if math.isfinite(value):
            return max(0.0, value if relative else value - now)
    return None


def _summary(errors: list[tuple[str, str | None]]) -> str:
    parts = [f"{message} ({where})" if where else message for message, where in errors[:3]]
    more = f" and {len(errors) - 3} more" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def classify_http_error(status: int, body: Any, headers: Any, now: float) -> Answer:
    """The answer for an ``HTTPError`` SendGrid raised (status, body, headers)."""
    errors = _errors(body)
    detail = f": {_summary(errors)}" if errors else ""
    if status == 429:
        wait = retry_after(headers, now)
        return Answer(
            Outcome.TRANSIENT,
            error=mask_reason(f"sendgrid HTTP 429: rate limited{detail}"),
            retry_after=wait,
            stop=True,
        )
    if status >= 500:
        return Answer(Outcome.TRANSIENT, error=mask_reason(f"sendgrid HTTP {status}{detail}"))
    if status in (401, 403):
        return Answer(Outcome.PERMANENT, error=mask_reason(f"sendgrid HTTP {status}: {_AUTH_HINT}"))
    if status == 400 and errors:
        rejected: dict[int, str] = {}
        for message, where in errors:
            match = _PERSONALIZATION_FIELD.match(where or "")
            if match is None:
                rejected = {}
                break
            index = int(match.group(1))
            reason = f"sendgrid HTTP 400: {message} ({where})"
            rejected[index] = mask_reason(
                f"{rejected[index]}; {message}" if index in rejected else reason
            )
        if rejected:
            return Answer(
                Outcome.PERMANENT,
                error=mask_reason(f"sendgrid HTTP 400{detail}"),
                rejected=rejected,
            )
    if status == 413:
        return Answer(
            Outcome.PERMANENT, error=mask_reason(f"sendgrid HTTP 413: request too large{detail}")
        )
    return Answer(Outcome.PERMANENT, error=mask_reason(f"sendgrid HTTP {status}{detail}"))
