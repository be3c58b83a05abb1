"""The config file's shape: pydantic models of ``breach.toml`` exactly as written.

Unknown keys are refused (``extra="forbid"``), so a typo is a located problem rather than a
setting silently ignored. :mod:`.loading` checks what a shape cannot express.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Hook = Literal["alertmanager", "generic", "grafana"]
RouteMode = Literal["live", "dry-run"]

DEFAULT_MAX_BODY = 1_048_576
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 512
#: lowest to highest; ``severity = { at_least = "high" }`` compares positions in this list
DEFAULT_SEVERITIES = ("info", "low", "warning", "medium", "high", "error", "critical")
_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSection(_Strict):
    """``[server]``: listener defaults, limits, and the staging switch."""

    host: str | None = None
    port: int | None = Field(default=None, ge=0, le=65535)
    outbox: str = "outbox"
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, gt=0)
    #: seconds a request may take to send its body; a sender that stalls is answered 408
    body_timeout: float = Field(default=DEFAULT_BODY_TIMEOUT, gt=0)
    #: connections served at once; more are answered 503 (slow or idle senders cannot hoard)
    max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, gt=0)
    behind_proxy: bool = False
    force_mode: Literal["dry-run"] | None = None
    severity_order: list[str] = Field(default_factory=lambda: list(DEFAULT_SEVERITIES))


class AlertmanagerAuthSection(_Strict):
    """``[auth.alertmanager]``: a bearer token, or a basic-auth user and password."""

    token: str | None = None
    token_file: str | None = None
    token_env: str | None = None
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    password_env: str | None = None


class GenericAuthSection(_Strict):
    """``[auth.generic]``: the HMAC-SHA256 shared secret of signed JSON senders."""

    secret: str | None = None
    secret_file: str | None = None
    secret_env: str | None = None


class GrafanaAuthSection(_Strict):
    """``[auth.grafana]``: the HMAC secret of Grafana's webhook contact point, and its headers
    (``timestamp_header`` as configured there: then the timestamp is signed and checked)."""

    secret: str | None = None
    secret_file: str | None = None
    secret_env: str | None = None
    signature_header: str = Field(default="X-Grafana-Alerting-Signature", min_length=1)
    timestamp_header: str | None = Field(default=None, min_length=1)


class AuthSection(_Strict):
    """``[auth]``: credentials per hook; a hook without them refuses every request."""

    alertmanager: AlertmanagerAuthSection | None = None
    generic: GenericAuthSection | None = None
    grafana: GrafanaAuthSection | None = None


class AudienceSection(_Strict):
    """``[audiences.NAME]``: a source as ``--audience`` takes it, its options, bound facts."""

    source: str
    query: str | None = None
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    #: query parameter -> the fact whose value is bound to it (never pasted into the query)
    bind: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


class RouteSection(_Strict):
    """One ``[[routes]]`` entry."""

    name: str = Field(pattern=_NAME)
    hook: Hook
    playbook: str
    audience: str
    mode: RouteMode
    match: dict[str, Any] = Field(default_factory=dict)
    facts: dict[str, str] = Field(default_factory=dict)
    dedupe: str | None = None
    aware_at: str | None = None
    resolved: dict[str, Any] | None = None


class ApiTokenSection(_Strict):
    """One ``[[api.tokens]]`` entry: a named bearer token of the commander API, stored as the
    SHA-256 of its value (``breach token`` makes one), with its roles."""

    name: str = Field(pattern=_NAME)
    roles: list[Annotated[str, Field(pattern=_NAME)]] = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ApiSection(_Strict):
    """``[api]``: who may use the commander API. Without tokens every API request gets 401."""

    tokens: list[ApiTokenSection] = Field(default_factory=list)


class ConfigFile(_Strict):
    """The whole file, as written."""

    server: ServerSection = Field(default_factory=ServerSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    api: ApiSection = Field(default_factory=ApiSection)
    audiences: dict[str, AudienceSection] = Field(default_factory=dict)
    routes: list[RouteSection] = Field(default_factory=list)
