"""How a Twilio answer becomes a receipt outcome: sent, transient (retry) or permanent.

Twilio answers a refused Messages/Calls request with an HTTP status and one of its error codes
(https://www.twilio.com/docs/api/errors). The core decides retries; this module only classifies.
Codes not listed fall back on the status: 429 and 5xx are transient, any other 4xx permanent.
"""

from __future__ import annotations

from typing import Final

from orchestrator.plugin import Outcome
from orchestrator.plugin.reasons import mask_reason

T = Outcome.TRANSIENT
P = Outcome.PERMANENT

#: code -> (outcome, what it means in a few words). The API's own message follows in the reason.
CODES: Final[dict[int, tuple[Outcome, str]]] = {
    # throttling and Twilio-side trouble: the same request may succeed later
    20429: (T, "rate limited by Twilio"),
    20500: (T, "Twilio internal error"),
    20503: (T, "Twilio temporarily unavailable"),
    21611: (T, "sender's queue is full"),
    # the recipient: retrying never helps
    21211: (P, "invalid 'To' number"),
    21214: (P, "'To' number cannot be reached"),
    21215: (P, "calls to this region are not enabled on the account"),
    21216: (P, "account may not call this number"),
    21217: (P, "invalid 'To' number"),
    21401: (P, "invalid phone number"),
    21407: (P, "number type does not accept SMS"),
    21408: (P, "SMS to this region is not enabled on the account"),
    21610: (P, "recipient opted out (replied STOP)"),
    21612: (P, "number not reachable by SMS from this sender"),
    21614: (P, "not a mobile number"),
    # the request or the account: fix the configuration, then re-queue
    20003: (P, "Twilio refused the credentials: check the account SID and auth token"),
    20404: (P, "Twilio resource not found: check the account SID"),
    21212: (P, "invalid 'From' number: check TWILIO_FROM"),
    21602: (P, "message body is empty"),
    21606: (P, "'From' number cannot send to this destination: check TWILIO_FROM"),
    21617: (P, "message body longer than 1,600 characters"),
    32018: (P, "TwiML longer than 4,000 characters"),
}

# The SDK puts this before the API's own message (and only this when the body is not JSON).
_PREFIX = "Unable to create record"


def classify_rest_error(status: int, code: int | None, message: str) -> tuple[Outcome, str]:
    """Outcome and short reason of a ``TwilioRestException`` (status, code, msg)."""
    text = message.removeprefix(_PREFIX).lstrip(": ")
    known = CODES.get(code) if code is not None else None
    if known is not None:
        outcome, meaning = known
    elif status == 429 or status >= 500:
        outcome, meaning = T, f"Twilio answered HTTP {status}"
    else:
        outcome, meaning = P, f"Twilio refused the request (HTTP {status})"
    label = f"twilio {code}" if code is not None and code != status else f"twilio HTTP {status}"
    detail = f" ({mask_reason(text)})" if text and not text.lstrip().startswith("<") else ""
    return outcome, mask_reason(f"{label}: {meaning}{detail}")
