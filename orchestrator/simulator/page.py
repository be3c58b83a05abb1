"""``GET /``: a page a person can read in a browser: what each provider received.

Phone numbers, e-mail addresses and push tokens are masked, as everywhere the orchestrator shows
recipients.
"""

from __future__ import annotations

import html
import re
from typing import Any

from aiohttp import web

from .config import PROVIDERS
from .keys import STATE_KEY
from .state import RecordedRequest

__all__ = ["add_routes", "mask", "render"]

LAST_N = 25
_TITLES = {
    "standin": "Stand-in (generic)",
    "twilio": "Twilio (SMS, calls)",
    "sendgrid": "SendGrid (e-mail)",
    "fcm": "Firebase Cloud Messaging (push)",
}
_PHONE = re.compile(r"^\+?\d{6,15}$")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#222;max-width:75rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right}.muted{color:#777}
.ok{color:#176f2c}.bad{color:#a4161a}.warn{color:#8a5a00}
code{font-size:.9em}
"""


def mask(value: str) -> str:
    """Hide most of a phone number, e-mail address or token, keeping enough to tell them apart."""
    value = value.strip()
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}•••@{domain}"
    if _PHONE.match(value):
        plus = "+" if value.startswith("+") else ""
        digits = value.lstrip("+")
        return f"{plus}{digits[:2]}{'•' * max(1, len(digits) - 4)}{digits[-2:]}"
    if ":" in value and value.split(":", 1)[0] in ("topic", "condition"):
        return value  # topics are not personal
    return value[:6] + "…" if len(value) > 8 else "•••"


def _recipients(record: RecordedRequest) -> list[str]:
    body: Any = record.body
    found: list[str] = []
    if record.provider == "twilio" and isinstance(body, dict):
        found = [body["To"]] if isinstance(body.get("To"), str) else []
    elif record.provider == "sendgrid" and isinstance(body, dict):
        for p in body.get("personalizations") or []:
            for entry in (p.get("to") or []) if isinstance(p, dict) else []:
                if isinstance(entry, dict) and isinstance(entry.get("email"), str):
                    found.append(entry["email"])
    elif record.provider == "fcm" and isinstance(body, dict):
        message = body.get("message")
        message = message if isinstance(message, dict) else {}
        for key in ("token", "fid", "topic", "condition"):
            if isinstance(message.get(key), str):
                found.append(message[key] if key in ("token", "fid") else f"{key}:{message[key]}")
    elif record.provider == "standin":
        items = body if isinstance(body, list) else [body]
        found = [i["to"] for i in items if isinstance(i, dict) and isinstance(i.get("to"), str)]
    return found


def _who(record: RecordedRequest) -> str:
    people = _recipients(record)
    if not people:
        return '<span class="muted">—</span>'
    shown = ", ".join(html.escape(mask(p)) for p in people[:3])
    return shown + (
        f' <span class="muted">(+{len(people) - 3} more)</span>' if len(people) > 3 else ""
    )


def _outcome_class(outcome: str) -> str:
    if outcome in ("accepted", "sandbox"):
        return "ok"
    if outcome in ("partial", "rate_limited", "throttled"):
        return "warn"
    return "bad"


def render(stats: dict[str, Any], requests: list[RecordedRequest], faults: dict[str, Any]) -> str:
    """The whole page as HTML."""
    defaults_hidden = {"error_statuses", "retry_after", "timeout_seconds", "seed"}
    parts = [
        '<!doctype html><html lang="en"><meta charset="utf-8">',
        "<title>Provider simulator</title>",
        f"<style>{_CSS}</style>",
        "<h1>Provider simulator</h1>",
        '<p class="muted">What each stand-in provider received, newest first. Recipients are '
        'masked. JSON: <a href="/_sim/stats">stats</a>, <a href="/_sim/requests">requests</a>, '
        '<a href="/_sim/accepted">accepted</a>, <a href="/_sim/callbacks">callbacks</a>, '
        '<a href="/_sim/faults">faults</a>. <a href="/?refresh=5">Refresh every 5 s</a>.</p>',
    ]
    for provider in PROVIDERS:
        s = stats[provider]
        outcomes = ", ".join(
            f'<span class="{_outcome_class(k)}">{html.escape(k)}</span> {v}'
            for k, v in sorted(s["outcomes"].items())
        )
        active = {
            k: v
            for k, v in faults[provider].items()
            if v not in (None, 0, 0.0) and k not in defaults_hidden
        }
        fault_text = (
            ", ".join(f"{html.escape(k)}={html.escape(str(v))}" for k, v in active.items())
            or "none"
        )
        parts.append(f"<h2>{html.escape(_TITLES[provider])}</h2>")
        parts.append(
            "<table><tr><th>requests</th><th>messages accepted</th><th>duplicates</th>"
            "<th>outcomes</th><th>receipts sent / failed</th><th>faults</th></tr>"
            f'<tr><td class="n">{s["requests"]}</td><td class="n">{s["accepted_messages"]}</td>'
            f'<td class="n">{s["duplicates"]}</td><td>{outcomes or "—"}</td>'
            f'<td class="n">{s["callbacks"]["sent"]} / {s["callbacks"]["failed"]}</td>'
            f"<td><code>{fault_text}</code></td></tr></table>"
        )
        recent = [r for r in requests if r.provider == provider][-LAST_N:][::-1]
        if not recent:
            parts.append('<p class="muted">Nothing received yet.</p>')
            continue
        parts.append(
            "<table><tr><th>#</th><th>received (UTC)</th><th>request</th><th>status</th>"
            "<th>outcome</th><th>to</th></tr>"
        )
        for r in recent:
            status = "—" if r.status is None else str(r.status)
            parts.append(
                f'<tr><td class="n">{r.seq}</td>'
                f"<td>{r.received_at.strftime('%H:%M:%S.%f')[:-3]}</td>"
                f"<td><code>{html.escape(r.method)} {html.escape(r.path)}</code></td>"
                f'<td class="n">{status}</td>'
                f'<td class="{_outcome_class(r.outcome)}">{html.escape(r.outcome)}</td>'
                f"<td>{_who(r)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</html>")
    return "\n".join(parts)


async def _index(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    text = render(state.stats(), state.requests(), state.faults())
    refresh = request.query.get("refresh", "")
    if refresh.isdigit() and int(refresh) > 0:
        text = text.replace(
            "<title>", f'<meta http-equiv="refresh" content="{int(refresh)}"><title>', 1
        )
    return web.Response(text=text, content_type="text/html")


def add_routes(app: web.Application) -> None:
    """Register ``GET /``."""
    app.router.add_get("/", _index)
