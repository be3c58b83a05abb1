"""firebase_admin on the live path: its message model, credentials, retry policy and errors.

Imported only when a notifier really sends: ``breach validate``, ``breach plugins`` and dry runs
never load the SDK, and nothing here talks to Google before the first message (a service-account
file is only parsed; its access token is fetched for the first request).

Each message is built as a ``firebase_admin.messaging.Message`` and encoded by the SDK's own
encoder; :class:`FcmApp` POSTs it to the FCM v1 ``messages:send`` endpoint over one aiohttp pool
(:mod:`.transport`) instead of the SDK's per-message httpx machinery, and keeps what that
machinery promises:

* the app's credential, its token fetched once and refreshed when it expires or FCM answers
  401 (at most twice per message, as the SDK's auth flow does), the refresh off the event loop;
* the SDK's retry policy (``DEFAULT_HTTPX_RETRY_CONFIG``: 500 and 503 retried 4 times with
  backoff; 429 not retried);
* every failure mapped by the SDK's own functions into its exception classes
  (``UnregisteredError``, ``QuotaExceededError``, ``UnavailableError``...), which
  :func:`classify` and :func:`uncertain` read.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import firebase_admin
import firebase_admin.exceptions as fx
import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import httpx
from firebase_admin import _http_client, _utils, credentials, messaging

from orchestrator.plugin import ConfigurationError, Outcome
from orchestrator.plugin.reasons import mask_reason

from .transport import Pool

GOOGLE_FCM: Final = "https://fcm.googleapis.com"
SEND_PATH: Final = "/v1/projects/{0}/messages:send"
#: forced token refreshes per message after a 401, as the SDK's ``GoogleAuthCredentialFlow``
MAX_REFRESHES: Final = 2
_names = itertools.count(1)
#: one encoder for every body (``json.dumps`` with options builds a new one per call); the
#: body is UTF-8 JSON, so text needs no escaping
_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True)
class _Auth:
    """Request headers carrying one access token, or why no token could be had."""

    headers: Mapping[str, str]
    error: Exception | None = None


@dataclass
class FcmApp:
    """An initialised firebase app and the pool its messages go out on (bound to one loop)."""

    app: Any
    url: str
    pool: Pool
    loop: asyncio.AbstractEventLoop
    _auth: _Auth | None = None
    _refreshing: asyncio.Lock = field(default_factory=asyncio.Lock)

    def usable(self) -> bool:
        """True while the running loop is the one this app's pool was made on."""
        return asyncio.get_running_loop() is self.loop and not self.loop.is_closed()

    async def send(
        self, message: dict[str, Any], *, dry_run: bool
    ) -> tuple[str | None, fx.FirebaseError | None]:
        """Send one message (a ``messaging.Message`` the SDK's encoder made into ``message``):
        its name once FCM accepted it, or the SDK's exception for why not.

        Never raises for what FCM, the network or the token service did.
        """
        data: dict[str, Any] = {"message": message}
        if dry_run:
            data["validate_only"] = True
        body = _to_json(data).encode()
        refreshes = 0
        stale: _Auth | None = None
        while True:
            auth = await self._authorized(stale)
            if auth.error is not None:
                # what send_each_async raises when its auth flow cannot get a token
                text = f"Unknown error while making remote service calls: {auth.error}"
                return None, fx.UnknownError(message=text, cause=auth.error)
            try:
                answer = await self._post_with_retries(body, auth.headers)
            except httpx.HTTPError as exc:
                return None, self._error(exc)
            if not isinstance(answer, httpx.Response):
                return answer, None
            if answer.status_code != 401 or refreshes == MAX_REFRESHES:
                text = f"FCM answered HTTP {answer.status_code}"
                error = httpx.HTTPStatusError(text, request=answer.request, response=answer)
                return None, self._error(error)
            refreshes += 1
            stale = auth

    async def _post_with_retries(
        self, body: bytes, headers: Mapping[str, str]
    ) -> str | httpx.Response | None:
        """The message name (None if FCM's 2xx answer did not say), or the last error answer
        once the SDK's retry policy gave up."""
        retry = None
        while True:
            status, raw, content = await self.pool.post(self.url, body, headers)
            if 200 <= status < 300:
                return _name(content)
            # only failures pay for httpx objects: the SDK's retry policy and errors read them
            request = httpx.Request("POST", self.url)
            response = httpx.Response(status, headers=list(raw), content=content, request=request)
            if retry is None:
                retry = _http_client.DEFAULT_HTTPX_RETRY_CONFIG.copy()
            if not retry.is_retryable_response(response):
                return response
            retry.increment(request, response)
            if retry.is_exhausted():
                return response
            await retry.sleep(response)

    @staticmethod
    def _error(error: httpx.HTTPError) -> fx.FirebaseError:
        # the SDK's own mapping (send_each_async's): FCM error codes, then HTTP status, then
        # the transport failure
        mapped: fx.FirebaseError = _utils.handle_platform_error_from_httpx(
            error, messaging._MessagingService._build_fcm_error_httpx
        )
        return mapped

    async def _authorized(self, stale: _Auth | None) -> _Auth:
        """Headers with a valid access token (a new one when ``stale`` got a 401), or the
        failure to get one.

        One refresh at a time: messages that waited for it use its token (or its failure).
        """
        seen = self._auth
        credential = self.app.credential.get_credential()
        if seen is not None and seen is not stale and seen.error is None and credential.valid:
            return seen
        async with self._refreshing:
            if self._auth is seen:
                self._auth = await asyncio.to_thread(self._token, credential, stale is not None)
            current = self._auth
        assert current is not None
        return current

    def _token(self, credential: Any, force: bool) -> _Auth:
        """Fetch a token (in a worker thread: google-auth's refresh is a blocking request)."""
        headers = {
            "Content-Type": "application/json",
            "X-GOOG-API-FORMAT-VERSION": "2",
            "X-FIREBASE-CLIENT": f"fire-admin-python/{firebase_admin.__version__}",
            "x-goog-api-client": _utils.get_metrics_header(),
        }
        request = google.auth.transport.requests.Request()
        try:
            if force:
                credential.refresh(request)
            # refreshes an expired token, then puts it (and the metrics) into the headers
            credential.before_request(request, "POST", self.url, headers)
        except Exception as exc:
            return _Auth({}, exc)
        return _Auth(headers)

    async def aclose(self) -> None:
        """Close the pool, then delete the app."""
        await self.pool.aclose()
        firebase_admin.delete_app(self.app)


def _name(content: bytes) -> str | None:
    """The message name in FCM's answer; as the SDK, an answer without one is still a send."""
    try:
        answer = json.loads(content)
    except ValueError:
        return None
    name = answer.get("name") if isinstance(answer, dict) else None
    return name if isinstance(name, str) else None


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


def open_app(settings: Mapping[str, str], timeout: float, in_flight: int) -> FcmApp:
    """A new app for these settings, its send URL (``FCM_API_BASE_URL`` or Google's) and pool."""
    project = settings.get("FCM_PROJECT_ID")
    if not project:
        raise ConfigurationError("fcm-push: set FCM_PROJECT_ID to send")
    options = {"projectId": project, "httpTimeout": timeout}
    app = firebase_admin.initialize_app(
        _credential(settings), options, name=f"breach-fcm-{next(_names)}"
    )
    base = (settings.get("FCM_API_BASE_URL") or GOOGLE_FCM).rstrip("/")
    url = base + SEND_PATH.format(app.project_id)
    return FcmApp(app, url, Pool(timeout, in_flight), asyncio.get_running_loop())


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
