"""SendGrid v3 Mail Send: ``POST /v3/mail/send``.

Bearer auth; a JSON body with ``personalizations`` (1 to 1,000, at most 1,000 recipients in all),
``from``, ``subject`` and ``content`` (unless a ``template_id``). Errors come back as
``{"errors": [{"message", "field", "help"}]}``, every problem at once, as SendGrid does. Success is
202 with an empty body and ``X-Message-Id``; with ``mail_settings.sandbox_mode.enable`` it is
200 and nothing is delivered. Events (processed, delivered, bounce, dropped) go to the configured
``callback_url`` as the Event Webhook posts them: a JSON array, custom args as top-level keys.
Recipients whose local part starts with ``bounce`` always bounce; ``drop`` always drop.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import secrets
import time
from typing import Any, ClassVar

from aiohttp import web

from .base import (
    Callback,
    Handled,
    Incoming,
    ProviderAPI,
    bearer_token,
    gateway_error,
    json_body,
    same_secret,
)
from .callbacks import CallbackDispatcher
from .config import ProviderConfig
from .faults import FaultDecision
from .state import AcceptedMessage

__all__ = ["SendGridAPI"]

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _errors(status: int, *errors: tuple[str, str | None, str | None]) -> web.Response:
    body = {"errors": [{"message": m, "field": f, "help": h} for m, f, h in errors]}
    return web.json_response(body, status=status)


def _message_id() -> str:
    # SendGrid's ids are 22 characters of URL-safe base64.
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


def _emails(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _email_of(entry: Any) -> str | None:
    email = entry.get("email") if isinstance(entry, dict) else None
    return email if isinstance(email, str) else None


class SendGridAPI(ProviderAPI):
    """The Mail Send endpoint and its Event Webhook."""

    name: ClassVar[str] = "sendgrid"

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def routes(self) -> list[tuple[str, str]]:
        return [("POST", "/v3/mail/send")]

    def throttled(self, decision: FaultDecision, config: ProviderConfig) -> web.Response:
        response = _errors(429, ("too many requests", None, None))
        wait = decision.retry_after or 1.0
        response.headers["X-RateLimit-Limit"] = str(math.ceil(config.rate_limit or 600))
        response.headers["X-RateLimit-Remaining"] = "0"
        # SendGrid's reset is a Unix timestamp, not a number of seconds.
        response.headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + wait))
        return response

    def server_error(self, status: int) -> web.Response:
        if status in (500, 503):
            text = "internal error" if status == 500 else "service unavailable"
            return _errors(status, (text, None, None))
        return gateway_error(status)

    async def handle(self, incoming: Incoming) -> Handled:
        token = bearer_token(incoming.request)
        if token is None:
            return Handled(_errors(401, ("authorization required", None, None)), "unauthorized")
        if not same_secret(token, self.api_key):
            message = "The provided authorization grant is invalid, expired, or revoked"
            return Handled(_errors(401, (message, None, None)), "unauthorized")
        mail = json_body(incoming.raw)
        if not isinstance(mail, dict):
            return Handled(_errors(400, ("Bad Request", None, None)), "rejected")
        problems = self._validate(mail)
        if problems:
            return Handled(_errors(400, *problems), "rejected")

        if _dig(mail, "mail_settings", "sandbox_mode", "enable") is True:
            return Handled(web.Response(status=200), "sandbox")

        message_id = _message_id()
        accepted: list[AcceptedMessage] = []
        recipients: list[tuple[int, str, dict[str, str], float]] = []
        base_args = mail.get("custom_args") or {}
        for index, p in enumerate(mail["personalizations"]):
            args = {**base_args, **(p.get("custom_args") or {})}
            to = [e for e in (_email_of(x) for x in p["to"]) if e]
            accepted.append(
                AcceptedMessage(
                    provider=self.name,
                    channel="email",
                    message_id=message_id,
                    recipient=to[0],
                    delivery_id=args.get("delivery_id"),
                    body=p.get("subject", mail.get("subject")),
                    request_seq=incoming.seq,
                    accepted_monotonic=incoming.received_monotonic,
                    accepted_at=incoming.received_at,
                )
            )
            if incoming.config.callback_url:
                draw = incoming.state.random(self.name)
                for field in ("to", "cc", "bcc"):
                    for entry in _emails(p.get(field)):
                        email = _email_of(entry)
                        if email:
                            recipients.append((index, email, args, draw))

        response = web.Response(status=202)
        response.headers["X-Message-Id"] = message_id
        callbacks: list[Callback] = []
        if incoming.config.callback_url and recipients:
            callbacks.append(
                self._events(incoming.config, message_id, recipients, mail.get("categories") or [])
            )
        return Handled(response, "accepted", accepted, callbacks)

    def _validate(self, mail: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
        problems: list[tuple[str, str | None, str | None]] = []
        if _email_of(mail.get("from")) is None or not _EMAIL.match(_email_of(mail["from"]) or ""):
            problems.append(
                (
                    "The from object must be provided for every email send. It is an object that "
                    "requires the email parameter, but may also contain a name parameter.",
                    "from.email",
                    f"{_HELP}#message.from",
                )
            )
        personalizations = mail.get("personalizations")
        template = bool(mail.get("template_id"))
        if not isinstance(personalizations, list) or not personalizations:
            problems.append(
                (
                    "The personalizations field is required and must have at least one "
                    "personalization.",
                    "personalizations",
                    f"{_HELP}#-Personalizations-Errors",
                )
            )
            personalizations = []
        elif len(personalizations) > MAX_PERSONALIZATIONS:
            problems.append(
                (
                    f"The personalizations field can have at most {MAX_PERSONALIZATIONS} "
                    "personalizations per request. Split the send into several requests.",
                    "personalizations",
                    f"{_HELP}#-Personalizations-Errors",
                )
            )
        else:
            problems.extend(self._validate_personalizations(personalizations, mail))
        every_subject = bool(personalizations) and all(
            isinstance(p, dict) and p.get("subject") for p in personalizations
        )
        if not template and not mail.get("subject") and not every_subject:
            problems.append(
                (
                    "The subject is required. You can get around this requirement if you use a "
                    "template with a subject defined or if every personalization has a subject "
                    "defined.",
                    "subject",
                    f"{_HELP}#message.subject",
                )
            )
        content = mail.get("content")
        valid_content = isinstance(content, list) and any(
            isinstance(c, dict) and c.get("type") and isinstance(c.get("value"), str)
            for c in content
        )
        if not template and not valid_content:
            problems.append(
                (
                    "Unless a valid template_id is provided, the content parameter is required. "
                    "There must be at least one defined content block. We typically suggest both "
                    "text/plain and text/html blocks are included, but only one block is "
                    "required.",
                    "content",
                    f"{_HELP}#message.content",
                )
            )
        enable = _dig(mail, "mail_settings", "sandbox_mode", "enable")
        if enable is not None and not isinstance(enable, bool):
            problems.append(
                (
                    "The sandbox mode enable param should be a boolean value.",
                    "mail_settings.sandbox_mode.enable",
                    f"{_HELP}#message.mail_settings.sandbox_mode.enable",
                )
            )
        problems.extend(_string_args(mail.get("custom_args"), "custom_args"))
        return problems

    def _validate_personalizations(
        self, personalizations: list[Any], mail: dict[str, Any]
    ) -> list[tuple[str, str | None, str | None]]:
        problems: list[tuple[str, str | None, str | None]] = []
        total = 0
        for i, p in enumerate(personalizations):
            to = _emails(p.get("to")) if isinstance(p, dict) else []
            if not to:
                problems.append(
                    (
                        "The to array is required for all personalization objects, and must have "
                        "at least one email object with a valid email address.",
                        f"personalizations.{i}.to",
                        f"{_HELP}#message.personalizations.to",
                    )
                )
                continue
            for field in ("to", "cc", "bcc"):
                for j, entry in enumerate(_emails(p.get(field))):
                    total += 1
                    email = _email_of(entry)
                    if email is None or not _EMAIL.match(email):
                        problems.append(
                            (
                                "Does not contain a valid address.",
                                f"personalizations.{i}.{field}.{j}.email",
                                f"{_HELP}#message.personalizations.{field}",
                            )
                        )
            problems.extend(_string_args(p.get("custom_args"), f"personalizations.{i}.custom_args"))
        if total > MAX_RECIPIENTS:
            problems.append(
                (
                    f"The total number of recipients must be no more than {MAX_RECIPIENTS}. This "
                    "includes all recipients defined within the to, cc, and bcc parameters, across "
                    "each object that you include in the personalizations array.",
                    "personalizations",
                    f"{_HELP}#-Personalizations-Errors",
                )
            )
        return problems

    def _events(
        self,
        config: ProviderConfig,
        message_id: str,
        recipients: list[tuple[int, str, dict[str, str], float]],
        categories: list[str],
    ) -> Callback:
        url = config.callback_url or ""
        failure_rate = config.receipt_failure_rate
        delay = config.callback_delay
        first: list[dict[str, Any]] = []
        second: list[dict[str, Any]] = []
        for index, email, args, draw in recipients:
            local = email.split("@", 1)[0].lower()
            common: dict[str, Any] = {
                **args,  # custom args first: SendGrid's own keys win on a clash
                "email": email,
                "sg_message_id": f"{message_id}.filterdrecv-simulator-{index}-0.0",
                "smtp-id": f"<{message_id}@simulator.sendgrid.net>",
            }
            if categories:
                common["category"] = categories
            if local.startswith("drop") or draw < failure_rate / 2:
                first.append({**common, "event": "dropped", "reason": "Bounced Address"})
                continue
            first.append({**common, "event": "processed"})
            if local.startswith("bounce") or draw < failure_rate:
                second.append(
                    {
                        **common,
                        "event": "bounce",
                        "type": "bounce",
                        "status": "5.1.1",
                        "reason": "550 5.1.1 The email account that you tried to reach does "
                        "not exist.",
                        "bounce_classification": "Invalid Address",
                    }
                )
            else:
                second.append({**common, "event": "delivered", "response": "250 OK"})

        async def send(dispatcher: CallbackDispatcher) -> None:
            for batch in (first, second):
                if not batch:
                    continue
                await asyncio.sleep(delay)
                stamped = [
                    {**e, "timestamp": int(time.time()), "sg_event_id": _message_id()}
                    for e in batch
                ]
                await dispatcher.post_json(
                    self.name, url, stamped, {"User-Agent": "SendGrid Event API"}
                )

        return send


def _dig(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _string_args(args: Any, path: str) -> list[tuple[str, str | None, str | None]]:
    """SendGrid refuses custom_args that are not strings (an int delivery id is a bug)."""
    if args is None:
        return []
    if not isinstance(args, dict):
        return [("custom_args must be an object.", path, f"{_HELP}#message.custom_args")]
    return [
        (
            f"Invalid type. Expected: string, given: {type(v).__name__}.",
            f"{path}.{k}",
            f"{_HELP}#message.custom_args",
        )
        for k, v in args.items()
        if not isinstance(v, str)
    ]
