"""What ``breach simulate`` and ``breach demo`` need around the simulator.

- :func:`load_config_file` reads a simulator configuration (credentials, faults per provider)
  from a JSON or TOML file;
- :func:`failure_mix` turns "this share of requests fails" into a provider configuration that
  fails them the three ways providers do: 5xx, 429 and a dropped connection;
- :func:`plugin_settings` are the settings that point the built-in provider plugins at a running
  simulator, through each plugin's documented endpoint setting;
- :func:`simulator_banner` is what ``breach simulate`` prints: where it listens, and those
  settings as shell exports.

The settings are names and values only: this module imports no provider SDK and no plugin.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Final

from ..errors import ConfigurationError
from .config import ProviderConfig, SimulatorConfig

__all__ = [
    "FAULTED_PROVIDERS",
    "FCM_PROJECT_ID",
    "SENDER_NUMBER",
    "failure_mix",
    "load_config_file",
    "plugin_settings",
    "simulator_banner",
]

#: The providers the built-in plugins talk to (the stand-in serves the engine's own tests).
FAULTED_PROVIDERS: Final = ("twilio", "sendgrid", "fcm")
#: Sender of SMS and calls: a number in the 555-01xx range kept for fiction.
SENDER_NUMBER: Final = "+15555550100"
#: The simulator answers for any project id; this one names where the pushes went.
FCM_PROJECT_ID: Final = "breach-simulator"
DEFAULT_EMAIL_FROM: Final = "Breach simulator <notices@example.com>"


def load_config_file(path: Path) -> SimulatorConfig:
    """A :class:`SimulatorConfig` from ``path`` (``.json`` or ``.toml``).

    The file holds the top-level settings (credentials, ``seed``, ...) and a ``providers`` table
    of fault settings per provider, e.g. ``[providers.twilio]`` with ``error_rate = 0.05``.
    Raises :class:`ConfigurationError` naming the file and what is wrong with it.
    """
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read simulator config {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    data: Any
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigurationError(
                f"simulator config {path}: name it .json or .toml so its format is known"
            )
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(
            f"simulator config {path} is not valid {suffix[1:]}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"simulator config {path}: expected a table of settings")
    try:
        return SimulatorConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"simulator config {path}: {exc}") from None


def failure_mix(
    rate: float, *, retry_after: float = 1.0, seed: int | None = None
) -> ProviderConfig:
    """Faults for a provider that fails ``rate`` of its requests.

    The share is split evenly between a 5xx answer, a 429 with ``Retry-After`` and a connection
    closed without an answer. None of them accepts the message, so every message the provider
    accepted was answered, and the ledger can match the simulator's counts exactly.
    """
    if not 0.0 <= rate <= 1.0:
        raise ConfigurationError(f"failure rate is a share between 0 and 1, not {rate}")
    third = rate / 3
    return ProviderConfig(
        error_rate=third,
        throttle_rate=third,
        drop_rate=third,
        retry_after=retry_after,
        seed=seed,
    )


def plugin_settings(
    url: str, config: SimulatorConfig, *, email_from: str = DEFAULT_EMAIL_FROM
) -> dict[str, str]:
    """The settings that send every built-in provider plugin to the simulator at ``url``.

    Each plugin's own endpoint setting carries the URL (the SDKs keep their supported
    overrides inside the plugins); the credentials are the simulator's, which no real provider
    accepts, so a mistake here can never reach a real person.
    """
    base = url.rstrip("/")
    return {
        "TWILIO_API_BASE_URL": base,
        "TWILIO_ACCOUNT_SID": config.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": config.twilio_auth_token,
        "TWILIO_FROM": SENDER_NUMBER,
        "SENDGRID_API_BASE_URL": base,
        "SENDGRID_API_KEY": config.sendgrid_api_key,
        "BREACH_EMAIL_FROM": email_from,
        "FCM_API_BASE_URL": base,
        "FCM_PROJECT_ID": FCM_PROJECT_ID,
        "FCM_ACCESS_TOKEN": config.fcm_access_token,
    }


def simulator_banner(url: str, config: SimulatorConfig) -> str:
    """Where the simulator is, and the exports that point the provider plugins at it."""
    lines = [
        f"Provider simulator listening on {url}",
        f"  page     {url}/  (what each provider received)",
        f"  control  {url}/_sim/stats  {url}/_sim/faults  (POST faults, e.g. "
        '{"twilio": {"error_rate": 0.1}})  POST /_sim/reset',
        "",
        "Point the provider plugins at it (the simulator's own credentials; nothing leaves this "
        "machine):",
    ]
    lines += [f"  export {name}={_shell_quote(value)}" for name, value in
              plugin_settings(url, config).items()]  # fmt: skip
    defaults = ProviderConfig().to_dict()
    faults = []
    for name in FAULTED_PROVIDERS:
        changed = {k: v for k, v in config.provider(name).to_dict().items()
                   if k != "seed" and v != defaults[k]}  # fmt: skip
        if changed:
            faults.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    if faults:
        lines += ["", "Faults:", *faults]
    lines += ["", "Press Ctrl-C to stop."]
    return "\n".join(lines)


def _shell_quote(value: str) -> str:
    safe = all(c.isalnum() or c in "@%+=:,./-_" for c in value)
    return value if safe else "'" + value.replace("'", "'\"'\"'") + "'"
