"""Provider receipts over HTTP: build the framework-neutral request, apply the updates.

Each handler a plugin registers (``register_receipts``) is served at ``POST /receipts/<name>``.
The handler sees the URL exactly as the provider called it (providers sign it), the headers,
the raw body, the parsed form for form-encoded bodies, and the resolved settings of its plugin's
notifiers (:meth:`PluginHost.plugin_settings <orchestrator.pluginhost.PluginHost.plugin_settings>`).
It checks the signature; the session applies the result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl

from ..receipts import ReceiptRequest

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def called_url(
    scheme: str,
    headers: Mapping[str, str],
    raw_path: bytes,
    query: bytes,
    *,
    behind_proxy: bool,
    fallback_host: str,
) -> str:
    """The URL the provider called. Behind a proxy, ``X-Forwarded-Proto`` and
    ``X-Forwarded-Host`` say how it was called; otherwise they are ignored (anyone could send
    them)."""
    host = headers.get("host") or fallback_host
    if behind_proxy:
        proto = _first(headers.get("x-forwarded-proto"))
        if proto in ("http", "https"):
            scheme = proto
        forwarded = _first(headers.get("x-forwarded-host"))
        if forwarded and _HOST.fullmatch(forwarded):
            host = forwarded
    url = f"{scheme}://{host}{raw_path.decode('latin-1')}"
    if query:
        url += "?" + query.decode("latin-1")
    return url


def _first(value: str | None) -> str:
    return value.split(",")[0].strip() if value else ""


def build_request(
    *,
    url: str,
    method: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    content_type: str,
    settings: Mapping[str, str],
) -> ReceiptRequest:
    """A :class:`ReceiptRequest`: header names lower-cased (repeats joined with ", "), the
    form parsed when the body is form-encoded."""
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    form: dict[str, str] = {}
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            form.setdefault(key, value)
    return ReceiptRequest(url=url, method=method, headers=merged, body=body, form=form,
                          settings=dict(settings))  # fmt: skip
