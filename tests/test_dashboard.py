"""The dashboard in headless Chromium (Debian's, driven by Playwright): log in, watch a campaign
against the simulator, approve a gated step as the DPO; a viewer sees no button and its forged
POST is refused. Screenshots go to ``$BREACH_TEST_ARTIFACTS`` (default ``artifacts/``); any
console error in the browser fails the test."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_support import PLAYBOOK, phone_audience, standin_host
from fixtures.server.harness import LiveServer

from orchestrator.dispatch import DispatchSettings
from orchestrator.engine import Engine
from orchestrator.server.config import load_config
from orchestrator.server.tokens import new_token
from orchestrator.session import Breach
from orchestrator.simulator import Simulator

CHROMIUM = os.environ.get("BREACH_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(
    os.environ.get("BREACH_TEST_ARTIFACTS", Path(__file__).parent.parent / "artifacts")
)
GATE = """  - id: gated
    channel: sms
    notifier: standin-sms
    at: +0m
    approval: {role: dpo}
"""

pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM),
    reason=f"needs Debian's chromium at {CHROMIUM} (.ci/run installs it)",
)
Served = tuple[LiveServer, str, dict[str, str]]


def until(check: Callable[[], Any], what: str) -> Any:
    """Wait for the browser to show something (the campaign runs in the server)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def served(simulator: Simulator, tmp_path: Path) -> Iterator[Served]:
    host = standin_host(simulator.url)
    playbook = tmp_path / "gated.yaml"
    playbook.write_text(PLAYBOOK.read_text("utf-8") + GATE, "utf-8")
    tokens, entries = {}, []
    for name, roles in {"dpo": ["dpo"], "viewer": ["viewer"]}.items():
        tokens[name], entry = new_token(name, roles)
        entries.append(entry)
    (tmp_path / "breach.toml").write_text("\n\n".join(entries) + "\n", "utf-8")
    db = f"sqlite:///{tmp_path / 'l.db'}"
    with Breach(db, host=host) as breach:
        incident = breach.trigger(playbook, audience=str(phone_audience(tmp_path / "p.csv", 400)),
                                  mode="live").incident_id  # fmt: skip
    # paced, so the campaign lasts long enough to be watched: 40 s, even on a loaded machine
    # where the browser takes many seconds to log in
    settings = DispatchSettings(rates={"standin-sms": 10.0})
    config = load_config(tmp_path / "breach.toml", host=host)
    engine = lambda b: Engine(b, settings=settings, rescan_seconds=0.2)  # noqa: E731
    with LiveServer(config, db=db, host=host, engine=engine) as server:
        yield server, incident, tokens


def test_commander_watches_and_approves_and_a_viewer_cannot(
    served: Served,
) -> None:
    from playwright.sync_api import sync_playwright

    server, incident, tokens = served
    shots = ARTIFACTS / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:

            def login(name: str) -> Any:
                context = browser.new_context(viewport={"width": 390, "height": 844})
                page = context.new_page()
                page.on("console", lambda m: errors.append(f"{name}: {m.text}")
                        if m.type == "error" else None)  # fmt: skip
                page.on("pageerror", lambda e: errors.append(f"{name}: {e}"))
                page.goto(f"{server.url}/login")
                page.fill("#token", tokens[name])
                page.click("button[type=submit]")
                page.wait_for_url(f"{server.url}/")
                page.click(f"a:text('{incident}')")
                page.wait_for_url(f"{server.url}/incidents/{incident}")
                return context, page

            # the viewer first: the gate is still closed, so only the role can refuse it
            _, viewer = login("viewer")
            viewer.wait_for_selector("#step-gated[data-state=awaiting_approval]")
            assert viewer.locator("button.approve").count() == 0
            csrf = viewer.locator("input[name=csrf]").first.get_attribute("value")
            forged = viewer.request.post(f"{server.url}/incidents/{incident}/steps/gated/approve",
                                         form={"csrf": csrf or ""})  # fmt: skip
            assert forged.status == 403, forged.text()
            viewer.screenshot(path=str(shots / "viewer-incident.png"), full_page=True)

            _, dpo = login("dpo")
            sent = dpo.locator("#step-sms-all .count[data-kind=sent] b")

            def shown() -> int:
                return int(sent.text_content() or 0) if sent.count() else 0

            first = until(shown, "a first delivery shown")
            assert first < 400, "the campaign ended before the page could be watched"
            until(lambda: shown() > first, f"the sent count rising on the page from {first}")
            dpo.screenshot(path=str(shots / "dpo-campaign-running.png"), full_page=True)
            dpo.click("#step-gated button.approve")
            dpo.wait_for_url(f"{server.url}/incidents/{incident}")
            until(lambda: dpo.locator("#step-gated").get_attribute("data-state")
                  in ("running", "done"), "the approved step starting")  # fmt: skip
            dpo.screenshot(path=str(shots / "dpo-approved.png"), full_page=True)
            headers = dpo.request.get(f"{server.url}/incidents/{incident}").headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
        finally:
            browser.close()
    assert errors == []
    with Breach(server.breach.db) as breach:
        events = breach.timeline(incident)
    refused = [e for e in events if e["kind"] == "step.approval_refused"]
    assert [e["actor"] for e in refused] == ["viewer"]
    approved = [e for e in events if e["kind"] == "step.approved"]
    assert [(e["actor"], e["detail"]["via"]) for e in approved] == [("dpo", "dashboard")]


def test_the_login_form_is_protected_against_cross_site_posts(served: Served) -> None:
    """A page elsewhere could post a token of its own choosing to log the commander in as
    someone else: the login form carries a token that must match its cookie."""
    import re

    import httpx

    server, _, tokens = served
    with httpx.Client(base_url=server.url, follow_redirects=False) as client:
        forged = client.post("/login", data={"token": tokens["dpo"]})
        assert forged.status_code == 403 and "breach_session" not in forged.cookies
        form = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        cookie = form.cookies["breach_login"]  # Secure: httpx keeps it off plain HTTP itself
        wrong = client.post("/login", data={"token": tokens["dpo"], "csrf": "x" * 32},
                            headers={"Cookie": f"breach_login={cookie}"})  # fmt: skip
        assert wrong.status_code == 403
        good = client.post("/login", data={"token": tokens["dpo"], "csrf": csrf.group(1)},
                           headers={"Cookie": f"breach_login={cookie}"})  # fmt: skip
        assert good.status_code == 303 and "breach_session" in good.cookies
