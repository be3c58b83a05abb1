"""The server's config file (``breach.toml``): listener, secrets, audiences, routes.

Modules, one concept each: :mod:`.schema` (the file's shape, as pydantic models),
:mod:`.locator` (where each key is in the TOML text), :mod:`.loading` (:func:`load_config`: every
check, every problem at once) and :mod:`.resolved` (the :class:`ServerConfig` it returns).
"""

from __future__ import annotations

from .loading import DEFAULT_CONFIG, DEFAULT_RESOLVED, ConfigInvalid, load_config
from .resolved import (
    AlertmanagerCredentials,
    ApiToken,
    Audience,
    GrafanaCredentials,
    Route,
    Secret,
    ServerConfig,
)
from .schema import DEFAULT_MAX_BODY, DEFAULT_SEVERITIES

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_MAX_BODY",
    "DEFAULT_RESOLVED",
    "DEFAULT_SEVERITIES",
    "AlertmanagerCredentials",
    "ApiToken",
    "Audience",
    "ConfigInvalid",
    "GrafanaCredentials",
    "Route",
    "Secret",
    "ServerConfig",
    "load_config",
]
