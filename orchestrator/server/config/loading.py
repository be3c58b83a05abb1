"""The server's config file (``breach.toml``): listener, secrets, audiences, routes.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...audience import parse_audience_spec
from ...errors import BreachError, Problem, ValidationFailed
from ...playbook import Playbook
from ...pluginhost import PluginHost
from ...regimes import load_regimes
from ...validation import validate_file
from ..routing import MATCHER_KEYS, Matcher, compile_matcher, normalise_path

Hook = Literal["alertmanager", "generic"]
RouteMode = Literal["live", "dry-run"]

DEFAULT_CONFIG = Path("breach.toml")
DEFAULT_MAX_BODY = 1_048_576
#: lowest to highest; ``severity = { at_least = "high" }`` compares positions in this list
DEFAULT_SEVERITIES = ("info", "low", "warning", "medium", "high", "error", "critical")
#: the generic webhook's default rule for "this payload resolves the incident"
DEFAULT_RESOLVED = {"status": "resolved"}
_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class ConfigInvalid(ValidationFailed):
    """The server config (or a route's playbook) has problems; all are attached, located."""

    exit_code = 2


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


# -- the file's shape (pydantic) ---------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSection(_Strict):
    """``[server]``: listener defaults, limits, and the staging switch."""

    host: str | None = None
    port: int | None = Field(default=None, ge=0, le=65535)
    outbox: str = "outbox"
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, gt=0)
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


class AuthSection(_Strict):
    """``[auth]``: credentials per hook; a hook without them refuses every request."""

    alertmanager: AlertmanagerAuthSection | None = None
    generic: GenericAuthSection | None = None


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


class ConfigFile(_Strict):
    """The whole file, as written."""

    server: ServerSection = Field(default_factory=ServerSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    audiences: dict[str, AudienceSection] = Field(default_factory=dict)
    routes: list[RouteSection] = Field(default_factory=list)


# -- the loaded config ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertmanagerCredentials:
    """What Alertmanager's ``http_config`` must send: a bearer token or basic auth."""

    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None


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

    def mode_for(self, route: Route) -> str:
        """The mode a route runs in here: ``force_mode`` wins over the route's own."""
        return self.force_mode or route.mode

    def routes_for(self, hook: str) -> list[Route]:
        """The routes of one hook, in config order."""
        return [r for r in self.routes if r.hook == hook]

    def secrets(self) -> list[str]:
        """Every secret of this config, for the log redactor (never for display)."""
        found = [self.generic_secret]
        if self.alertmanager is not None:
            found += [self.alertmanager.token, self.alertmanager.password]
        return [s.reveal().decode("utf-8") for s in found if s is not None]


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
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigInvalid([Problem(file, 0, 0, "config file not found (pass --config FILE; "
                                                  "README, section Webhooks, has an example)")]
                            ) from None  # fmt: skip
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigInvalid([Problem(file, 0, 0, f"cannot read the config file: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid([_syntax_problem(file, text, exc)]) from None
    locator = Locator(file, text)
    checker = _Checker(locator, path.parent, env)
    data = checker.flatten_matchers(data)
    try:
        parsed = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigInvalid(checker.model_problems(exc, data)) from None
    return checker.build(parsed, host=host, regimes_file=regimes_file)


# -- locating problems -------------------------------------------------------------------------

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def _syntax_problem(file: str, text: str, exc: tomllib.TOMLDecodeError) -> Problem:
    message = str(exc)
    found = _TOML_POS.search(message)
    if found:
        line, column = int(found.group(1)), int(found.group(2))
        message = message[: found.start()]
    else:
        line, column = max(1, text.count("\n") + 1), 1
        message = _TOML_END.sub("", message) + " (at the end of the file)"
    return Problem(file, line, column, f"TOML syntax: {message}")


_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _split_key(text: str, start: int = 0) -> tuple[list[str], int] | None:
    """Parse a TOML (dotted, possibly quoted) key at ``start``: (parts, end index) or None."""
    parts: list[str] = []
    i = start
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text):
            return None
        if text[i] in "\"'":
            quote = text[i]
            j = i + 1
            buf = []
            while j < len(text) and text[j] != quote:
                if quote == '"' and text[j] == "\\" and j + 1 < len(text):
                    buf.append(text[j + 1])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= len(text):
                return None
            parts.append("".join(buf))
            i = j + 1
        else:
            bare = _BARE.match(text, i)
            if bare is None:
                return None
            parts.append(bare.group())
            i = bare.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return parts, i


class Locator:
    """Line and column of keys and tables in a TOML text, found by a light scan.

    tomllib reports positions only for syntax errors; this finds where ``routes[2].mode`` was
    written so that semantic problems are located too (falling back to the enclosing table).
    """

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.positions: dict[tuple[str, ...], tuple[int, int]] = {}
        arrays: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_multiline: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            stripped = line.lstrip()
            column = len(line) - len(stripped) + 1
            if stripped.startswith("[["):
                parsed = _split_key(stripped, 2)
                if parsed:
                    # the last part is the array itself; only its parents take their index
                    base = (*self._resolve(parsed[0][:-1], arrays), parsed[0][-1])
                    arrays[base] = arrays.get(base, -1) + 1
                    table = (*base, str(arrays[base]))
                    self.positions.setdefault(table, (number, column))
                continue
            if stripped.startswith("["):
                parsed = _split_key(stripped, 1)
                if parsed:
                    table = self._resolve(parsed[0], arrays)
                    self.positions.setdefault(table, (number, column))
                continue
            parsed = _split_key(stripped)
            if parsed is None or not stripped[parsed[1] :].startswith("="):
                continue
            self.positions.setdefault((*table, *parsed[0]), (number, column))
            for quote in ('"""', "'''"):
                if stripped.count(quote) % 2 == 1:
                    in_multiline = quote

    @staticmethod
    def _resolve(parts: Sequence[str], arrays: Mapping[tuple[str, ...], int]) -> tuple[str, ...]:
        """A header's path with the current index of every array of tables it passes through."""
        out: list[str] = []
        for part in parts:
            out.append(part)
            if tuple(out) in arrays:
                out.append(str(arrays[tuple(out)]))
        return tuple(out)

    def locate(self, path: Sequence[str | int]) -> tuple[int, int]:
        """Position of ``path`` (dotted parts allowed), else of its nearest located ancestor."""
        parts: list[str] = []
        for p in path:
            parts.extend(str(p).split(".") if isinstance(p, str) else [str(p)])
        wanted = tuple(parts)
        while wanted:
            if wanted in self.positions:
                return self.positions[wanted]
            # a quoted key with dots ("labels.severity") was recorded as one part
            for length in range(len(wanted) - 1, 0, -1):
                joined = (*wanted[:length], ".".join(wanted[length:]))
                if joined in self.positions:
                    return self.positions[joined]
            wanted = wanted[:-1]
        return (1, 1)

    def problem(
        self, path: Sequence[str | int], message: str, names: Mapping[int, str] | None = None
    ) -> Problem:
        """A problem located at ``path``, its message prefixed with the dotted key."""
        line, column = self.locate(path)
        return Problem(self.file, line, column, f"{describe(path, names)}: {message}")


def describe(path: Sequence[str | int], names: Mapping[int, str] | None = None) -> str:
    """``("routes", 2, "mode")`` -> ``routes[2] ("ransomware").mode``."""
    out = ""
    for position, part in enumerate(path):
        if isinstance(part, int):
            out += f"[{part}]"
            if names and position == 1 and path[0] == "routes" and part in names:
                out += f" ({names[part]!r})"
        else:
            out += ("." if out else "") + part
    return out or "(file)"


# -- checking ------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, locator: Locator, base: Path, env: Mapping[str, str]) -> None:
        self.locator = locator
        self.base = base
        self.env = env
        self.problems: list[Problem] = []
        #: route index -> name, so messages say which route as well as where
        self.route_names: dict[int, str] = {}

    def add(self, path: Sequence[str | int], message: str) -> None:
        """Record a problem at ``path``."""
        self.problems.append(self.locator.problem(path, message, self.route_names))

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

    def model_problems(self, exc: ValidationError, data: dict[str, Any]) -> list[Problem]:
        """pydantic's errors as located problems (unknown keys with a "did you mean")."""
        seen: set[tuple[Any, ...]] = set()
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            if (loc, error["type"]) in seen:
                continue
            seen.add((loc, error["type"]))
            kind = error["type"]
            if kind == "extra_forbidden":
                parent = _value_at(data, loc[:-1])
                known = _known_keys(loc[:-1])
                hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
                message = f"unknown key {loc[-1]!r}" + (
                    f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(known)})"
                )
                if not isinstance(parent, dict):  # pragma: no cover - pydantic reports the parent
                    message = "unexpected value"
                self.add(loc, message)
            elif kind == "missing":
                self.add(loc[:-1], f"missing required key {loc[-1]!r}")
            else:
                self.add(loc, _plain(error["msg"]))
        return sorted(self.problems)

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
        if "generic" in hooks and parsed.auth.generic is None:
            self.add(
                ("auth",),
                "routes use the generic hook but [auth.generic] is missing: set "
                "secret_file (the HMAC-SHA256 key senders sign with)",
            )
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
        )  # fmt: skip

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
        if section.hook == "alertmanager":
            for key in ("dedupe", "resolved"):
                if getattr(section, key) is not None:
                    self.add(
                        (*path, key),
                        f"{key} applies to generic routes only; Alertmanager "
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
            aware_at=section.aware_at or ("startsAt" if section.hook == "alertmanager" else None),
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


def _clean_loc(loc: Sequence[int | str]) -> tuple[int | str, ...]:
    # pydantic adds union-member and function tags to the location; keep the data path
    return tuple(p for p in loc if isinstance(p, int) or not _is_tag(p))


_TAGS = {"str", "int", "float", "bool", "list[str]", "dict[str,any]", "none"}


def _is_tag(part: str) -> bool:
    return part in _TAGS or part.startswith(
        ("function-", "literal[", "lax-or-strict", "json-or-python")
    )


def _value_at(data: Any, path: Sequence[int | str]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


_SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): ConfigFile,
    ("server",): ServerSection,
    ("auth",): AuthSection,
    ("auth", "alertmanager"): AlertmanagerAuthSection,
    ("auth", "generic"): GenericAuthSection,
    ("audiences", "*"): AudienceSection,
    ("routes", "*"): RouteSection,
}


def _known_keys(path: Sequence[int | str]) -> list[str]:
    shape = tuple("*" if isinstance(p, int) or (i == 1 and path[0] == "audiences") else str(p)
                  for i, p in enumerate(path))  # fmt: skip
    model = _SECTIONS.get(shape)
    return sorted(model.model_fields) if model is not None else []


def _plain(message: str) -> str:
    return message.replace("Input should be", "should be").replace("String should", "should")
