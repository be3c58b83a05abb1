"""The SendGrid SDK on the live path: one client per notifier, one blocking call per request.

Imported only when a notifier really sends, so ``breach validate`` and dry runs never load the
SDK. The SDK is synchronous (urllib, a new connection per request, no retries): the notifier runs
:meth:`SendGridSession.post` in a worker thread so the event loop is never blocked.
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.error
from collections.abc import Mapping
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from orchestrator.plugin import Outcome
from orchestrator.plugin.reasons import mask_reason

from .outcomes import Answer, classify_http_error

DEFAULT_HOST = "https://api.sendgrid.com"


def _no_debug(record: logging.LogRecord) -> bool:
    return record.levelno > logging.DEBUG


def _silence_wire_logs() -> None:
    """Keep python_http_client's debug lines out of every log.

    At DEBUG it logs each request's headers (the API key in ``Authorization``) and its payload
    (every recipient's address). A filter on its logger drops them whatever level is set.
    """
    wire = logging.getLogger("python_http_client.client")
    if _no_debug not in wire.filters:
        wire.addFilter(_no_debug)


class SendGridSession:
    """A ``SendGridAPIClient`` with its host and per-request timeout set."""

    def __init__(self, api_key: str, host: str | None, timeout: float) -> None:
        _silence_wire_logs()
        # host goes to the constructor: the data-residency helpers would overwrite a later one
        self.client = SendGridAPIClient(api_key=api_key, host=(host or DEFAULT_HOST).rstrip("/"))
        # python_http_client hands its timeout to every child client it builds for a path
        self.client.client.timeout = timeout
        self.timeout = timeout

    def post(self, body: Mapping[str, Any]) -> Answer:
        """``POST /v3/mail/send`` with ``body``; blocking, never raises for provider errors."""
        try:
            response = self.client.send(dict(body))
        except HTTPError as exc:
            return classify_http_error(int(exc.status_code), exc.body, exc.headers, time.time())
        except urllib.error.URLError as exc:
            # urllib wraps in URLError only what fails while connecting and writing the
            # request: SendGrid never had a whole request, so nothing can be sent twice
            return Answer(Outcome.TRANSIENT, error=self._network_error(exc), stop=True)
        except (TimeoutError, http.client.HTTPException, OSError) as exc:
            # raised while waiting for or reading the answer (RemoteDisconnected, a reset, a
            # read timeout): the request went out whole and may have been accepted
            error = self._network_error(exc)
            return Answer(Outcome.TRANSIENT, error=error, stop=True, uncertain=True)
        message_id = response.headers.get("X-Message-Id") if response.headers else None
        return Answer(Outcome.SENT, message_id=str(message_id) if message_id else None)

    def _network_error(self, exc: BaseException) -> str:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            return f"sendgrid: no answer within {self.timeout:g} s (SENDGRID_TIMEOUT)"
        kind = type(reason).__name__ if isinstance(reason, BaseException) else "URLError"
        return mask_reason(f"sendgrid: connection failed: {kind}: {reason}")
