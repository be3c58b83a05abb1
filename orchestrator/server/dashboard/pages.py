"""The dashboard's routes: login, incident list, incident page, its live fragment, approvals."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.staticfiles import StaticFiles

from ...errors import BreachError, Forbidden, NotFound, StateConflict
from ...ledger import settlements
from ...relative import relative
from ...session import Breach
from ..config import ServerConfig
from ..tokens import find
from .sessions import COOKIE, LIFETIME_SECONDS, Session, Sessions

T = TypeVar("T")
HERE = Path(__file__).parent
#: no inline script or style, nothing from elsewhere, never framed
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: the login form's double-submit token (the session's own CSRF token guards the other forms)
LOGIN_COOKIE = "breach_login"
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def static_files() -> StaticFiles:
    """The dashboard's script and stylesheet, to mount at ``/static``."""
    return StaticFiles(directory=HERE / "static")


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(default=True))  # fmt: skip
    env.filters["relative"] = relative
    return env


class PageRefusal(Exception):
    """A refused dashboard request: an HTML page with the status and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_dashboard(config: ServerConfig, breach: Breach) -> APIRouter:
    """The dashboard's routes (include them in the app; mount :func:`static_files`)."""
    router = APIRouter(include_in_schema=False)
    env = _environment()
    sessions = Sessions()

    def page(name: str, code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=code, headers=SECURITY_HEADERS)

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    async def work(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
        except Forbidden as exc:
            raise PageRefusal(403, str(exc)) from None
        except NotFound as exc:
            raise PageRefusal(404, str(exc)) from None
        except StateConflict as exc:
            raise PageRefusal(409, str(exc)) from None
        except BreachError as exc:
            raise PageRefusal(400, str(exc)) from None

    def to_login() -> Response:
        return RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)

    def checked(request: Request, csrf: str | None) -> Session:
        session = session_of(request)
        if session is None:
            raise PageRefusal(401, "your session ended: log in again")
        if not session.csrf_ok(csrf):
            raise PageRefusal(403, "this form is stale or did not come from this dashboard; "
                                   "reload the page and try again")  # fmt: skip
        return session

    def login_page(code: int = 200, error: str | None = None) -> Response:
        # Before a session exists the login form is protected by a double-submit token: the
        # same random value in a cookie and in the form, which another site can set neither of.
        csrf = secrets.token_urlsafe(24)
        response = page("login.html", code=code, error=error, csrf=csrf)
        response.set_cookie(LOGIN_COOKIE, csrf, max_age=600, secure=True, httponly=True,
                            samesite="strict", path="/login")  # fmt: skip
        return response

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        return login_page()

    @router.post("/login")
    async def login(
        request: Request, token: str = Form(max_length=500), csrf: str = Form("", max_length=100)
    ) -> Response:
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not (csrf and expected and hmac.compare_digest(csrf.encode(), expected.encode())):
            return login_page(403, "this form is stale or did not come from this dashboard")
        found = find(config.api_tokens, token.strip())
        if found is None:
            return login_page(401, "unknown token")
        response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(COOKIE, sessions.open(found), max_age=LIFETIME_SECONDS,
                            secure=True, httponly=True, samesite="strict", path="/")  # fmt: skip
        return response

    @router.post("/logout")
    async def logout(request: Request, csrf: str = Form("")) -> Response:
        checked(request, csrf)
        sessions.close(request.cookies.get(COOKIE))
        response = to_login()
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response

    @router.get("/")
    async def incident_list(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return to_login()
        rows = await work(breach.incidents, 50)
        return page("incidents.html", session=session, incidents=rows)

    @router.get("/incidents/{incident}")
    async def incident_page(request: Request, incident: str) -> Response:
        session = session_of(request)
        if session is None:
            return to_login()
        status = await work(breach.status, incident)
        timeline = await work(breach.timeline, incident)
        try:
            notices = await work(breach.notices, incident)
        except PageRefusal:
            notices = {}  # a notice that cannot render now must not hide the incident
        # a campaign writes one settlement row per batch: consecutive ones are one line
        timeline = settlements.grouped_timeline(timeline)
        return page("incident.html", session=session, status=status, timeline=timeline,
                    notices=notices, can_act=_can_act(session))  # fmt: skip

    @router.get("/incidents/{incident}/live")
    async def live(request: Request, incident: str) -> Response:
        """The refreshing part of the incident page (steps, circuits, deadlines), as HTML."""
        session = session_of(request)
        if session is None:
            raise PageRefusal(401, "your session ended: log in again")
        status = await work(breach.status, incident)
        return page("live.html", session=session, status=status, can_act=_can_act(session))

    @router.post("/incidents/{incident}/steps/{step}/{verb}")
    async def decide(
        request: Request, incident: str, step: str, verb: str, csrf: str = Form(""),
        reason: str = Form("", max_length=2000),
    ) -> Response:  # fmt: skip
        if verb not in ("approve", "reject"):
            raise PageRefusal(404, f"no such action {verb!r}")
        session = checked(request, csrf)
        name, roles = session.token.name, session.token.roles
        if verb == "approve":
            await work(breach.approve, incident, step, by=name, roles=roles, via="dashboard")
        else:
            await work(breach.reject, incident, step, by=name, roles=roles,
                       reason=reason or None, via="dashboard")  # fmt: skip
        return RedirectResponse(f"/incidents/{incident}", status_code=303,
                                headers=SECURITY_HEADERS)  # fmt: skip

    @router.post("/incidents/{incident}/cancel")
    async def cancel(
        request: Request, incident: str, csrf: str = Form(""),
        reason: str = Form("", max_length=2000),
    ) -> Response:  # fmt: skip
        session = checked(request, csrf)
        if "commander" not in session.token.roles:
            raise PageRefusal(403, "cancelling an incident needs the commander role")
        await work(breach.cancel, incident, by=session.token.name, reason=reason or None)
        return RedirectResponse(f"/incidents/{incident}", status_code=303,
                                headers=SECURITY_HEADERS)  # fmt: skip

    return router


def _can_act(session: Session) -> Callable[[dict[str, Any]], bool]:
    """Whether this session's roles may approve or reject a step row of the status."""

    def can(step: dict[str, Any]) -> bool:
        waiting = step.get("waiting_for")
        if not waiting:
            return False
        return any(role in session.token.roles for role in waiting["missing"])

    return can


def refusal_page(exc: PageRefusal) -> HTMLResponse:
    """A refusal as a small HTML page."""
    html = _environment().get_template("refused.html").render(status=exc.status,
                                                               message=exc.message)  # fmt: skip
    return HTMLResponse(html, status_code=exc.status, headers=SECURITY_HEADERS)
