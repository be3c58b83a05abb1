"""firebase_admin on the live path: one app per notifier, its endpoint set in one place.

Imported only when a notifier really sends: ``breach validate``, ``breach plugins`` and dry runs
never load the SDK, and nothing here talks to Google before the first message (a service-account
file is only parsed; its access token is fetched by the first request).

The SDK has no endpoint option: the send URL is the class attribute
``messaging._MessagingService.FCM_URL``, formatted with the project id when an app's messaging
service is created. :func:`open_app` is the one place that overrides it: it sets the attribute,
creates this app's service at once and puts the attribute back, under a lock, so the override
reaches this app and no other.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import firebase_admin
import firebase_admin.exceptions as fx
import google.auth.exceptions
import google.oauth2.credentials
import httpx
from firebase_admin import credentials, messaging

from orchestrator.plugin import ConfigurationError, Outcome
from orchestrator.plugin.reasons import mask_reason

from .transport import install

SEND_PATH: Final = "/v1/projects/{0}/messages:send"
_override_lock = threading.Lock()
_names = itertools.count(1)


@dataclass
class FcmApp:
    """An initialised app, its messaging service, and the event loop its HTTP client is on."""

    app: Any
    service: Any
    loop: asyncio.AbstractEventLoop
    _calls: asyncio.Semaphore | None = None

    def calls(self, limit: int) -> asyncio.Semaphore:
        """The bound on ``send_each_async`` calls in flight on this app (``limit`` at first use).

        One per app: every batch the notifier sends shares the app's one HTTP pool.
        """
        if self._calls is None:
            self._calls = asyncio.Semaphore(limit)
        return self._calls

    def usable(self) -> bool:
        """True while the running loop is the one this app's async client first ran on.

        ``send_each_async`` keeps one httpx client per app, tied to its first event loop.
        """
        return asyncio.get_running_loop() is self.loop and not self.loop.is_closed()

    async def aclose(self) -> None:
        """Close the async HTTP client on its own loop, then delete the app.

        ``delete_app`` closes that client with ``asyncio.run``, which cannot run inside an event
        loop; closing it here first makes that a no-op, done in a worker thread.
        """
        await self.service._async_client.aclose()
        await asyncio.to_thread(firebase_admin.delete_app, self.app)


def _credential(settings: Mapping[str, str]) -> Any:
    token = settings.get("FCM_ACCESS_TOKEN")
    if token:
        # a ready access token (simulator, short-lived token from a secrets manager): no refresh
        return google.oauth2.credentials.Credentials(token=token)  # type: ignore[no-untyped-call]
    path = settings.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        raise ConfigurationError(
            "fcm-push: set GOOGLE_APPLICATION_CREDENTIALS (a service-account file) or "
            "FCM_ACCESS_TOKEN"
        )
    try:
        return credentials.Certificate(path)
    except (OSError, ValueError) as exc:
        # the message names the file's problem; the file's content is never quoted
        raise ConfigurationError(
            f"GOOGLE_APPLICATION_CREDENTIALS does not point at a usable service-account file "
            f"({type(exc).__name__})"
        ) from None


def open_app(settings: Mapping[str, str], timeout: float) -> FcmApp:
    """A new app for these settings, with its messaging service created now."""
    project = settings.get("FCM_PROJECT_ID")
    if not project:
        raise ConfigurationError("fcm-push: set FCM_PROJECT_ID to send")
    options = {"projectId": project, "httpTimeout": timeout}
    app = firebase_admin.initialize_app(
        _credential(settings), options, name=f"breach-fcm-{next(_names)}"
    )
    base = settings.get("FCM_API_BASE_URL")
    with _override_lock:
        original = messaging._MessagingService.FCM_URL
        if base:
            messaging._MessagingService.FCM_URL = base.rstrip("/") + SEND_PATH
        try:
            service = messaging._get_messaging_service(app)
        except BaseException:
            firebase_admin.delete_app(app)  # no service yet: nothing async to close
            raise
        finally:
            messaging._MessagingService.FCM_URL = original
    install(service, timeout)
    return FcmApp(app, service, asyncio.get_running_loop())


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "http_response", None)
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: the core's backoff applies


_CREDENTIALS_HINT = (
    "FCM refused our credentials: check GOOGLE_APPLICATION_CREDENTIALS / FCM_ACCESS_TOKEN and "
    "FCM_PROJECT_ID"
)
#: SDK exception class -> (outcome, fixed reason). Looked up along the class's MRO, most
#: specific first, so the FCM-specific classes win over the generic ones they derive from.
_KNOWN: Final[dict[type[Exception], tuple[Outcome, str | None]]] = {
    messaging.UnregisteredError: (Outcome.PERMANENT, "the push token is no longer registered"),
    messaging.SenderIdMismatchError: (
        Outcome.PERMANENT,
        "the push token belongs to another Firebase project",
    ),
    messaging.ThirdPartyAuthError: (
        Outcome.PERMANENT,
        "APNs or web push credentials were refused: fix them in the Firebase console",
    ),
    messaging.QuotaExceededError: (Outcome.TRANSIENT, None),
    fx.UnauthenticatedError: (Outcome.PERMANENT, _CREDENTIALS_HINT),
    fx.PermissionDeniedError: (Outcome.PERMANENT, _CREDENTIALS_HINT),
    fx.ResourceExhaustedError: (Outcome.TRANSIENT, None),
    fx.UnavailableError: (Outcome.TRANSIENT, None),
    fx.InternalError: (Outcome.TRANSIENT, None),
    fx.AbortedError: (Outcome.TRANSIENT, None),
    fx.NotFoundError: (Outcome.PERMANENT, None),
    fx.InvalidArgumentError: (Outcome.PERMANENT, None),
}


def classify(exc: Exception, timeout: float) -> tuple[Outcome, str, float | None]:
    """Outcome, reason and delay of one message's ``SendResponse.exception`` (or of the
    ``FirebaseError`` that failed a whole ``send_each_async`` call)."""
    response = getattr(exc, "http_response", None)
    status = getattr(response, "status_code", None)
    cause = getattr(exc, "cause", None)
    if isinstance(cause, google.auth.exceptions.TransportError):
        return Outcome.TRANSIENT, "fcm: could not reach Google's token service", None
    if isinstance(cause, google.auth.exceptions.RefreshError):
        # no access token: a revoked key, a token that expired and cannot be refreshed, or a
        # 401 on a static token (the SDK then tries to refresh it). The cause is not quoted.
        retryable = bool(getattr(cause, "retryable", False))
        outcome = Outcome.TRANSIENT if retryable else Outcome.PERMANENT
        return outcome, f"fcm: no access token: {_CREDENTIALS_HINT}", None
    if isinstance(exc, fx.DeadlineExceededError):
        return Outcome.TRANSIENT, f"fcm: no answer within {timeout:g} s (FCM_TIMEOUT)", None
    for cls in type(exc).__mro__:
        if cls in _KNOWN:
            outcome, reason = _KNOWN[cls]
            code = getattr(exc, "code", None) or cls.__name__
            label = f"fcm {code}" + (f" (HTTP {status})" if status else "")
            text = f"{label}: {reason or exc}"
            delay = _retry_after(exc) if outcome is Outcome.TRANSIENT else None
            return outcome, mask_reason(text), delay
    if status is None:
        # no HTTP answer at all: the connection broke (reset, closed without a reply)
        return Outcome.TRANSIENT, mask_reason(f"fcm: connection failed: {exc}"), None
    # an answer the SDK could not map (a gateway's HTML 502, say): its body is no reason
    outcome = Outcome.TRANSIENT if status == 429 or status >= 500 else Outcome.PERMANENT
    return outcome, f"fcm HTTP {status}", None


#: httpx errors raised before a request leaves: no connection, or none free in the pool
_NEVER_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


def uncertain(exc: Exception) -> bool:
    """Whether the message may have reached FCM although no answer said so.

    True when the connection broke or the time ran out after the request went out (a read or
    write timeout, the server hanging up, a reset: ``RemoteProtocolError``, ``ReadError``,
    ``ReadTimeout``): a retry may deliver it twice. False when FCM answered (any status), when
    no access token could be had, and when no connection was made (refused, a name that does
    not resolve, a connect timeout): then FCM never had the message.
    """
    if getattr(exc, "http_response", None) is not None:
        return False
    cause = getattr(exc, "cause", None)
    if isinstance(cause, google.auth.exceptions.GoogleAuthError):
        return False  # the token is fetched before the message is sent
    if isinstance(cause, _NEVER_SENT):
        return False
    return isinstance(cause, httpx.TransportError) or isinstance(exc, fx.DeadlineExceededError)
