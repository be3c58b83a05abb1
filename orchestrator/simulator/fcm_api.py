"""Firebase Cloud Messaging HTTP v1: ``POST /v1/projects/{project}/messages:send``.

Bearer auth (an OAuth access token); body ``{"message": {...}, "validate_only": bool}`` with
exactly one target (``token``, ``fid``, ``topic`` or ``condition``) and string-only ``data``.
Success is 200 ``{"name": "projects/<p>/messages/<id>"}``; ``validate_only`` answers a
``fake_message_id`` and delivers nothing. The bearer token is the configured one, or one that
``POST /token`` granted (Google's OAuth token endpoint, for a service account whose
``token_uri`` points here) and that was not revoked since. Errors use the Google API shape
with an ``FcmError`` detail, which is what the Admin SDK maps to its exception classes: a token
starting with ``unregistered`` is 404 ``UNREGISTERED``, one starting with ``invalid`` is 400
``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import secrets
import time
from typing import Any, ClassVar

from aiohttp import web

from .base import (
    Handled,
    Incoming,
    ProviderAPI,
    bearer_token,
    gateway_error,
    json_body,
    same_secret,
)
from .config import ProviderConfig
from .faults import FaultDecision
from .keys import STATE_KEY
from .state import AcceptedMessage

__all__ = ["TOKEN_PATH", "FcmAPI", "grant_token"]

#: Google's OAuth token endpoint (``https://oauth2.googleapis.com/token``): a service account
#: trades a signed JWT for an access token there
TOKEN_PATH = "/token"
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_TARGETS = ("token", "fid", "topic", "condition")


def _error(
    status: int,
    state: str,
    message: str,
    fcm_code: str | None = None,
    violations: list[tuple[str, str]] | None = None,
) -> web.Response:
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append({"@type": _FCM_ERROR, "errorCode": fcm_code})
    if violations:
        details.append(
            {
                "@type": _BAD_REQUEST,
                "fieldViolations": [{"field": f, "description": d} for f, d in violations],
            }
        )
    error: dict[str, Any] = {"code": status, "message": message, "status": state}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=status)


def _invalid(message: str, field: str, description: str) -> Handled:
    return Handled(
        _error(400, "INVALID_ARGUMENT", message, "INVALID_ARGUMENT", [(field, description)]),
        "rejected",
    )


class FcmAPI(ProviderAPI):
    """The single FCM v1 send endpoint."""

    name: ClassVar[str] = "fcm"

    def __init__(self, access_token: str) -> None:
        self.access_token = access_token
        self._counter = itertools.count(1)

    def routes(self) -> list[tuple[str, str]]:
        return [("POST", "/v1/projects/{project}/messages:send")]

    def throttled(self, decision: FaultDecision, config: ProviderConfig) -> web.Response:
        return _error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Send requests' of service 'fcm.googleapis.com'.",
            "QUOTA_EXCEEDED",
        )

    def server_error(self, status: int) -> web.Response:
        if status == 500:
            return _error(500, "INTERNAL", "Internal error encountered.", "INTERNAL")
        if status == 503:
            return _error(
                503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"
            )
        return gateway_error(status)

    def _message_name(self, project: str) -> str:
        # Real ids look like "0:1500415314455276%31bd1c9631bd1c96".
        stamp = int(time.time() * 1_000_000) + next(self._counter)
        return f"projects/{project}/messages/0:{stamp}%{secrets.token_hex(8)}"

    async def handle(self, incoming: Incoming) -> Handled:
        request = incoming.request
        token = bearer_token(request)
        if token is None or not (
            same_secret(token, self.access_token)
            or request.app[STATE_KEY].access_token_valid(token)
        ):
            return Handled(
                _error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access "
                    "token, login cookie or other valid authentication credential.",
                ),
                "unauthorized",
            )
        project = request.match_info["project"]
        payload = json_body(incoming.raw)
        if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
            return _invalid(
                "Request contains an invalid argument.", "message", "The message is required."
            )
        validate_only = payload.get("validate_only", False)
        if not isinstance(validate_only, bool):
            return _invalid(
                "Invalid value at 'validate_only' (TYPE_BOOL)",
                "validate_only",
                "Must be a boolean.",
            )
        message: dict[str, Any] = payload["message"]
        targets = [t for t in _TARGETS if message.get(t)]
        if len(targets) != 1:
            return _invalid(
                "Request contains an invalid argument.",
                "message",
                "Exactly one of token, fid, topic or condition must be set.",
            )
        target = targets[0]
        address = message[target]
        if not isinstance(address, str):
            return _invalid(
                f"Invalid value at 'message.{target}' (TYPE_STRING)",
                f"message.{target}",
                "Must be a string.",
            )
        data = message.get("data")
        if data is not None:
            if not isinstance(data, dict):
                return _invalid("Invalid value at 'message.data'", "message.data", "Must be a map.")
            for i, (key, value) in enumerate(data.items()):
                if not isinstance(value, str):
                    return _invalid(
                        f"Invalid value at 'message.data[{i}].value' (TYPE_STRING)",
                        f"message.data[{i}].value",
                        f"The value of {key!r} must be a string.",
                    )
        if target in ("token", "fid"):
            if address.startswith("unregistered"):
                return Handled(
                    _error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
                    "rejected",
                )
            if address.startswith("invalid"):
                return _invalid(
                    "The registration token is not a valid FCM registration token",
                    f"message.{target}",
                    "Invalid registration token",
                )

        if validate_only:
            name = f"projects/{project}/messages/fake_message_id"
            return Handled(web.json_response({"name": name}), "sandbox")
        name = self._message_name(project)
        notification = message.get("notification")
        body = None
        if isinstance(notification, dict):
            parts = [notification.get("title"), notification.get("body")]
            body = "\n".join(p for p in parts if isinstance(p, str)) or None
        recipient = address if target in ("token", "fid") else f"{target}:{address}"
        accepted = AcceptedMessage(
            provider=self.name,
            channel="push",
            message_id=name,
            recipient=recipient,
            delivery_id=(data or {}).get("delivery_id"),
            body=body,
            request_seq=incoming.seq,
            accepted_monotonic=incoming.received_monotonic,
            accepted_at=incoming.received_at,
        )
        return Handled(web.json_response({"name": name}), "accepted", [accepted])


async def grant_token(request: web.Request) -> web.Response:
    """Trade a service account's JWT for an access token the send endpoint accepts for an hour,
    or until the simulator revokes its tokens.

    The JWT must name its issuer (the account's e-mail); its signature is not checked, since the
    simulator never holds the account's private key.
    """
    form = await request.post()
    if form.get("grant_type") != _JWT_GRANT:
        return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
    claims = _jwt_claims(str(form.get("assertion", "")))
    if claims is None or not claims.get("iss"):
        return _oauth_error("invalid_grant", "Invalid JWT: Failed audience check.")
    token = request.app[STATE_KEY].grant_access_token()
    return web.json_response({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})


def _oauth_error(code: str, description: str) -> web.Response:
    return web.json_response({"error": code, "error_description": description}, status=400)


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    """The claims of a compact JWT (``header.claims.signature``), unverified."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None
