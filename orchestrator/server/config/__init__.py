"""The server's config file (``breach.toml``): listener, secrets, audiences, routes."""

from __future__ import annotations

from .loading import (
    DEFAULT_CONFIG,
    DEFAULT_MAX_BODY,
    DEFAULT_RESOLVED,
    DEFAULT_SEVERITIES,
    AlertmanagerCredentials,
    Audience,
    ConfigInvalid,
    Route,
    Secret,
    ServerConfig,
    load_config,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_MAX_BODY",
    "DEFAULT_RESOLVED",
    "DEFAULT_SEVERITIES",
    "AlertmanagerCredentials",
    "Audience",
    "ConfigInvalid",
    "Route",
    "Secret",
    "ServerConfig",
    "load_config",
]
