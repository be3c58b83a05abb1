"""One message per address per step: people who share a phone, an inbox or a device.

A dry run and live campaigns through the real SDKs against the simulator, on SQLite and
PostgreSQL; a fan-out interrupted between batches still skips the later sharers of an address
whose holder an earlier batch recorded.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cli_support import run
from engine_support import deliveries
from factories import notice_yaml
from sqlalchemy import update

from orchestrator import fanout
from orchestrator.audience import AudienceSource
from orchestrator.campaign import Campaign
from orchestrator.dispatch import DispatchSettings
from orchestrator.ledger import DELIVERIES, DUPLICATE_REASON, now
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.sharing import SAME_ADDRESS, address_key, canonical
from orchestrator.simulator import Simulator
from orchestrator.simulator.cli import plugin_settings

PLAYBOOK = """\
id: shared-addresses
title: Shared addresses
version: 1
severity: high
organisation: {name: Example Org, contact_email: privacy@example.org}
notice:
  en:
    what_happened: On 1 December someone copied our customer table.
    impact: Your e-mail address was exposed.
    measures: We fixed the bug.
    advice: Watch out for phishing.
    contact: privacy@example.org
    greeting: "Dear {{ recipient.name }},"
    sms: "Example Org to {{ recipient.name }}: your e-mail address was exposed."
steps:
  - {id: sms-all, channel: sms, at: +0m, fallback: email}
  - {id: push-all, channel: push, at: +0m}
  - {id: sms-each, channel: sms, at: +1h, dedupe: none}
"""

# A family of six on one landline written four ways; two people on one inbox with different
# case; a non-ASCII mailbox name that differs in case only (kept apart); two on one device.
PEOPLE = """\
id,name,phone,email,push_token,region
f1,Ana,+1 415 555 0100,,tok-family,US
f2,Ben,(415) 555-0100,,tok-family,US
f3,Cleo,4155550100,,,US
f4,Dan,+14155550100,,,US
f5,Eve,415-555-0100,,,US
f6,Fin,+1 (415) 555-0100,,,US
s1,Gus,+14155550101,,token-s1-0001,US
s2,Hal,+14155550102,,token-s2-0002,US
m1,Ida,,Ida.Lee@Example.ORG,,US
m2,Jo,,ida.lee@example.org,,US
m3,Kai,,Jürgen@example.org,,DE
m4,Lu,,jürgen@example.org,,DE
m5,Mo,,mo@example.org,,US
f1,Ana again,+14155550100,,,US
s2,Hal again,+14155550100,,,US
"""


def test_the_same_address_in_any_written_form_is_one_address() -> None:
    assert canonical("email", "Ida.Lee@Example.ORG") == "ida.lee@example.org"
    assert canonical("email", "Jürgen@example.org") == "Jürgen@example.org"  # case kept
    assert canonical("phone", "+14155550100") == "+14155550100"

    def key(contact: str, address: str, step: str = "s1") -> bytes:
        return address_key("INC-1", step, contact, address)

    assert key("email", "Ida.Lee@example.org") == key("email", "ida.lee@example.org")
    assert key("email", "Jürgen@example.org") != key("email", "jürgen@example.org")
    # a push token is case-sensitive, and a phone number is never an e-mail address
    assert key("push_token", "Tok") != key("push_token", "tok")
    assert key("phone", "+14155550100") != key("push_token", "+14155550100")
    # the key names its step: one index over every step keeps each step's addresses apart
    assert key("phone", "+14155550100") != key("phone", "+14155550100", step="s2")
    assert address_key("INC-2", "s1", "phone", "+1") != address_key("INC-1", "s1", "phone", "+1")
    assert len(key("phone", "+14155550100")) == 16


def _write(tmp_path: Path, playbook: str = PLAYBOOK, people: str = PEOPLE) -> tuple[Path, Path]:
    book = tmp_path / "shared.yaml"
    book.write_text(playbook, encoding="utf-8")
    audience = tmp_path / "people.csv"
    audience.write_text(people, encoding="utf-8")
    return book, audience


def _reasons(db: str, incident: str, step: str) -> dict[str, str | None]:
    return {d.recipient_id: d.reason for d in deliveries(db, incident) if d.step_id == step}


def test_a_dry_run_sends_one_message_per_address_and_lists_the_sharers(
    ledger_url: str, tmp_path: Path
) -> None:
    book, audience = _write(tmp_path)
    outbox = tmp_path / "outbox"
    with Breach(ledger_url) as breach:
        result = breach.trigger(book, audience=str(audience), mode="dry-run", outbox=outbox)
        status = breach.status(result.incident_id)
    steps = {s["step"]: s for s in result.summary["steps"]}

    sms = _reasons(ledger_url, result.incident_id, "sms-all")
    # the first of the family (in audience order) holds the number, whichever way it was written
    assert {who: sms[who] for who in ("f2", "f3", "f4", "f5", "f6")} == dict.fromkeys(
        ("f2", "f3", "f4", "f5", "f6"), "same address as f1"
    )
    assert sms["f1"] is None and sms["s1"] is None and sms["s2"] is None
    # people without a phone go to the fallback channel and are deduped on its address
    assert sms["m1"] is None and sms["m2"] == "same address as m1"
    assert sms["m3"] is None and sms["m4"] is None and sms["m5"] is None
    # the audience listing f1 twice is still a duplicate id, not a sharer
    assert sms["f1#row14"] == DUPLICATE_REASON
    assert sms["s2#row15"] == DUPLICATE_REASON  # even on a number someone else holds

    push = _reasons(ledger_url, result.incident_id, "push-all")
    assert push["f2"] == "same address as f1" and push["s1"] is None and push["s2"] is None

    each = _reasons(ledger_url, result.incident_id, "sms-each")
    assert [who for who, reason in each.items() if reason and "same address" in reason] == []

    # the outbox holds exactly one message per address, the personal one of its holder
    lines = [json.loads(line) for line in (outbox / "sms.jsonl").read_text().splitlines()]
    by_step = Counter(line["step"] for line in lines)
    assert by_step == {"sms-all": 3, "sms-each": 8}
    assert {line["recipient"] for line in lines if line["step"] == "sms-all"} == {"f1", "s1", "s2"}
    emails = [json.loads(line) for line in (outbox / "email.jsonl").read_text().splitlines()]
    assert sorted(e["recipient"] for e in emails) == ["m1", "m3", "m4", "m5"]

    # the counts: the dry-run summary and `breach status` say how many shared an address
    assert steps["sms-all"]["same_address"] == 6
    assert steps["sms-all"]["skipped_reasons"][SAME_ADDRESS] == 6
    assert (
        sum(steps["sms-all"]["skipped_reasons"].values()) == steps["sms-all"]["states"]["skipped"]
    )
    assert steps["sms-all"]["channels"] == {"sms": 3, "email": 4}
    assert steps["push-all"]["same_address"] == 1
    assert steps["sms-each"]["same_address"] == 0
    by_status = {s["step"]: s for s in status["steps"]}
    assert by_status["sms-all"]["same_address"] == 6
    assert by_status["sms-all"]["reasons"][SAME_ADDRESS] == 6
    assert by_status["sms-all"]["deliveries"] == {"rendered": 7, "skipped": 8}


class Interrupted(Exception):
    """Stands for the process dying in the middle of a fan-out."""


class DiesAfter:
    """An audience that stops after ``rows`` people, as a killed process would."""

    description = "an audience read by a process that dies"

    def __init__(self, inner: AudienceSource, rows: int) -> None:
        self.inner, self.rows = inner, rows

    def __iter__(self) -> Any:
        for person in self.inner:
            if person.row > self.rows:
                raise Interrupted
            yield person


def _interrupted_then_resumed(breach: Breach, incident: str, step: str, dies_after: int) -> None:
    """Fan ``step`` out until the audience dies after ``dies_after`` rows (batches of 4 people
    recorded so far stay recorded), then let the engine resume it and deliver everything."""
    campaign = Campaign(breach, breach.ledger.incident(incident))
    spec = campaign.playbook.step(step)
    assert spec is not None
    real: AudienceSource = campaign.audience
    campaign._audience = DiesAfter(real, dies_after)
    with pytest.raises(Interrupted):
        campaign.run_step(spec, now())
    recorded = breach.ledger.step(incident, step)
    assert recorded.state == "running" and not recorded.fanout_done and recorded.fanout_rows


LIVE = (
    """\
id: shared-live
title: Shared addresses, live
version: 1
severity: high
organisation: {name: Example Org, contact_email: privacy@example.org}
"""
    + notice_yaml("en")
    + """\
steps:
  - {id: sms-all, channel: sms, at: +0m, fallback: email}
"""
)


def _household_audience(households: int, size: int) -> str:
    """``households`` phone numbers of ``size`` people each, the members spread through the
    audience (member k of every household after all members k-1), and every tenth household
    on one e-mail address without a phone."""
    lines = ["id,name,phone,email,region"]
    for member in range(size):
        for h in range(households):
            if h % 10 == 0:
                lines.append(f"h{h}-{member},P{member},,Home{h}@Example.org,US")
            else:
                lines.append(f"h{h}-{member},P{member},+1415{5550100 + h},,US")
    return "\n".join(lines) + "\n"


def test_a_resumed_fan_out_still_skips_the_sharers_of_addresses_recorded_before(
    ledger_url: str, tmp_path: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    households, size = 20, 3
    book, audience = _write(tmp_path, LIVE, _household_audience(households, size))
    monkeypatch.setattr(fanout, "BATCH", 4)  # many batches, so the interruption falls between
    policy = RetryPolicy(max_attempts=5, base=0.01, cap=0.05)
    settings = DispatchSettings(send_timeout=10, concurrency=4, policy=policy)
    with Breach(ledger_url, settings=plugin_settings(simulator.url, simulator.config)) as breach:
        incident = breach.trigger(book, audience=str(audience), mode="live").incident_id
        # dies in the middle of the second round of members: every holder is recorded by then
        _interrupted_then_resumed(breach, incident, "sms-all", households + 7)
        breach.run(settings, until_idle=True)
        status = breach.status(incident)
        # a message on the household's phone reached each of them: none counts as unreachable
        reached = breach.ledger.reached(incident)
    simulator.drain()

    assert reached == households * size
    rows = [d for d in deliveries(ledger_url, incident) if d.step_id == "sms-all"]
    assert len(rows) == households * size  # nobody lost, nobody twice
    holders = {d.recipient_id for d in rows if d.state == "sent"}
    assert holders == {f"h{h}-0" for h in range(households)}
    sharers = {d.recipient_id: d.reason for d in rows if d.state == "skipped"}
    assert sharers == {
        f"h{h}-{m}": f"same address as h{h}-0" for h in range(households) for m in range(1, size)
    }
    # the providers got one message per address, exactly
    accepted = Counter(m.recipient.lower() for m in simulator.accepted())
    assert len(accepted) == households and set(accepted.values()) == {1}, accepted
    [step] = [s for s in status["steps"] if s["step"] == "sms-all"]
    assert step["same_address"] == households * (size - 1)
    assert step["deliveries"] == {"sent": households, "skipped": households * (size - 1)}


def test_dedupe_none_sends_to_every_person_even_on_one_number(
    ledger_url: str, tmp_path: Path, simulator: Simulator
) -> None:
    book, audience = _write(
        tmp_path, LIVE.replace("fallback: email}", "fallback: email, dedupe: none}"),
        _household_audience(3, 2),
    )  # fmt: skip
    with Breach(ledger_url, settings=plugin_settings(simulator.url, simulator.config)) as breach:
        incident = breach.trigger(book, audience=str(audience), mode="live").incident_id
        breach.run(DispatchSettings(send_timeout=10), until_idle=True)
    simulator.drain()
    assert Counter(d.state for d in deliveries(ledger_url, incident)) == {"sent": 6}
    assert len(simulator.accepted()) == 6


def test_the_ledger_refuses_a_second_holder_of_an_address(ledger_url: str, tmp_path: Path) -> None:
    """The unique index is the last word: rows that both claim an address cannot both stay."""
    book, audience = _write(tmp_path, LIVE, _household_audience(1, 1))
    with Breach(ledger_url) as breach:
        incident = breach.trigger(book, audience=str(audience), mode="dry-run",
                                  outbox=tmp_path / "o").incident_id  # fmt: skip
        [row] = [d for d in deliveries(ledger_url, incident) if d.step_id == "sms-all"]
        assert row.address_key is not None
        stamp = now()
        twin = {"key": f"{incident}:sms-all:twin", "incident_id": incident,
                "step_id": "sms-all", "recipient_id": "twin", "channel": "email",
                "state": "pending", "address_key": row.address_key, "created_at": stamp,
                "updated_at": stamp}  # fmt: skip
        # a conflicting batch goes row by row: the twin is kept, as a skipped row holding nothing
        assert breach.ledger.insert_deliveries([twin]) == [0]
    kept = [d for d in deliveries(ledger_url, incident) if d.recipient_id.startswith("twin")]
    assert [(d.state, d.address_key) for d in kept] == [("skipped", None)]


def test_sharers_follow_their_holder_into_the_fallback_on_their_own_address(
    ledger_url: str, tmp_path: Path, simulator: Simulator
) -> None:
    """The number the family shares refuses SMS: the message none of them got is owed to each
    through the fallback, on their own e-mail addresses (deduped there too)."""
    book, audience = _write(
        tmp_path,
        LIVE.replace("fallback: email}", "fallback: {channel: email, on: [failed]}}"),
        "id,name,phone,email,region\n"
        "k1,Ana,+15005550004,k1@example.org,US\n"  # the simulator's opted-out number
        "k2,Ben,+15005550004,k2@example.org,US\n"
        "k3,Cleo,+15005550004,K1@Example.org,US\n"
        "o1,Dan,+14155550150,o1@example.org,US\n",
    )  # fmt: skip
    settings = DispatchSettings(send_timeout=10, poll_interval=0.05)
    with Breach(ledger_url, settings=plugin_settings(simulator.url, simulator.config)) as breach:
        incident = breach.trigger(book, audience=str(audience), mode="live").incident_id
        breach.run(settings, until_idle=True)
        status = breach.status(incident)
    simulator.drain()

    rows = {(d.step_id, d.recipient_id): (d.state, d.reason) for d in
            deliveries(ledger_url, incident)}  # fmt: skip
    assert rows[("sms-all", "k1")][0] == "failed"
    assert rows[("sms-all", "k2")] == ("skipped", "same address as k1")
    assert rows[("sms-all", "k3")] == ("skipped", "same address as k1")
    assert rows[("sms-all", "o1")] == ("sent", None)
    fallback = {who: state for (step, who), state in rows.items() if step == "sms-all+fallback"}
    assert fallback == {"k1": ("sent", None), "k2": ("sent", None),
                        "k3": ("skipped", "same address as k1")}  # fmt: skip
    assert sorted(m.recipient for m in simulator.accepted("sendgrid")) == [
        "k1@example.org", "k2@example.org"]  # fmt: skip
    assert status["state"] == "finished"


def test_the_command_line_counts_the_sharers_and_explains_possible_duplicates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book, audience = _write(tmp_path)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    code, out, err = run("trigger", str(book), "--audience", str(audience), "--dry-run",
                         "--outbox", str(tmp_path / "o"), "--db", db, capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert "sms-all: skipped 6 — same address as another recipient" in " ".join(out.split())
    with Breach(db) as breach, breach.ledger.transaction() as connection:
        [incident] = breach.incidents()
        # as if f1's send had been answered by nothing and tried again
        connection.execute(
            update(DELIVERIES).where(DELIVERIES.c.recipient_id == "f1").values(reclaims=1)
        )
    code, out, err = run("status", incident["id"], "--db", db, capsys=capsys)
    assert code == 0, err
    text = " ".join(out.split())
    assert "sms-all: 6 skipped: one message per address, another person has the same one" in text
    assert "possible duplicates (sends that may have reached the provider twice" in text


def test_staging_dedupes_on_the_peoples_own_addresses_not_the_test_ones(
    ledger_url: str, tmp_path: Path
) -> None:
    """--redirect-to sends everyone to a few test phones: the dedupe still sees who shares."""
    book, audience = _write(tmp_path)
    testers = tmp_path / "testers.txt"
    testers.write_text("+14155550199\nqa@example.org\ntoken-qa-00001\n")
    with Breach(ledger_url) as breach:
        result = breach.trigger(book, audience=str(audience), mode="dry-run",
                                outbox=tmp_path / "o", redirect_to=testers)  # fmt: skip
    sms = _reasons(ledger_url, result.incident_id, "sms-all")
    assert sorted(who for who, reason in sms.items() if reason is None) == [
        "f1", "m1", "m3", "m4", "m5", "s1", "s2"]  # fmt: skip
    assert {d.contact for d in deliveries(ledger_url, result.incident_id) if d.contact} == {
        "+14155550199", "qa@example.org", "token-qa-00001"}  # fmt: skip
