"""The commander API: JSON endpoints over the :class:`~orchestrator.session.Breach` session.

Mounted by :func:`~orchestrator.server.app.create_app` at ``/api``; its OpenAPI document is at
``/api/openapi.json``. Every request carries ``Authorization: Bearer TOKEN``, one of the config's
``[[api.tokens]]`` (stored as SHA-256, see :mod:`.tokens`). Any valid token may read; triggering,
cancelling, updating facts and recording events need the ``commander`` role; approving or
rejecting a gated step needs one of the roles its playbook names (a refusal is 403 and is on the
timeline).

Refusals are ``application/problem+json`` like the webhooks': 400 a body that is not JSON, 401
no or unknown token, 403 role missing, 404 unknown incident or step, 409 the step or incident is
past that, 422 a request that does not fit (unknown playbook or audience, a fact of the wrong
type), 503 the ledger is unreachable or a notifier lacks settings for the mode.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import shipped
from ..errors import (
    AudienceError,
    BreachError,
    ConfigurationError,
    FactError,
    Forbidden,
    LedgerError,
    NotFound,
    StateConflict,
    ValidationFailed,
)
from ..notifier import Mode
from ..playbook import Playbook
from ..session import Breach
from ..version import __version__
from .config import ApiToken, ServerConfig
from .tokens import find

log = logging.getLogger("orchestrator.server.api")
T = TypeVar("T")
PROBLEM = "application/problem+json"
COMMANDER = "commander"

IncidentId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
#: a playbook step id, its fallback (``+fallback``) or a follow-up instance (``@2``)
StepId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_+@-]{0,63}$")]


# -- shapes -------------------------------------------------------------------------------------


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str


class _Open(BaseModel):
    """A response object that may gain fields (clients ignore what they do not know)."""

    model_config = ConfigDict(extra="allow")


class IncidentRow(_Open):
    id: str
    playbook: str
    mode: str
    state: str
    aware_at: str
    people: int | None
    title: str


class IncidentList(_Open):
    incidents: list[IncidentRow]


class StepStatus(_Open):
    step: str
    channel: str
    state: str
    due_at: str | None
    due_in_seconds: float | None
    deliveries: dict[str, int]
    reasons: dict[str, int]
    approved_by: str | None
    why: str | None
    waiting_for: dict[str, Any] | None
    eta_seconds: float | None
    rate_per_second: float | None = None


class Deadline(_Open):
    regulator: str
    name: str
    regime: str
    due_at: str | None
    hours_left: float | None
    state: str
    filed_at: str | None


class Status(_Open):
    """An incident as ``breach status --json`` shows it."""

    id: str
    playbook: str
    version: str
    title: str
    mode: str
    state: str
    aware_at: str
    now: str
    elapsed_hours: float
    people: int | None
    facts: dict[str, Any]
    steps: list[StepStatus]
    next_step: str | None
    circuits: dict[str, dict[str, Any]]
    deadlines: list[Deadline]
    outbox: str | None
    redirected: bool
    possible_duplicates: int


class Event(_Open):
    at: str
    kind: str
    step: str | None
    actor: str
    detail: dict[str, Any]


class Timeline(_Open):
    events: list[Event]


class Deadlines(_Open):
    deadlines: list[Deadline]


class Identity(_Open):
    name: str
    roles: list[str]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TriggerRequest(_Request):
    """A new incident from a playbook the server knows and an audience its config names."""

    playbook: str = Field(max_length=200, description="A shipped playbook's id or a route's.")
    audience: str = Field(max_length=64, description="An audience of the server config.")
    mode: Literal["dry-run", "sandbox", "live"] = "dry-run"
    facts: dict[str, Any] = Field(default_factory=dict)
    aware_at: datetime | None = Field(default=None, description="Default: now.")


class Triggered(_Open):
    incident: str
    mode: str
    status: Status


class EventRequest(_Request):
    """An event for the timeline (``note.added``, ``regulator.called``...), facts merged in."""

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,30}\.[a-z][a-z0-9_]{0,30}$")
    detail: dict[str, Any] = Field(default_factory=dict)
    facts: dict[str, Any] = Field(default_factory=dict)


class Recorded(_Open):
    incident: str
    kind: str


class ApprovalRequest(_Request):
    as_role: str | None = Field(
        default=None, max_length=64, description="The role to act in (default: one missing)."
    )


class RejectionRequest(ApprovalRequest):
    reason: str | None = Field(default=None, max_length=2000)


class CancelRequest(_Request):
    reason: str | None = Field(default=None, max_length=2000)


class Approved(_Open):
    incident: str
    step: str
    approved_by: str
    role: str | None
    state: str
    open: bool
    missing: list[str]


class Rejected(_Open):
    incident: str
    step: str
    rejected_by: str
    role: str | None
    state: str


class UpdateRequest(_Request):
    """Corrected or new values of facts the incident's playbook declares."""

    facts: dict[str, Any] = Field(min_length=1)
    reason: str | None = Field(default=None, max_length=2000)


class Updated(_Open):
    incident: str
    number: int
    by: str
    reason: str | None
    changes: list[dict[str, Any]]
    notified: int
    first_notice_at: str | None
    follow_ups: list[dict[str, Any]]


class Cancelled(_Open):
    incident: str
    skipped: int
    reason: str


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {
        400: "The body is not JSON",
        401: "No or unknown API token",
        403: "The token lacks the role",
        404: "No such incident or step",
        409: "Not possible in the current state",
        422: "The request does not fit",
        503: "Ledger or notifier settings unavailable",
    }
    ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
    return {code: {"model": Problem, "description": words[code],
                   "content": {PROBLEM: ref}} for code in codes}  # fmt: skip


READ = _problems(401, 404, 422, 503)
WRITE = _problems(400, 401, 403, 404, 409, 422, 503)


class ApiRefusal(Exception):
    """A refused API request, answered as a problem document."""

    def __init__(self, status: int, slug: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail


def problem_response(status: int, slug: str, title: str, detail: str) -> JSONResponse:
    body = {"type": f"urn:breach:problem:{slug}", "title": title, "status": status,
            "detail": detail}  # fmt: skip
    headers = {"WWW-Authenticate": 'Bearer realm="breach"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _refusal(exc: BreachError) -> ApiRefusal:
    """The HTTP refusal for an expected failure of a session method."""
    text = str(exc)
    if isinstance(exc, Forbidden):
        return ApiRefusal(403, "forbidden", "Forbidden", text)
    if isinstance(exc, NotFound):
        return ApiRefusal(404, "not-found", "Not found", text)
    if isinstance(exc, StateConflict):
        return ApiRefusal(409, "conflict", "Not possible now", text)
    if isinstance(exc, ConfigurationError):
        return ApiRefusal(503, "notifier-not-configured", "Notifier settings missing", text)
    if isinstance(exc, AudienceError | LedgerError):
        return ApiRefusal(503, "dependency-unavailable", "Ledger or audience unavailable", text)
    if isinstance(exc, ValidationFailed):
        first = exc.problems[0] if exc.problems else ""
        return ApiRefusal(422, "invalid", "Invalid", f"{len(exc.problems)} problem(s): {first}")
    if isinstance(exc, FactError):
        return ApiRefusal(422, "facts-invalid", "Facts do not fit the playbook", text)
    return ApiRefusal(422, "not-carried-out", "Not carried out", text)


async def _call(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A session method in a worker thread; its expected failures become refusals."""
    try:
        return await anyio.to_thread.run_sync(functools.partial(work, *args, **kwargs))
    except BreachError as exc:
        raise _refusal(exc) from None


_bearer = HTTPBearer(auto_error=False, description="A token of the config's [[api.tokens]]")


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    """The configured token the request carries, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        hint = "send Authorization: Bearer TOKEN (make one with `breach token`)"
        raise ApiRefusal(401, "unauthorized", "Unauthorized", hint)
    token = find(request.app.state.tokens, credentials.credentials)
    if token is None:
        raise ApiRefusal(401, "unauthorized", "Unauthorized", "unknown API token")
    return token


def commander(token: Annotated[ApiToken, Depends(caller)]) -> ApiToken:
    """The caller's token, if it holds the ``commander`` role; else 403."""
    if COMMANDER not in token.roles:
        detail = f"token {token.name!r} lacks the commander role"
        raise ApiRefusal(403, "forbidden", "Forbidden", detail)
    return token


Caller = Annotated[ApiToken, Depends(caller)]
Commander = Annotated[ApiToken, Depends(commander)]


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def create_api(config: ServerConfig, breach: Breach) -> FastAPI:
    """The commander API over the process's session, to mount at ``/api``."""
    api = FastAPI(title="breach-orchestrator commander API", version=__version__,
                  openapi_url="/openapi.json", docs_url=None, redoc_url=None)  # fmt: skip
    api.state.tokens = config.api_tokens

    @api.exception_handler(ApiRefusal)
    async def refused(_request: Request, exc: ApiRefusal) -> Response:
        return problem_response(exc.status, exc.slug, exc.title, exc.detail)

    @api.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        detail = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        return problem_response(422, "invalid-request", "Invalid request", detail)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        title = {400: "Malformed body", 404: "Not found",
                 405: "Method not allowed"}.get(exc.status_code, "HTTP error")  # fmt: skip
        return problem_response(exc.status_code, title.lower().replace(" ", "-"), title,
                                str(exc.detail))  # fmt: skip

    @api.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("unexpected error", exc_info=exc, extra={"path": request.url.path})
        detail = "the server failed unexpectedly; the error is in its log"
        return problem_response(500, "internal-error", "Internal error", detail)

    def playbook_for(ref: str) -> Playbook:
        """A route's playbook by id, else a shipped one; never a path from the request."""
        for route in config.routes:
            if route.playbook.id == ref:
                return route.playbook
        found = {p.id: p.path for p in shipped.playbooks()}
        if ref not in found:
            known = sorted({r.playbook.id for r in config.routes} | set(found))
            raise ApiRefusal(422, "unknown-playbook", "Unknown playbook",
                             f"no playbook {ref!r}; known: {', '.join(known)}")  # fmt: skip
        return breach.playbook(found[ref])

    @api.get("/whoami", responses=_problems(401))
    async def whoami(token: Caller) -> Identity:
        """The token's name and roles."""
        return Identity(name=token.name, roles=sorted(token.roles))

    @api.get("/incidents", responses=_problems(401, 422, 503))
    async def list_incidents(
        _token: Caller, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> IncidentList:
        """The most recent incidents, newest first."""
        rows = await _call(breach.incidents, limit)
        return IncidentList.model_validate({"incidents": rows})

    @api.post("/incidents", status_code=201, responses=WRITE)
    async def trigger(body: TriggerRequest, token: Commander) -> Triggered:
        """Trigger a playbook against a configured audience (the server's ``force_mode`` wins)."""
        audience = config.audiences.get(body.audience)
        if audience is None:
            raise ApiRefusal(422, "unknown-audience", "Unknown audience",
                             f"no audience {body.audience!r} in {config.path.name}; known: "
                             + (", ".join(sorted(config.audiences)) or "none"))  # fmt: skip
        mode: Mode = "dry-run" if config.force_mode == "dry-run" else body.mode
        aware = body.aware_at
        if aware is not None and aware.tzinfo is None:
            aware = aware.replace(tzinfo=UTC)

        def work() -> str:
            playbook = playbook_for(body.playbook)
            incident_id = breach.trigger(
                playbook, audience=audience.spec, audience_options=audience.options,
                facts=body.facts, aware_at=aware, mode=mode, source="api", actor=token.name,
                outbox=None if mode != "dry-run" else config.outbox / f"api-{_stamp()}",
            ).incident_id  # fmt: skip
            return incident_id

        incident = await _call(work)
        status = await _call(breach.status, incident)
        return Triggered(incident=incident, mode=mode, status=Status.model_validate(status))

    @api.get("/incidents/{incident}", responses=READ)
    async def status(incident: IncidentId, _token: Caller) -> Status:
        """One incident, explained: steps, counts, why, gates, circuits, deadlines."""
        return Status.model_validate(await _call(breach.status, incident))

    @api.get("/incidents/{incident}/timeline", responses=READ)
    async def timeline(incident: IncidentId, _token: Caller) -> Timeline:
        """Every audit event of the incident, oldest first."""
        return Timeline.model_validate({"events": await _call(breach.timeline, incident)})

    @api.get("/incidents/{incident}/deadlines", responses=READ)
    async def deadlines(incident: IncidentId, _token: Caller) -> Deadlines:
        """The regulators' deadlines, with time left or when the report was filed."""
        data = await _call(breach.status, incident)
        return Deadlines.model_validate({"deadlines": data["deadlines"]})

    @api.post("/incidents/{incident}/events", status_code=201, responses=WRITE)
    async def record(incident: IncidentId, body: EventRequest, token: Commander) -> Recorded:
        """Record an event on the timeline; ``facts`` are merged into the incident's."""
        await _call(breach.record, incident, body.kind, detail=body.detail,
                    facts=body.facts or None, actor=token.name)  # fmt: skip
        return Recorded(incident=incident, kind=body.kind)

    @api.post("/incidents/{incident}/steps/{step}/approve", responses=WRITE)
    async def approve(
        incident: IncidentId, step: StepId, token: Caller, body: ApprovalRequest | None = None
    ) -> Approved:
        """Approve a gated step in one of the token's roles."""
        result = await _call(breach.approve, incident, step, by=token.name,
                             roles=token.roles, as_role=body.as_role if body else None,
                             via="api")  # fmt: skip
        return Approved.model_validate(result)

    @api.post("/incidents/{incident}/steps/{step}/reject", responses=WRITE)
    async def reject(
        incident: IncidentId, step: StepId, token: Caller, body: RejectionRequest | None = None
    ) -> Rejected:
        """Reject a step before it fires: it is cancelled."""
        result = await _call(breach.reject, incident, step, by=token.name, roles=token.roles,
                             as_role=body.as_role if body else None,
                             reason=body.reason if body else None, via="api")  # fmt: skip
        return Rejected.model_validate(result)

    @api.post("/incidents/{incident}/updates", status_code=201, responses=WRITE)
    async def update(incident: IncidentId, body: UpdateRequest, token: Commander) -> Updated:
        """Correct or complete the incident's facts (update N): its ``on_update`` steps send a
        follow-up notice to the people who received an earlier one."""
        result = await _call(breach.update, incident, body.facts, reason=body.reason,
                             by=token.name, via="api")  # fmt: skip
        return Updated.model_validate(result)

    @api.post("/incidents/{incident}/cancel", responses=WRITE)
    async def cancel(
        incident: IncidentId, token: Commander, body: CancelRequest | None = None
    ) -> Cancelled:
        """Stop the incident: unfired steps cancelled, pending deliveries cancelled."""
        state = (await _call(breach.status, incident))["state"]
        if state in ("cancelled", "finished"):
            raise ApiRefusal(409, "conflict", "Not possible now", f"{incident} is {state}")
        result = await _call(breach.cancel, incident, by=token.name,
                             reason=body.reason if body else None)  # fmt: skip
        return Cancelled.model_validate(result)

    return api
