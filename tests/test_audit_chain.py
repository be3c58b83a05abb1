"""The audit trail is hash-chained: editing, removing or inserting a row is found and named;
the evidence bundle's manifest matches its files."""

from __future__ import annotations

import itertools
import json
import threading
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from engine_support import NOTIFIERS, phone_audience, standin_host, trigger_live
from factories import notice_yaml
from test_ledger_migrations import alembic

from orchestrator.commands import context, main
from orchestrator.dispatch import DispatchSettings
from orchestrator.events import IncidentEvent
from orchestrator.evidence import check_bundle
from orchestrator.ledger import DELIVERIES, AuditEvent, Ledger, settlements
from orchestrator.ledger.chain import GENESIS
from orchestrator.receipts import ReceiptOutcome, ReceiptUpdate
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.simulator import Simulator

PLAYBOOK = (
    """\
id: chained
title: Chained audit trail
version: 1
severity: high
organisation:
  name: Example Org
  contact_email: privacy@example.org
"""
    + notice_yaml("en", "de")
    + """\
regulators:
  - id: dpc
    name: Data Protection Commission
    regime: gdpr-art33
steps:
  - id: sms-all
    channel: sms
    notifier: standin-sms
    at: +0m
  - id: dpc-report
    channel: regulator
    regulator: dpc
    at: {before_deadline: dpc, margin: 12h}
"""
)


@pytest.fixture
def incident(
    ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Breach, str]:
    monkeypatch.setenv("STANDIN_URL", "http://127.0.0.1:9")
    (tmp_path / "chained.yaml").write_text(PLAYBOOK)
    breach = Breach(ledger_url, plugins_dir=NOTIFIERS)
    people = phone_audience(tmp_path / "people.csv", 20)
    result = breach.trigger(tmp_path / "chained.yaml", audience=str(people), mode="dry-run",
                            aware_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
                            facts={}, outbox=tmp_path / "outbox")  # fmt: skip
    breach.record_event(result.incident_id, "determined", by="Legal",
                        at=datetime(2026, 11, 3, 9, tzinfo=UTC))  # fmt: skip
    return breach, result.incident_id


def audit_ids(url: str, incident_id: str) -> list[int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            query = "SELECT id FROM audit_events WHERE incident_id = :i ORDER BY id"
            return list(c.scalars(sa.text(query), {"i": incident_id}))
    finally:
        engine.dispose()


def execute(url: str, sql: str, **params: object) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(sa.text(sql), params)
    finally:
        engine.dispose()


def test_every_row_follows_the_one_before(incident: tuple[Breach, str]) -> None:
    breach, incident_id = incident
    with breach:
        report = breach.verify_audit(incident_id)
        timeline = breach.timeline(incident_id)
    assert report.intact and report.rows == len(timeline) >= 5
    assert report.head == timeline[-1]["hash"]
    rows = Ledger(breach.db).events(incident_id)
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))


def test_editing_one_row_names_that_row(
    incident: tuple[Breach, str], capsys: pytest.CaptureFixture[str]
) -> None:
    breach, incident_id = incident
    url = str(breach.db)
    breach.close()
    ids = audit_ids(url, incident_id)
    edited = ids[2]
    execute(url, "UPDATE audit_events SET actor = 'someone else' WHERE id = :id", id=edited)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["--plugins-dir", str(NOTIFIERS), "audit", "verify", incident_id, "--db", url])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert f"audit row {edited} " in out and "edited" in out
    report = Breach(url).verify_audit(incident_id)
    assert (report.broken_row, report.rows) == (edited, 2)


def test_a_removed_row_is_found_at_the_row_after_it(incident: tuple[Breach, str]) -> None:
    breach, incident_id = incident
    url = str(breach.db)
    breach.close()
    ids = audit_ids(url, incident_id)
    execute(url, "DELETE FROM audit_events WHERE id = :id", id=ids[1])
    report = Breach(url).verify_audit(incident_id)
    assert report.broken_row == ids[2]
    assert "removed or inserted" in str(report.reason)


def test_concurrent_writers_keep_one_chain(incident: tuple[Breach, str]) -> None:
    breach, incident_id = incident
    ledger = breach.ledger

    def write(worker: int) -> None:
        for n in range(15):
            ledger.record(IncidentEvent(incident_id, "test.concurrent", None,
                                        {"worker": worker, "n": n}))  # fmt: skip

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = breach.verify_audit(incident_id)
    assert report.intact, report
    assert sum(e["kind"] == "test.concurrent" for e in breach.timeline(incident_id)) == 60
    breach.close()


def test_rows_written_before_the_chain_are_chained_by_the_migration(ledger_url: str) -> None:
    alembic(ledger_url, "upgrade", "0003")
    rows = [
        ("inc-1", "incident.triggered", {"mode": "live", "facts": ["a"]}),
        ("inc-2", "incident.triggered", {}),
        ("inc-1", "step.fired", {"channel": "sms", "n": 3, "ratio": 0.5, "on": True}),
    ]
    for incident_id, kind, detail in rows:
        execute(ledger_url, "INSERT INTO audit_events (incident_id, at, kind, step_id, actor, "
                "detail) VALUES (:i, :at, :k, NULL, 'orchestrator', :d)", i=incident_id,
                at=datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC), k=kind,
                d=json.dumps(detail))  # fmt: skip
    ledger = Ledger(ledger_url)  # upgrades to 0004
    try:
        for incident_id in ("inc-1", "inc-2"):
            assert ledger.verify_chain(incident_id).intact
        # New rows follow the migrated head.
        ledger.record(IncidentEvent("inc-1", "step.done", "sms"))
        report = ledger.verify_chain("inc-1")
        assert report.intact and report.rows == 3
    finally:
        ledger.close()
    alembic(ledger_url, "downgrade", "0003")
    alembic(ledger_url, "upgrade", "head")


def test_the_evidence_bundle_manifest_matches_its_files(
    incident: tuple[Breach, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    breach, incident_id = incident
    url = str(breach.db)
    breach.close()
    bundle = tmp_path / "evidence" / "bundle.zip"
    capsys.readouterr()
    main(["--plugins-dir", str(NOTIFIERS), "evidence", incident_id, "-o", str(bundle),
          "--db", url, "--json"])  # fmt: skip
    manifest = json.loads(capsys.readouterr().out)
    assert check_bundle(bundle) == []
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        assert {"timeline.json", "chain.json", "status.json", "playbook.yaml", "notices/en.json",
                "notices/de.json", "reports/dpc-report.json", "deliveries.csv",
                "manifest.json"} <= names  # fmt: skip
        assert json.loads(z.read("manifest.json")) == manifest
        deliveries = z.read("deliveries.csv").decode()
        report = json.loads(z.read("reports/dpc-report.json"))
        chain = json.loads(z.read("chain.json"))
    with Breach(url) as again:
        head = again.verify_audit(incident_id).head
    assert manifest["chain"] == {"head": head, "rows": chain["rows"], "intact": True}
    lines = deliveries.strip().splitlines()
    assert len(lines) == 1 + 20 + 1  # header, 20 people, the regulator filing
    assert "+1415555" not in deliveries  # contacts are masked
    assert all(len(line.split(",")[13]) == 64 for line in lines[1:] if ",sms," in line)
    assert report["filing"]["report"] and report["receipt"]["state"]
    # A file changed after the bundle was written no longer matches the manifest.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data.replace(b"sms-all", b"sms-xxx") if name == "deliveries.csv"
                         else data)  # fmt: skip
    assert check_bundle(tampered) == ["deliveries.csv: its SHA-256 differs from the manifest"]


# -- settled deliveries: one chained row per batch, checked against the deliveries table --------

FAST = DispatchSettings(send_timeout=2.0, lease_seconds=5.0, concurrency=4,
                        policy=RetryPolicy(max_attempts=30, base=0.01, cap=0.05),
                        circuit_threshold=1000)  # fmt: skip
PEOPLE = 50  # the stand-in sends 20 a batch: a few settle batches, some retried


@pytest.fixture
def live(ledger_url: str, simulator: Simulator, tmp_path: Path) -> tuple[str, str, int]:
    """A live SMS campaign to 50 people through the simulator, half of its requests failing
    (so some settle batches hold retries); returns (ledger URL, incident id, requests sent)."""
    simulator.configure("standin", error_rate=0.5, error_statuses=(503,), seed=2)
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", PEOPLE), host,
                            ledger_url)  # fmt: skip
    with Breach(ledger_url, host=host) as breach:
        breach.run(FAST, until_idle=True)
    return ledger_url, incident, len(simulator.requests("standin"))


def settled_rows(url: str, incident_id: str) -> list[AuditEvent]:
    return [e for e in Ledger(url).events(incident_id) if e.kind == "deliveries.settled"]


def test_each_settle_batch_is_one_chained_row_with_its_digest(live: tuple[str, str, int]) -> None:
    url, incident_id, requests = live
    rows = settled_rows(url, incident_id)
    # one row per settle, not per message: a batch, or the batches that finished together
    assert 1 <= len(rows) <= requests < PEOPLE
    sent = sum(r.detail["outcomes"].get("sent", 0) for r in rows)
    retried = sum(r.detail["outcomes"].get("pending", 0) for r in rows)
    assert sent == PEOPLE and retried > 0  # the faults were retried, and counted
    assert sum(r.detail["deliveries"] for r in rows) == PEOPLE  # retries are not digested
    with Ledger(url).engine.connect() as c:
        found = c.execute(sa.select(DELIVERIES.c.key, DELIVERIES.c.state,
                                    DELIVERIES.c.provider_message_id)).all()  # fmt: skip
    first = rows[0]
    ids = set(settlements.expand(first.detail["ids"]))
    with Ledger(url).engine.connect() as c:
        mine = c.execute(sa.select(DELIVERIES.c.key, DELIVERIES.c.state,
                                   DELIVERIES.c.provider_message_id)
                         .where(DELIVERIES.c.id.in_(ids))).all()  # fmt: skip
    assert first.detail["sha256"] == settlements.digest([tuple(r) for r in mine])
    assert len(found) == PEOPLE and {r.state for r in found} == {"sent"}
    report = Breach(url).verify_audit(incident_id)
    assert report.intact and (report.batches, report.deliveries) == (len(rows), PEOPLE)


def test_a_delivery_edited_after_it_settled_names_its_batch(
    live: tuple[str, str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    url, incident_id, _ = live
    batch = [r for r in settled_rows(url, incident_id) if r.detail["ids"]][-1]
    edited = settlements.expand(batch.detail["ids"])[0]
    execute(url, "UPDATE deliveries SET state = 'delivered' WHERE id = :id", id=edited)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["--plugins-dir", str(NOTIFIERS), "audit", "verify", incident_id, "--db", url])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert f"audit row {batch.id} (deliveries.settled)" in out and "changed after it" in out
    report = Breach(url).verify_audit(incident_id)
    assert (report.broken_row, report.deliveries_changed) == (batch.id, True)
    # the provider message id is covered as well
    execute(url, "UPDATE deliveries SET state = 'sent' WHERE id = :id", id=edited)
    assert Breach(url).verify_audit(incident_id).intact
    execute(url, "UPDATE deliveries SET provider_message_id = 'forged' WHERE id = :id", id=edited)
    assert Breach(url).verify_audit(incident_id).broken_row == batch.id


def test_an_edited_settlement_row_is_named_as_edited(live: tuple[str, str, int]) -> None:
    url, incident_id, _ = live
    batch = settled_rows(url, incident_id)[0]
    forged = {**batch.detail, "outcomes": {"sent": 1}}
    execute(url, "UPDATE audit_events SET detail = :d WHERE id = :id",
            d=json.dumps(forged), id=batch.id)  # fmt: skip
    report = Breach(url).verify_audit(incident_id)
    assert report.broken_row == batch.id and not report.deliveries_changed
    assert "edited" in str(report.reason)


def test_receipts_that_change_states_are_evidenced_too(live: tuple[str, str, int]) -> None:
    url, incident_id, _ = live
    with Ledger(url).engine.connect() as c:
        sent = c.execute(sa.select(DELIVERIES.c.id, DELIVERIES.c.key,
                                   DELIVERIES.c.provider_message_id)
                         .order_by(DELIVERIES.c.id).limit(4)).all()  # fmt: skip
    outcomes = [ReceiptOutcome.DELIVERED, ReceiptOutcome.DELIVERED, ReceiptOutcome.BOUNCE]
    updates = [ReceiptUpdate(outcome, delivery_key=key, provider_id=pid)
               for outcome, (_, key, pid) in zip(outcomes, sent, strict=False)]  # fmt: skip
    # the fourth only overtakes nothing: a receipt for an unknown message changes nothing
    updates.append(ReceiptUpdate(ReceiptOutcome.DELIVERED, provider_id="not-ours"))
    with Breach(url) as breach:
        assert breach.apply_receipts(updates) == 3
        (row,) = [e for e in Ledger(url).events(incident_id) if e.kind == "deliveries.receipted"]
        assert row.detail["outcomes"] == {"delivered": 2, "failed": 1}
        assert settlements.expand(row.detail["ids"]) == [i for i, _, _ in sent[:3]]
        report = breach.verify_audit(incident_id)
    # the settle batches still verify: their rows a receipt changed are read as sent
    assert report.intact and report.deliveries == PEOPLE + 3
    execute(url, "UPDATE deliveries SET state = 'failed' WHERE id = :id", id=sent[0][0])
    assert Breach(url).verify_audit(incident_id).broken_row == row.id


def test_the_timeline_table_groups_settle_batches(
    live: tuple[str, str, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, incident_id, _ = live
    monkeypatch.setattr(context.out, "_width", 200)  # one table line per row, as on a wide terminal
    batches = len(settled_rows(url, incident_id))
    capsys.readouterr()
    main(["--plugins-dir", str(NOTIFIERS), "timeline", incident_id, "--db", url, "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert sum(e["kind"] == "deliveries.settled" for e in listed) == batches
    lines = settlements.grouped_timeline(listed)
    grouped = [e for e in lines if e["kind"] == "deliveries.settled"]
    assert len(grouped) < batches
    assert sum(e["batches"] for e in grouped) == batches
    assert sum(e["outcomes"].get("sent", 0) for e in grouped) == PEOPLE
    main(["--plugins-dir", str(NOTIFIERS), "timeline", incident_id, "--db", url])
    table = capsys.readouterr().out
    assert table.count("deliveries.settled") == len(grouped) and f"sent={PEOPLE}" in table


def test_a_live_incidents_bundle_carries_the_batch_check(
    live: tuple[str, str, int], tmp_path: Path
) -> None:
    url, incident_id, _ = live
    with Breach(url, plugins_dir=NOTIFIERS) as breach:
        manifest = breach.evidence(incident_id, tmp_path / "bundle.zip")
    assert check_bundle(tmp_path / "bundle.zip") == []
    with zipfile.ZipFile(tmp_path / "bundle.zip") as z:
        chain = json.loads(z.read("chain.json"))
        timeline = json.loads(z.read("timeline.json"))
    assert chain["intact"] and chain["deliveries"] == PEOPLE
    assert chain["batches"] == sum(e["kind"] == "deliveries.settled" for e in timeline)
    assert manifest["chain"]["head"] == chain["head"] == timeline[-1]["hash"]
