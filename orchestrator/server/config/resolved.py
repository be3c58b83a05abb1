"""The config as ``breach serve`` uses it: checked, paths resolved, secrets read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...playbook import Playbook
from ..routing import Matcher
from .schema import Hook, RouteMode


class Secret:
    """A secret value that never shows in a repr, a log line or an error message."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.encode("utf-8")

    def reveal(self) -> bytes:
        """The secret's bytes, for comparing or signing only."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"


@dataclass(frozen=True)
class AlertmanagerCredentials:
    """What Alertmanager's ``http_config`` must send: a bearer token or basic auth."""

    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None


@dataclass(frozen=True)
class GrafanaCredentials:
    """What Grafana's webhook contact point signs with, and the headers it sends."""

    secret: Secret
    signature_header: str = "X-Grafana-Alerting-Signature"
    timestamp_header: str | None = None


@dataclass(frozen=True)
class ApiToken:
    """A commander API token: its name, its roles, and the SHA-256 of its value."""

    name: str
    roles: frozenset[str]
    digest: bytes

    def __repr__(self) -> str:
        return f"ApiToken({self.name!r}, roles={sorted(self.roles)})"


@dataclass(frozen=True)
class Audience:
    """A configured audience source; ``bind`` maps query parameters to fact names."""

    name: str
    spec: str
    options: Mapping[str, Any]
    bind: Mapping[str, str]


@dataclass(frozen=True)
class Route:
    """A routing rule, compiled: matchers, fact mapping, its validated playbook."""

    index: int
    name: str
    hook: Hook
    playbook_path: Path
    playbook: Playbook
    audience: Audience
    mode: RouteMode
    matchers: tuple[Matcher, ...]
    #: fact name -> path in the payload view (``labels.tenant``, ``annotations.summary``)
    facts: Mapping[str, str]
    dedupe: str | None
    aware_at: str | None
    resolved: tuple[Matcher, ...]

    @property
    def label(self) -> str:
        """``routes[2] ('ransomware')``, for messages."""
        return f"routes[{self.index}] ({self.name!r})"


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``breach serve`` needs, checked and resolved."""

    path: Path
    host: str
    port: int
    outbox: Path
    max_body_bytes: int
    behind_proxy: bool
    force_mode: str | None
    severity_order: tuple[str, ...]
    alertmanager: AlertmanagerCredentials | None
    generic_secret: Secret | None
    audiences: Mapping[str, Audience]
    routes: tuple[Route, ...]
    regimes_file: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    body_timeout: float = 30.0
    max_connections: int = 512
    api_tokens: tuple[ApiToken, ...] = field(default_factory=tuple)
    grafana: GrafanaCredentials | None = None

    def mode_for(self, route: Route) -> str:
        """The mode a route runs in here: ``force_mode`` wins over the route's own."""
        return self.force_mode or route.mode

    def routes_for(self, hook: str) -> list[Route]:
        """The routes of one hook, in config order."""
        return [r for r in self.routes if r.hook == hook]

    def secrets(self) -> list[str]:
        """Every secret of this config, for the log redactor (never for display)."""
        found = [self.generic_secret, self.grafana.secret if self.grafana else None]
        if self.alertmanager is not None:
            found += [self.alertmanager.token, self.alertmanager.password]
        return [s.reveal().decode("utf-8") for s in found if s is not None]
