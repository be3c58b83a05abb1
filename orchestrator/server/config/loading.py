"""Loading ``breach.toml``: read it, check it, and resolve it into a :class:`ServerConfig`.

Loading checks everything an operator could get wrong before the server takes a request: TOML
syntax, unknown keys, types, secrets that cannot be read, routes that name a missing audience or
a fact the playbook does not declare, regular expressions, and each route's playbook (fully
validated). Every problem is reported at once, located as ``FILE:LINE:COLUMN``. Relative paths
(playbooks, audience files, secret files, the outbox) are resolved against the config file.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ...audience import parse_audience_spec
from ...errors import BreachError, Problem, ValidationFailed
from ...limits import InputRejected, read_document
from ...pluginhost import PluginHost
from ...problems import located, model_problems
from ...regimes import load_regimes
from ...validation import validate_file
from ..routing import MATCHER_KEYS, Matcher, compile_matcher, normalise_path
from .locator import Locator, syntax_problem
from .resolved import (
    AlertmanagerCredentials,
    ApiToken,
    Audience,
    GrafanaCredentials,
    Route,
    Secret,
    ServerConfig,
)
from .schema import (
    AlertmanagerAuthSection,
    ApiSection,
    AudienceSection,
    ConfigFile,
    GenericAuthSection,
    GrafanaAuthSection,
    RouteSection,
)

DEFAULT_CONFIG = Path("breach.toml")
#: the generic webhook's default rule for "this payload resolves the incident"
DEFAULT_RESOLVED = {"status": "resolved"}


class ConfigInvalid(ValidationFailed):
    """The server config (or a route's playbook) has problems; all are attached, located."""

    exit_code = 2


def load_config(
    path: Path,
    *,
    host: PluginHost,
    regimes_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """Read, check and resolve a config file; raise :class:`ConfigInvalid` with every problem."""
    env = os.environ if environ is None else environ
    file = str(path)
    if not path.exists():
        raise ConfigInvalid([Problem(file, 0, 0, "config file not found (pass --config FILE; "
                                                  "README, section Webhooks, has an example)")]
                            ) from None  # fmt: skip
    try:
        text = read_document(path, "config file")
    except InputRejected as exc:
        raise ConfigInvalid([Problem(file, 0, 0, str(exc))]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid([syntax_problem(file, text, exc)]) from None
    locator = Locator(file, text)
    checker = _Checker(locator, path.parent, env)
    data = checker.flatten_matchers(data)
    try:
        parsed = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigInvalid(model_problems(exc, data, ConfigFile, checker)) from None
    return checker.build(parsed, host=host, regimes_file=regimes_file)


# -- checking ------------------------------------------------------------------------------------


class _Checker:
    """Checks one config file, collecting every problem; the document they are located in."""

    def __init__(self, locator: Locator, base: Path, env: Mapping[str, str]) -> None:
        self.locator = locator
        self.base = base
        self.env = env
        self.problems: list[Problem] = []
        #: route index -> name, so messages say which route as well as where
        self.route_names: dict[int, str] = {}

    @property
    def file(self) -> str:
        """The config file's name, as given."""
        return self.locator.file

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` was written (a TOML key and its value start on one line)."""
        return self.locator.locate(path)

    def describe(self, path: Sequence[str | int], *, key: bool = False) -> str:
        """``("routes", 2, "mode")`` -> ``routes[2] ('ransomware').mode``."""
        out = ""
        for position, part in enumerate(path):
            if isinstance(part, int):
                out += f"[{part}]"
                if position == 1 and path[0] == "routes" and part in self.route_names:
                    out += f" ({self.route_names[part]!r})"
            else:
                out += ("." if out else "") + part
        return out or "(file)"

    def add(self, path: Sequence[str | int], message: str) -> None:
        """Record a problem at ``path``."""
        self.problems.append(located(self, path, message))

    def resolve_path(self, value: str) -> Path:
        """``value`` as a path, relative ones taken from the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    # shape ----------------------------------------------------------------------------------

    def flatten_matchers(self, data: dict[str, Any]) -> dict[str, Any]:
        """``labels.severity = {at_least = "high"}`` written unquoted nests tables; flatten them."""
        routes = data.get("routes")
        if not isinstance(routes, list):
            return data
        fixed = []
        for index, route in enumerate(routes):
            if isinstance(route, dict) and isinstance(route.get("name"), str):
                self.route_names[index] = route["name"]
            if isinstance(route, dict):
                route = dict(route)
                for key in ("match", "resolved"):
                    if isinstance(route.get(key), dict):
                        route[key] = _flatten(route[key])
            fixed.append(route)
        return {**data, "routes": fixed}

    # meaning --------------------------------------------------------------------------------

    def build(
        self, parsed: ConfigFile, *, host: PluginHost, regimes_file: Path | None
    ) -> ServerConfig:
        """Check what the shape cannot (secrets, audiences, routes, playbooks) and resolve."""
        server = parsed.server
        order = tuple(s.lower() for s in server.severity_order)
        if not order:
            self.add(("server", "severity_order"), "list at least one severity level")
        alertmanager = self._alertmanager_auth(parsed.auth.alertmanager)
        generic = self._generic_secret(parsed.auth.generic)
        grafana = self._grafana(parsed.auth.grafana)
        audiences = {name: self._audience(name, section, host)
                     for name, section in parsed.audiences.items()}  # fmt: skip
        try:
            regimes = load_regimes(regimes_file)
        except BreachError as exc:
            self.problems.append(Problem(str(regimes_file), 0, 0, str(exc)))
            regimes = {}
        routes: list[Route] = []
        names: dict[str, int] = {}
        for index, section in enumerate(parsed.routes):
            if section.name in names:
                first = names[section.name]
                message = f"route name {section.name!r} is also used by routes[{first}]"
                self.add(("routes", index, "name"), message)
            names.setdefault(section.name, index)
            route = self._route(index, section, audiences, order, host, regimes)
            if route is not None:
                routes.append(route)
        hooks = {r.hook for r in parsed.routes}
        if "alertmanager" in hooks and parsed.auth.alertmanager is None:
            self.add(
                ("auth",),
                "routes use the alertmanager hook but [auth.alertmanager] is "
                "missing: set token_file (bearer) or username and password_file",
            )
        if "grafana" in hooks and parsed.auth.grafana is None:
            self.add(
                ("auth",),
                "routes use the grafana hook but [auth.grafana] is missing: set secret_file "
                "(the contact point's HMAC secret)",
            )
        if "generic" in hooks and parsed.auth.generic is None:
            self.add(
                ("auth",),
                "routes use the generic hook but [auth.generic] is missing: set "
                "secret_file (the HMAC-SHA256 key senders sign with)",
            )
        tokens = self._api_tokens(parsed.api)
        if self.problems:
            raise ConfigInvalid(self.problems)
        notes = tuple(
            f'route {r.name!r} is live but force_mode = "dry-run": it runs as a dry run here'
            for r in routes
            if server.force_mode and r.mode == "live"
        )
        return ServerConfig(
            path=self.locator_path(), host=server.host or "127.0.0.1",
            port=8080 if server.port is None else server.port,
            outbox=self.resolve_path(server.outbox), max_body_bytes=server.max_body_bytes,
            behind_proxy=server.behind_proxy, force_mode=server.force_mode,
            severity_order=order, alertmanager=alertmanager, generic_secret=generic,
            audiences=audiences, routes=tuple(routes), regimes_file=regimes_file, notes=notes,
            body_timeout=server.body_timeout, max_connections=server.max_connections,
            api_tokens=tokens, grafana=grafana,
        )  # fmt: skip

    def _api_tokens(self, section: ApiSection) -> tuple[ApiToken, ...]:
        """The API tokens; a name or a token used twice is a problem (a copy-paste slip)."""
        tokens: list[ApiToken] = []
        names: dict[str, int] = {}
        digests: dict[str, int] = {}
        for index, entry in enumerate(section.tokens):
            if entry.name in names:
                first = names[entry.name]
                message = f"token name {entry.name!r} is also used by api.tokens[{first}]"
                self.add(("api", "tokens", index, "name"), message)
            if entry.sha256 in digests:
                self.add(("api", "tokens", index, "sha256"),
                         f"the same token as api.tokens[{digests[entry.sha256]}]: make a new one "
                         "with `breach token`")  # fmt: skip
            names.setdefault(entry.name, index)
            digests.setdefault(entry.sha256, index)
            tokens.append(ApiToken(entry.name, frozenset(entry.roles),
                                   bytes.fromhex(entry.sha256)))  # fmt: skip
        return tuple(tokens)

    def locator_path(self) -> Path:
        """The config file's path, as given."""
        return Path(self.locator.file)

    def _secret(self, path: tuple[str, ...], section: BaseModel, name: str) -> Secret | None:
        """One secret from ``name``, ``name_file`` or ``name_env`` (exactly one of them)."""
        given = {k: getattr(section, k) for k in (name, f"{name}_file", f"{name}_env")
                 if getattr(section, k) is not None}  # fmt: skip
        if len(given) > 1:
            self.add((*path, sorted(given)[1]),
                     f"set only one of {', '.join(sorted(given))}")  # fmt: skip
            return None
        if not given:
            return None
        key, value = next(iter(given.items()))
        if key.endswith("_file"):
            file = self.resolve_path(value)
            try:
                text = file.read_text("utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self.add((*path, key), f"cannot read secret file {file}: {reason}")
                return None
        elif key.endswith("_env"):
            text = self.env.get(value, "").strip()
            if not text:
                self.add((*path, key), f"environment variable {value} is not set or empty")
                return None
        else:
            text = value
        if not text:
            self.add((*path, key), "the secret is empty")
            return None
        return Secret(text)

    def _alertmanager_auth(
        self, section: AlertmanagerAuthSection | None
    ) -> AlertmanagerCredentials | None:
        if section is None:
            return None
        path = ("auth", "alertmanager")
        before = len(self.problems)
        token = self._secret(path, section, "token")
        password = self._secret(path, section, "password")
        has_basic = section.username is not None or password is not None
        if token is None and not has_basic:
            if len(self.problems) == before:  # else the secret's own problem says it better
                self.add(
                    path,
                    "set token_file (bearer token) or username and password_file "
                    "(basic auth), as the receiver's http_config sends them",
                )
            return None
        if has_basic and (not section.username or password is None):
            if len(self.problems) == before:
                self.add(path, "basic auth needs both username and password (or password_file)")
            return None
        return AlertmanagerCredentials(token=token, username=section.username, password=password)

    def _generic_secret(self, section: GenericAuthSection | None) -> Secret | None:
        if section is None:
            return None
        secret = self._secret(("auth", "generic"), section, "secret")
        if secret is None and not any(
            getattr(section, k) for k in ("secret", "secret_file", "secret_env")
        ):
            self.add(("auth", "generic"), "set secret_file (or secret_env, or secret)")
        return secret

    def _grafana(self, section: GrafanaAuthSection | None) -> GrafanaCredentials | None:
        if section is None:
            return None
        secret = self._secret(("auth", "grafana"), section, "secret")
        if secret is None:
            if not any(getattr(section, k) for k in ("secret", "secret_file", "secret_env")):
                self.add(("auth", "grafana"), "set secret_file (or secret_env, or secret)")
            return None
        return GrafanaCredentials(secret, section.signature_header, section.timestamp_header)

    def _audience(self, name: str, section: AudienceSection, host: PluginHost) -> Audience:
        path = ("audiences", name)
        spec = section.source
        try:
            scheme, target = parse_audience_spec(spec)
        except BreachError as exc:
            self.add((*path, "source"), str(exc))
            return Audience(name, spec, {}, {})
        if scheme not in host.sources:
            known = ", ".join(sorted(host.sources))
            self.add((*path, "source"),
                     f"no installed audience source {scheme!r} (known: {known})")  # fmt: skip
        if scheme in ("csv", "jsonl"):
            file = self.resolve_path(target)
            if not file.exists():
                self.add((*path, "source"), f"audience file {file} does not exist")
            # keep the spec's form (a bare path stays a path, so its extension still counts)
            explicit = spec.strip().lower().startswith(f"{scheme}:")
            spec = f"{scheme}:{file}" if explicit else str(file)
        elif scheme == "sql":
            spec = "sql:" + _sqlite_relative(target, self.base)
        options: dict[str, Any] = dict(section.options)
        if section.query is not None:
            options["query"] = section.query
        if section.params:
            options["params"] = dict(section.params)
        overlap = sorted(set(section.bind) & set(section.params))
        if overlap:
            self.add((*path, "bind"), f"parameter(s) {', '.join(overlap)} are in both params "
                                      "and bind; keep one")  # fmt: skip
        if section.bind and section.query is None:
            self.add((*path, "bind"), "bind needs a query with :name placeholders")
        for param in section.bind:
            if section.query is not None and f":{param}" not in section.query:
                self.add((*path, "bind", param), f"the query has no :{param} placeholder")
        return Audience(name, spec, options, dict(section.bind))

    def _route(
        self,
        index: int,
        section: RouteSection,
        audiences: Mapping[str, Audience],
        order: Sequence[str],
        host: PluginHost,
        regimes: Mapping[str, Any],
    ) -> Route | None:
        path: tuple[str | int, ...] = ("routes", index)
        ok = True
        matchers = self._matchers((*path, "match"), section.match, order)
        resolved_rules = section.resolved
        if section.hook in ("alertmanager", "grafana"):
            for key in ("dedupe", "resolved"):
                if getattr(section, key) is not None:
                    self.add(
                        (*path, key),
                        f"{key} applies to generic routes only; Alertmanager and Grafana "
                        "routes dedupe by groupKey and fingerprints",
                    )
                    ok = False
        elif resolved_rules is None:
            resolved_rules = DEFAULT_RESOLVED
        resolved = self._matchers((*path, "resolved"), resolved_rules or {}, order)
        for key in ("dedupe", "aware_at"):
            value = getattr(section, key)
            if value is not None and not normalise_path(value):
                self.add((*path, key), "an empty path; write a field name such as incident_ref")
                ok = False
        audience = audiences.get(section.audience)
        if audience is None:
            hint = difflib.get_close_matches(section.audience, list(audiences), n=1)
            self.add((*path, "audience"), f"no audience {section.audience!r} in [audiences]"
                     + (f"; did you mean {hint[0]!r}?" if hint else ""))  # fmt: skip
            ok = False
        playbook_path = self.resolve_path(section.playbook)
        playbook, problems = validate_file(playbook_path, host=host, regimes=dict(regimes))
        if problems or playbook is None:
            self.add((*path, "playbook"),
                     f"playbook {playbook_path} has {len(problems)} problem(s), listed with "
                     "their own location")  # fmt: skip
            self.problems.extend(problems)
            return None
        declared = set(playbook.facts)
        bound = set(audience.bind.values()) if audience is not None else set()
        for fact, source in section.facts.items():
            if not normalise_path(source):
                self.add((*path, "facts", fact), "an empty path; write e.g. labels.tenant")
                ok = False
            if fact not in declared and fact not in bound:
                hint = difflib.get_close_matches(fact, sorted(declared), n=1)
                self.add(
                    (*path, "facts", fact),
                    f"playbook {playbook.id!r} declares no fact {fact!r} and the audience "
                    "does not bind it"
                    + (
                        f"; did you mean {hint[0]!r}?"
                        if hint
                        else f" (declared: {', '.join(sorted(declared))})"
                    ),
                )
                ok = False  # fmt: skip
        if audience is not None:
            for param, fact in audience.bind.items():
                spec = playbook.facts.get(fact)
                if fact not in section.facts and (spec is None or spec.default is None):
                    self.add(
                        (*path, "facts"),
                        f"audience {audience.name!r} binds :{param} to fact {fact!r}, which "
                        "this route does not map from the payload; add "
                        f'{fact} = "labels.{fact}" (or the field that carries it)',
                    )
                    ok = False  # fmt: skip
        if not ok or audience is None or matchers is None or resolved is None:
            return None
        return Route(
            index=index, name=section.name, hook=section.hook, playbook_path=playbook_path,
            playbook=playbook, audience=audience, mode=section.mode, matchers=matchers,
            facts=dict(section.facts), dedupe=section.dedupe,
            aware_at=section.aware_at or ("startsAt" if section.hook != "generic" else None),
            resolved=resolved,
        )  # fmt: skip

    def _matchers(
        self, path: tuple[str | int, ...], rules: Mapping[str, Any], order: Sequence[str]
    ) -> tuple[Matcher, ...] | None:
        out: list[Matcher] = []
        failed = False
        for key, rule in rules.items():
            try:
                out.append(compile_matcher(key, rule, order))
            except ValueError as exc:
                self.add((*path, key), str(exc))
                failed = True
        return None if failed else tuple(out)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and not (set(value) & MATCHER_KEYS):
            out.update(_flatten(value, name))
        else:
            out[name] = value
    return out


def _sqlite_relative(url: str, base: Path) -> str:
    """``sqlite:///people.db`` (relative) -> an absolute file next to the config."""
    match = re.fullmatch(r"(sqlite(?:\+\w+)?:///)([^/].*)", url)
    if match is None or match.group(2).startswith(":memory:"):
        return url
    return match.group(1) + str(base / match.group(2))
