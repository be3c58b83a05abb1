"""``breach update``: corrected facts, and follow-up notices only to people who got the first.

The live tests run the engine against the provider simulator through the real Twilio and
SendGrid SDKs and read, at the simulator's side, who received what. The audience is built so
that every way of not receiving the first notice is present: a number Twilio refuses (the
person has an e-mail address the follow-up could reach, so sending them one would show), and
people with no contact at all.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from api_support import console
from cli_support import run
from engine_support import deliveries

from orchestrator.campaign import Campaign
from orchestrator.dispatch import DispatchSettings
from orchestrator.errors import BreachError, FactError, NotFound, StateConflict
from orchestrator.ledger import now
from orchestrator.pluginhost import PluginHost
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.simulator import Simulator
from orchestrator.simulator.cli import plugin_settings
from orchestrator.validation import validate_text

PLAYBOOK = Path(__file__).parent / "fixtures" / "playbooks" / "follow-up.yaml"
SETTINGS = DispatchSettings(
    rates={"twilio-sms": 500.0, "sendgrid-email": 500.0},
    policy=RetryPolicy(max_attempts=4, base=0.05, cap=0.2),
)
#: Twilio's magic number for an invalid destination: the simulator refuses it for good
REFUSED = "+15005550001"
#: id -> (phone, e-mail)
PEOPLE = {
    **{f"a{i}": (f"+1415555{100 + i:04d}", f"a{i}@example.org") for i in range(1, 5)},
    **{f"b{i}": (f"+1415555{120 + i:04d}", "") for i in range(1, 4)},
    **{f"c{i}": (REFUSED, f"c{i}@example.org") for i in range(1, 4)},
    **{f"d{i}": ("", f"d{i}@example.org") for i in range(1, 3)},
    **{f"e{i}": ("", "") for i in range(1, 3)},
}
#: who received the first notice: by SMS (a, b), by e-mail (d); c1 was refused (c2 and c3 share
#: its number, so they get no message of their own), e unreachable
RECEIVED = {p for p in PEOPLE if p[0] in "abd"}


def _audience(path: Path) -> Path:
    lines = ["id,name,phone,email,region"]
    lines += [f"{p},Person {p},{phone},{email},US" for p, (phone, email) in PEOPLE.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def host(simulator: Simulator) -> PluginHost:
    return PluginHost(settings=plugin_settings(simulator.url, simulator.config))


def _follow_ups(simulator: Simulator, number: int) -> tuple[dict[str, str], dict[str, str]]:
    """Update ``number``'s follow-ups as the providers accepted them: e-mail by recipient id
    (from the delivery id SendGrid carried) -> subject, SMS by phone number -> text."""
    step = f"email-follow-up@{number}"
    emails = {m.delivery_id.rsplit(":", 1)[1]: m.body or ""
              for m in simulator.accepted("sendgrid")
              if m.delivery_id and f":{step}:" in m.delivery_id}  # fmt: skip
    texts = {m.recipient: m.body or "" for m in simulator.accepted("twilio")
             if m.body and m.body.startswith(f"Example Shop update {number} ")}  # fmt: skip
    return emails, texts


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")
def test_live_follow_ups_reach_only_the_people_who_received_the_first_notice(
    simulator: Simulator, host: PluginHost, ledger_url: str, tmp_path: Path
) -> None:
    breach = Breach(ledger_url, host=host)
    audience = _audience(tmp_path / "people.csv")
    incident = breach.trigger(PLAYBOOK, audience=str(audience), mode="live",
                              facts={"records_exposed": 1200}).incident_id  # fmt: skip
    breach.run(SETTINGS, until_idle=True)
    assert breach.status(incident)["state"] == "finished"
    first = {d.recipient_id: d.state for d in deliveries(ledger_url, incident)
             if d.contact is not None}  # fmt: skip
    assert {p for p, s in first.items() if s == "sent"} == RECEIVED
    assert {p for p, s in first.items() if s == "failed"} == {"c1"}
    # c2 and c3 share c1's refused number: one message per address, they are skipped naming c1
    sharers = {d.recipient_id: d.reason for d in deliveries(ledger_url, incident)
               if d.recipient_id in ("c2", "c3")}  # fmt: skip
    assert sharers == {"c2": "same address as c1", "c3": "same address as c1"}
    first_sms = Counter(m.recipient for m in simulator.accepted("twilio"))
    first_mail = len(simulator.accepted("sendgrid"))

    # Update 1, on the finished incident: it runs again for its follow-up.
    result = breach.update(incident, {"records_exposed": "4,800"}, by="Ana Ruiz (DPO)",
                           reason="The forensic review found a second export.")  # fmt: skip
    assert result["number"] == 1 and result["notified"] == len(RECEIVED)
    assert result["changes"] == [{"fact": "records_exposed", "description": "records exposed",
                                  "old": 1200, "new": 4800}]  # fmt: skip
    assert breach.status(incident)["state"] == "running"
    breach.run(SETTINGS, until_idle=True)

    emails, texts = _follow_ups(simulator, 1)
    # e-mail to those with an address (never to c*, refused on the first notice), SMS to the rest
    assert set(emails) == {"a1", "a2", "a3", "a4", "d1", "d2"}
    assert set(texts) == {PEOPLE[p][0] for p in ("b1", "b2", "b3")}
    assert all(s.startswith("Update 1 to our notice of") for s in emails.values())
    for text in texts.values():
        assert "records exposed now 4800 (was 1200)" in text
        assert "The forensic review found a second export." in text
    status = breach.status(incident)
    assert status["state"] == "finished"
    [follow] = [s for s in status["steps"] if s["step"] == "email-follow-up@1"]
    assert follow["state"] == "done" and follow["deliveries"] == {"sent": len(RECEIVED)}

    # Update 2: a second follow-up to the same people, and nothing of the first again.
    breach.update(incident, {"data_exposed": "e-mail addresses and phone numbers"},
                  by="Ana Ruiz (DPO)")  # fmt: skip
    breach.run(SETTINGS, until_idle=True)
    emails2, texts2 = _follow_ups(simulator, 2)
    assert set(emails2) == set(emails) and set(texts2) == set(texts)
    for text in texts2.values():
        assert "data exposed now e-mail addresses and phone numbers (was e-mail addresses)" in text
    assert _follow_ups(simulator, 1) == (emails, texts)  # update 1's were not sent again
    sms_now = Counter(m.recipient for m in simulator.accepted("twilio"))
    assert sms_now - Counter(list(texts)) - Counter(list(texts2)) == first_sms  # first: once
    assert len(simulator.accepted("sendgrid")) == first_mail + 2 * len(emails)

    status = breach.status(incident)
    assert [u["number"] for u in status["updates"]] == [1, 2]
    assert status["updates"][0]["follow_ups"] == ["email-follow-up@1"]
    assert [s["step"] for s in status["steps"]][-2:] == ["email-follow-up@1", "email-follow-up@2"]
    updated = [e for e in breach.timeline(incident) if e["kind"] == "incident.updated"]
    assert [(e["actor"], e["detail"]["number"]) for e in updated] == [
        ("Ana Ruiz (DPO)", 1),
        ("Ana Ruiz (DPO)", 2),
    ]
    assert breach.verify_audit(incident).intact


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")
def test_notices_still_owed_go_out_with_the_corrected_facts_and_owe_no_follow_up(
    simulator: Simulator, host: PluginHost, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    breach = Breach(db, host=host)
    audience = _audience(tmp_path / "people.csv")
    incident = breach.trigger(PLAYBOOK, audience=str(audience), mode="live",
                              facts={"records_exposed": 1200}).incident_id  # fmt: skip
    # Updated before the engine ran: nobody has received anything yet.
    result = breach.update(incident, {"records_exposed": 4800}, by="Ana Ruiz (DPO)")
    assert result["notified"] == 0
    breach.run(SETTINGS, until_idle=True)

    assert _follow_ups(simulator, 1) == ({}, {})
    bodies = [m.body or "" for m in simulator.accepted("twilio")]
    assert len(bodies) == 3 + 4  # b* and a*: the first notice, never withdrawn
    assert all(b.startswith("Example Shop: 4800 records") for b in bodies)
    rows = [d for d in deliveries(db, incident) if d.step_id == "email-follow-up@1"]
    assert rows == []


def test_a_dry_run_update_renders_the_follow_up_into_the_outbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    audience = _audience(tmp_path / "people.csv")
    outbox = tmp_path / "outbox"
    code, _out, err = run("trigger", str(PLAYBOOK), "--audience", str(audience), "--fact",
                          "records_exposed=1200", "--dry-run", "--outbox", str(outbox), "--db",
                          db, "--json", capsys=capsys)  # fmt: skip
    assert code == 0, err
    [incident] = [i["id"] for i in Breach(db).incidents()]
    code, out, err = run("update", incident, "--fact", "records_exposed=4800", "--reason",
                         "A second export.", "--by", "Ana", "--db", db, capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert "update 1 by Ana: records_exposed: 1200 -> 4800" in out
    folder = outbox / "update-1"
    notices = [json.loads(line) for line in (folder / "notices.jsonl").read_text().splitlines()]
    [notice] = notices
    assert notice["what_happened"].startswith("Update 1 to our notice of")
    assert "records exposed is now 4800 (we said 1200)" in notice["what_happened"]
    assert "A second export." in notice["what_happened"]
    mailed = {json.loads(line)["recipient"] for line in _lines(folder / "email.jsonl")}
    texted = {json.loads(line)["recipient"] for line in _lines(folder / "sms.jsonl")}
    # A dry run renders every first notice (nothing is refused), so c1 counts as notified; c2
    # and c3 shared its number and got no first notice of their own.
    assert mailed == {"a1", "a2", "a3", "a4", "c1", "d1", "d2"}
    assert texted == {"b1", "b2", "b3"}
    assert (folder / "index.html").exists() and (outbox / "sms.jsonl").exists()

    code, out, _ = run("status", incident, "--db", db, capsys=capsys)
    assert code == 0 and "email-follow-up@1" in out and "update 1" in out
    code, out, _ = run("timeline", incident, "--db", db, "--json", capsys=capsys)
    kinds = [e["kind"] for e in json.loads(out)]
    assert kinds.count("incident.updated") == 1


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_bad_updates_are_refused_in_one_line_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    audience = _audience(tmp_path / "people.csv")
    breach = Breach(db)
    incident = breach.trigger(PLAYBOOK, audience=str(audience), mode="dry-run",
                              outbox=tmp_path / "outbox",
                              facts={"records_exposed": 1200}).incident_id  # fmt: skip

    def snapshot() -> tuple[object, ...]:
        row = breach.ledger.incident(incident)
        return (row.facts, row.facts_version, row.state, len(breach.timeline(incident)),
                len(breach.ledger.steps(incident)), len(deliveries(db, incident)))  # fmt: skip

    before = snapshot()
    cases = [
        (["INC-20200101-000000", "--fact", "records_exposed=5"], "no incident 'INC-2020"),
        ([incident, "--fact", "records_exposd=5"], "unknown fact 'records_exposd'"),
        ([incident, "--fact", "records_exposed=lots"], "expected a whole number, got 'lots'"),
        ([incident, "--fact", "records_exposed="], "give a value"),
        ([incident, "--fact", "records_exposed=1,200"], "nothing to update"),
        ([incident], "give the facts that changed"),
        ([incident, "--fact", "records_exposed"], "write it as name=value"),
    ]
    for args, expected in cases:
        code, out, err = run("update", *args, "--db", db, capsys=capsys)
        assert code == 2, (args, out, err)
        assert expected in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
        assert snapshot() == before, args
    assert "did you mean 'records_exposed'?" in run(
        "update", incident, "--fact", "records_exposd=5", "--db", db, capsys=capsys)[2]  # fmt: skip

    breach.cancel(incident, by="Ana")
    cancelled = snapshot()
    code, _out, err = run("update", incident, "--fact", "records_exposed=5", "--db", db,
                          capsys=capsys)  # fmt: skip
    assert code == 2 and "is cancelled" in err and len(err.strip().splitlines()) == 1
    assert snapshot() == cancelled
    with pytest.raises(StateConflict):
        breach.update(incident, {"records_exposed": 5})
    with pytest.raises(NotFound):
        breach.update("INC-nope", {"records_exposed": 5})


def test_the_api_refuses_what_the_session_refuses(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    breach = Breach(db)
    incident = breach.trigger(PLAYBOOK, audience=str(_audience(tmp_path / "p.csv")),
                              mode="dry-run", outbox=tmp_path / "o",
                              facts={"records_exposed": 1}).incident_id  # fmt: skip
    with pytest.raises(FactError):
        breach.update(incident, {"records_exposed": "many"})
    with pytest.raises(BreachError, match="say who"):
        breach.update(incident, {"records_exposed": 2}, by=" ")
    assert breach.update(incident, {"records_exposed": 2})["number"] == 1
    assert breach.update(incident, {"records_exposed": 3})["number"] == 2


# -- the playbook side: on_update steps and follow_up notices ------------------------------------


def _variant(old: str, new: str) -> str:
    text = PLAYBOOK.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new)


@pytest.fixture(scope="module")
def plain_host() -> PluginHost:
    return PluginHost()


def _problems(text: str, host: PluginHost) -> list[str]:
    return [str(p) for p in validate_text(text, "follow-up.yaml", host=host)[1]]


def test_the_fixture_is_valid_and_its_on_update_step_never_fires_at_trigger(
    plain_host: PluginHost,
) -> None:
    playbook, problems = validate_text(PLAYBOOK.read_text(), "follow-up.yaml", host=plain_host)
    assert problems == [] and playbook is not None
    assert [s.id for s in playbook.trigger_steps] == ["sms-notice", "email-notice"]
    instance = playbook.step("email-follow-up@3")
    assert instance is not None and instance.id == "email-follow-up@3" and instance.on_update
    assert playbook.step("sms-notice@1") is None  # not an on_update step
    assert playbook.step("email-follow-up@x") is None


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # an on_update step counts from the update, never from a deadline or a date
        ("    on_update: true\n", "    on_update: true\n    at: 2026-01-01T00:00:00Z\n",
         ":44:9: step 'email-follow-up' is on_update: its `at` is an offset from the update"),
        # a follow-up goes to people; a regulator step sends one report per step
        ("  - id: email-follow-up\n    channel: email\n    notifier: sendgrid-email\n",
         "  - id: email-follow-up\n    channel: announcement\n",
         "channel 'announcement' sends one message per step, not one per person"),
        # an on_update step needs a follow-up text in every locale
        ("    follow_up:\n", "    unused:\n",
         "unknown key 'unused'"),
        # a misspelled update field is located in the follow-up's own field
        ("{{ update.reason }}\n      sms", "{{ update.reason }} {{ update.nmber }}\n      sms",
         ":24:22: notice en.follow_up.what_happened: 'dict object' has no attribute 'nmber'"),
        # the first notice cannot read `update`: it has none
        ("impact: \"Your {{ facts.data_exposed }}", "impact: \"Your {{ update.number }}",
         "(`update` is read in notice.en.follow_up only)"),
    ],
)  # fmt: skip
def test_misuse_is_explained_where_it_is(
    old: str, new: str, expected: str, plain_host: PluginHost
) -> None:
    problems = _problems(_variant(old, new), plain_host)
    assert any(expected in p for p in problems), problems


def test_a_follow_up_must_say_what_changed(plain_host: PluginHost) -> None:
    text = PLAYBOOK.read_text()
    start = text.index("    follow_up:\n")
    silent = text[:start] + "    follow_up:\n      what_happened: We learned more.\n"
    silent += text[text.index("steps:\n") :]
    problems = _problems(silent, plain_host)
    assert any(":23:7: notice en.follow_up never reads `update`" in p for p in problems), problems


def test_each_half_needs_the_other(plain_host: PluginHost) -> None:
    no_step = _variant("    on_update: true\n", "")
    assert any("notice en.follow_up is sent by no step: mark the step that sends it `on_update: "
               "true`" in p for p in _problems(no_step, plain_host))  # fmt: skip
    text = PLAYBOOK.read_text()
    start = text.index("    follow_up:\n")
    no_text = text[:start] + text[text.index("steps:\n") :]
    problems = _problems(no_text, plain_host)
    assert any(":15:5: notice en has no `follow_up:` text, which on_update step "
               "'email-follow-up' sends" in p for p in problems), problems  # fmt: skip


def test_the_commander_api_updates_with_the_commander_role_only(tmp_path: Path) -> None:
    with console(tmp_path, engine=False) as c:
        incident = Breach(c.db).trigger(
            PLAYBOOK, audience=str(_audience(tmp_path / "people.csv")), mode="dry-run",
            outbox=tmp_path / "outbox", facts={"records_exposed": 1200},
        ).incident_id  # fmt: skip

        def post(token: str, body: object, target: str = incident) -> httpx.Response:
            return httpx.post(f"{c.url}/api/incidents/{target}/updates", headers=c.auth(token),
                              json=body, timeout=30)  # fmt: skip

        viewer = post("viewer", {"facts": {"records_exposed": 4800}})
        unknown = post("commander", {"facts": {"records_exposd": 4800}})
        empty = post("commander", {"facts": {}})
        missing = post("commander", {"facts": {"records_exposed": 1}}, "INC-20200101-000000")
        done = post("commander", {"facts": {"records_exposed": 4800}, "reason": "Recount."})
        status = httpx.get(f"{c.url}/api/incidents/{incident}", headers=c.auth("viewer")).json()
        Breach(c.db).cancel(incident, by="Ana")  # the API cancels no finished incident
        late = post("commander", {"facts": {"records_exposed": 9600}})
    assert viewer.status_code == 403 and "commander" in viewer.json()["detail"]
    assert (
        unknown.status_code == 422 and "did you mean 'records_exposed'" in unknown.json()["detail"]
    )
    assert empty.status_code == 422 and missing.status_code == 404
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["number"] == 1 and body["by"] == "commander" and body["reason"] == "Recount."
    assert [f["step"] for f in body["follow_ups"]] == ["email-follow-up@1"]
    assert status["updates"][0]["changes"][0]["new"] == 4800
    assert "email-follow-up@1" in [s["step"] for s in status["steps"]]
    assert late.status_code == 409 and "cancelled" in late.json()["detail"]
    assert [e["detail"]["via"] for e in Breach(c.db).timeline(incident)
            if e["kind"] == "incident.updated"] == ["api"]  # fmt: skip


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")
def test_a_gated_follow_up_waits_for_its_approval_by_its_instance_id(
    simulator: Simulator, host: PluginHost, tmp_path: Path
) -> None:
    gated = tmp_path / "gated.yaml"
    gated.write_text(_variant("    on_update: true\n",
                              "    on_update: true\n    approval: {role: dpo}\n"))  # fmt: skip
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    breach = Breach(db, host=host)
    incident = breach.trigger(gated, audience=str(_audience(tmp_path / "people.csv")),
                              mode="live", facts={"records_exposed": 1200}).incident_id  # fmt: skip
    breach.run(SETTINGS, until_idle=True)
    breach.update(incident, {"records_exposed": 4800}, by="Ana")
    breach.run(SETTINGS, until_idle=True)
    [follow] = [s for s in breach.status(incident)["steps"] if s["step"] == "email-follow-up@1"]
    assert follow["state"] == "awaiting_approval" and follow["waiting_for"]["missing"] == ["dpo"]
    assert _follow_ups(simulator, 1) == ({}, {})

    breach.approve(incident, "email-follow-up@1", by="Dana (DPO)", as_role="dpo")
    breach.run(SETTINGS, until_idle=True)
    emails, texts = _follow_ups(simulator, 1)
    assert set(emails) == {"a1", "a2", "a3", "a4", "d1", "d2"} and len(texts) == 3
    assert breach.status(incident)["state"] == "finished"


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")
def test_a_notice_being_sent_when_the_update_lands_is_followed_up_once_it_went(
    simulator: Simulator, host: PluginHost, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    breach = Breach(db, host=host)
    incident = breach.trigger(PLAYBOOK, audience=str(_audience(tmp_path / "people.csv")),
                              mode="live", facts={"records_exposed": 1200}).incident_id  # fmt: skip
    campaign = Campaign(breach, breach.ledger.incident(incident))
    for step_id in ("sms-notice", "email-notice"):  # fanned out, nothing sent yet
        spec = campaign.playbook.step(step_id)
        assert spec is not None
        campaign.run_step(spec, now())
    # A worker holds every SMS: handed to the provider, its answer not back yet, when the
    # update lands. Those messages were rendered with the old facts.
    claimed = breach.ledger.claim("twilio-sms", 100, lease_seconds=3.0)
    assert {r["recipient_id"] for r in claimed} == {p for p in PEOPLE if p[0] in "ab"} | {"c1"}
    result = breach.update(incident, {"records_exposed": 4800}, by="Ana")
    assert result["notified"] == 0
    [event] = [e for e in breach.timeline(incident) if e["kind"] == "incident.updated"]
    assert event["detail"]["in_flight"] == len(claimed)
    # The provider answers: sent, except the refused number.
    breach.ledger.settle([
        {"key": r["key"], "state": "failed" if r["recipient_id"][0] == "c" else "sent",
         "sent_at": now(), "reason": "refused" if r["recipient_id"][0] == "c" else None}
        for r in claimed
    ])  # fmt: skip
    # The follow-up waits until those leases end: by then every held message has settled.
    [follow] = result["follow_ups"]
    assert datetime.fromisoformat(follow["due_at"]) >= max(r["lease_until"] for r in claimed)
    time.sleep(max(0.0, (datetime.fromisoformat(follow["due_at"]) - now()).total_seconds()))
    breach.run(SETTINGS, until_idle=True)

    # a* and b* got the old facts: they get the follow-up. d*'s e-mail went out after the
    # update, with the new facts: they get none.
    emails, texts = _follow_ups(simulator, 1)
    assert set(emails) == {"a1", "a2", "a3", "a4"}
    assert set(texts) == {PEOPLE[p][0] for p in ("b1", "b2", "b3")}
