"""The fan-out's bulk insert and the dispatcher's shared settlements, on a real ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from factories import notice_yaml
from sqlalchemy import select

from orchestrator.dispatch import Settler
from orchestrator.errors import LedgerError
from orchestrator.ledger import Delivery, DeliveryState, Ledger
from orchestrator.session import Breach
from orchestrator.simulator import SimulatorConfig
from orchestrator.simulator.cli import plugin_settings

PLAYBOOK = (
    """\
id: bulk
title: Bulk
version: 1
severity: high
organisation: {name: Example Org, contact_email: privacy@example.org}
"""
    + notice_yaml("en")
    + """\
steps:
  - {id: sms-all, channel: sms, at: +0m}
"""
)


def _incident(tmp_path: Path, url: str) -> str:
    playbook = tmp_path / "bulk.yaml"
    playbook.write_text(PLAYBOOK)
    people = tmp_path / "people.csv"
    people.write_text("id,phone\np0,+14155550100\n")
    # settings only to pass the live pre-flight: nothing is sent
    with Breach(url, settings=plugin_settings("http://127.0.0.1:9", SimulatorConfig())) as breach:
        return breach.trigger(playbook, audience=str(people), mode="live").incident_id


def _row(incident: str, i: int, stamp: datetime, **extra: object) -> dict[str, object]:
    return {"key": f"{incident}:s:{i}", "incident_id": incident, "step_id": "sms-all",
            "recipient_id": f"r{i}", "recipient_row": i + 1, "channel": "sms",
            "notifier": "twilio-sms", "via_fallback": i % 2 == 1, "locale": "en",
            "contact": f"+1415555{i:04d}", "state": DeliveryState.PENDING.value,
            "content_hash": f"{i:064x}", "created_at": stamp, "updated_at": stamp,
            "next_attempt_at": stamp, **extra}  # fmt: skip


def test_rows_read_back_exactly_as_written(tmp_path: Path, ledger_url: str) -> None:
    incident = _incident(tmp_path, ledger_url)
    ledger = Ledger(ledger_url)
    stamps = [datetime(2026, 11, 30, 8, 0, tzinfo=UTC),  # no microseconds
              datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC),
              datetime(2026, 11, 30, 10, 0, tzinfo=timezone(timedelta(hours=2)))]  # fmt: skip
    rows = [_row(incident, i, stamps[i % 3], recipient_data=(
        {"name": "Ana", "attrs": {"tier": 2}} if i == 1 else None)) for i in range(6)]  # fmt: skip

    assert ledger.insert_deliveries(rows) == []

    with ledger.session() as s:
        got = {d.recipient_id: d for d in s.scalars(select(Delivery))}
    for i, row in enumerate(rows):
        d = got[f"r{i}"]
        assert d.created_at == d.updated_at == d.next_attempt_at == stamps[i % 3]
        assert d.created_at.tzinfo is not None
        assert d.via_fallback is (i % 2 == 1)
        assert d.recipient_data == row["recipient_data"]
        assert (d.contact, d.content_hash, d.attempts) == (row["contact"], row["content_hash"], 0)
    # the same key again is still found and kept apart as a duplicate
    assert ledger.insert_deliveries([_row(incident, 2, stamps[0])]) == [0]


def test_settlements_of_concurrent_batches_are_each_written(
    tmp_path: Path, ledger_url: str
) -> None:
    incident = _incident(tmp_path, ledger_url)
    ledger = Ledger(ledger_url)
    now = datetime.now(UTC)
    ledger.insert_deliveries([_row(incident, i, now) for i in range(40)])
    claimed = ledger.claim("twilio-sms", 40, 60)
    assert len(claimed) == 40
    settler = Settler(ledger)

    async def run() -> None:
        await asyncio.gather(*(settler.settle([
            {"key": row["key"], "state": DeliveryState.SENT.value, "provider_message_id": f"SM{n}",
             "sent_at": now}]) for n, row in enumerate(claimed)))  # fmt: skip

    asyncio.run(run())
    with ledger.session() as s:
        states = {d.key: (d.state, d.provider_message_id) for d in s.scalars(select(Delivery))}
    assert {states[row["key"]] for row in claimed} == {
        (DeliveryState.SENT.value, f"SM{n}") for n in range(40)
    }


def test_a_failed_write_fails_every_batch_that_waited_for_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    incident = _incident(tmp_path, url)
    ledger = Ledger(url)
    ledger.insert_deliveries([_row(incident, i, datetime.now(UTC)) for i in range(3)])
    rows = ledger.claim("twilio-sms", 3, 60)
    settler = Settler(ledger)
    with ledger.transaction() as connection:  # a ledger that cannot take the write
        connection.exec_driver_sql("ALTER TABLE deliveries RENAME TO gone")

    async def run() -> list[BaseException | None]:
        return await asyncio.gather(*(settler.settle([{"key": r["key"], "state": "sent"}])
                                      for r in rows), return_exceptions=True)  # fmt: skip

    errors = asyncio.run(run())
    assert len(errors) == 3 and all(isinstance(e, LedgerError) for e in errors)
    # the statements read straight from the driver fail the same way
    with pytest.raises(LedgerError, match="no such table: deliveries"):
        ledger.claim("twilio-sms", 3, 60)


def test_a_value_copy_refuses_is_a_ledger_error_not_a_driver_traceback(
    tmp_path: Path, ledger_url: str
) -> None:
    if not ledger_url.startswith("postgresql"):
        pytest.skip("COPY is PostgreSQL's")
    incident = _incident(tmp_path, ledger_url)
    ledger = Ledger(ledger_url)
    row = _row(incident, 1, datetime.now(UTC))
    row["key"] += "\x00"  # the audience refuses such an id; the ledger must say so too
    with pytest.raises(LedgerError, match="refused a value: invalid byte sequence"):
        ledger.insert_deliveries([row])
    ledger.close()


def test_a_postgresql_fan_out_has_its_rows_analyzed_as_it_grows(
    tmp_path: Path, ledger_url: str
) -> None:
    """Planned on the statistics of a nearly empty table, the same-address lookup read every
    row of the step for each batch: 2,500 people a second instead of 28,000."""
    if not ledger_url.startswith("postgresql"):
        pytest.skip("PostgreSQL plans by statistics")
    import time

    from orchestrator.campaign import Campaign
    from orchestrator.ledger import ANALYZE_AFTER_ROWS, now

    people = tmp_path / "people.csv"
    with people.open("w") as out:
        out.write("id,phone\n")
        out.writelines(f"p{i},+1415{2000000 + i}\n" for i in range(ANALYZE_AFTER_ROWS + 500))
    breach = Breach(ledger_url, settings=plugin_settings("http://127.0.0.1:9", SimulatorConfig()))
    playbook = tmp_path / "bulk.yaml"
    playbook.write_text(PLAYBOOK)
    incident = breach.trigger(playbook, audience=str(people), mode="live").incident_id
    campaign = Campaign(breach, breach.ledger.incident(incident))
    counts = "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'deliveries'"
    with breach.ledger.transaction() as c:
        before = c.exec_driver_sql(counts).scalar_one()
    campaign.run_step(campaign.playbook.steps[0], now())
    for _ in range(20):  # the statistics are reported a moment after the command
        with breach.ledger.transaction() as c:
            after = c.exec_driver_sql(counts).scalar_one()
            tuples = c.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE relname = 'deliveries'"
            ).scalar_one()
        if after > before:
            break
        time.sleep(0.1)
    assert after == before + 1  # once at 10,000 rows; the next at 20,000
    assert tuples >= ANALYZE_AFTER_ROWS
    breach.close()


def test_the_notifiers_with_work_are_those_pending_counts_counts(
    tmp_path: Path, ledger_url: str
) -> None:
    """``active_notifiers`` answers what ``pending_counts`` does, without counting: pending and
    sending rows make a notifier active; settled rows and rows without a notifier do not."""
    incident = _incident(tmp_path, ledger_url)
    ledger = Ledger(ledger_url)
    stamp = datetime.now(UTC)
    rows = [
        _row(incident, 0, stamp, notifier="a-sms"),
        _row(incident, 1, stamp, notifier="b-sms", state=DeliveryState.SENDING.value),
        _row(incident, 2, stamp, notifier="c-sms", state=DeliveryState.SENT.value),
        _row(incident, 3, stamp, notifier=None, state=DeliveryState.SKIPPED.value),
        _row(incident, 4, stamp, notifier="d-sms", state=DeliveryState.DEAD.value),
        _row(incident, 5, stamp, notifier="d-sms", state=DeliveryState.PENDING.value),
    ]
    assert ledger.active_notifiers() == set()
    ledger.insert_deliveries(rows)
    assert ledger.active_notifiers() == set(ledger.pending_counts()) == {"a-sms", "b-sms",
                                                                          "d-sms"}  # fmt: skip
    ledger.settle([{"key": rows[0]["key"], "state": "sent"}])  # only a `sending` row settles
    ledger.claim("a-sms", 10, 60)
    ledger.settle([{"key": rows[0]["key"], "state": "sent"}])
    assert ledger.active_notifiers() == set(ledger.pending_counts()) == {"b-sms", "d-sms"}
    ledger.close()


def test_per_row_updates_store_what_sqlalchemy_would(tmp_path: Path, ledger_url: str) -> None:
    """``execute_many`` hands the driver parameters it converted itself (tuples on SQLite, dicts
    on PostgreSQL): each settled row must hold exactly what SQLAlchemy's own executemany of the
    same statement writes for its twin, and the count must be every row's."""
    from orchestrator.ledger import _settle_statements
    from orchestrator.ledger.bulk import execute_many

    incident = _incident(tmp_path, ledger_url)
    ledger = Ledger(ledger_url)
    start = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    ledger.insert_deliveries([_row(incident, i, start, state=DeliveryState.SENDING.value)
                              for i in range(12)])  # fmt: skip
    stamps = [datetime(2026, 11, 30, 9, 0, tzinfo=UTC),  # no microseconds
              datetime(2026, 11, 30, 9, 0, 0, 654321, tzinfo=UTC),
              datetime(2026, 11, 30, 11, 0, tzinfo=timezone(timedelta(hours=2)))]  # fmt: skip
    now = datetime(2026, 11, 30, 9, 1, 2, 345678, tzinfo=UTC)

    def outcome(i: int, twin: int) -> dict[str, object]:
        failed = twin % 2 == 1
        return {"k": f"{incident}:s:{i}", "state": "pending" if failed else "sent",
                "pid": None if failed else f"SM{twin}", "error": "503" if failed else None,
                "reason": None, "nxt": stamps[twin % 3] if failed else None,
                "sent": None if failed else stamps[twin % 3], "now": now,
                "maybe": twin % 3 == 0}  # fmt: skip

    statement = _settle_statements().one
    with ledger.transaction() as connection:
        ours = execute_many(connection, statement, [outcome(i, i) for i in range(6)])
        theirs = connection.execute(statement, [outcome(i + 6, i) for i in range(6)]).rowcount
    assert ours == theirs == 6

    # SQLite's text as stored (a stamp written differently must show), PostgreSQL's values
    with ledger.transaction() as connection:
        found = (connection.exec_driver_sql("SELECT * FROM deliveries") if ledger_url.startswith(
            "sqlite") else connection.execute(select(Delivery.__table__)))  # fmt: skip
        stored = {r.recipient_id: r._asdict() for r in found}
    differ = {"id", "key", "recipient_id", "recipient_row", "contact", "content_hash",
              "via_fallback"}  # fmt: skip
    for i in range(6):
        mine, twin = stored[f"r{i}"], stored[f"r{i + 6}"]
        assert {k: v for k, v in mine.items() if k not in differ} == {
            k: v for k, v in twin.items() if k not in differ}, i  # fmt: skip
    assert stored["r0"]["state"] == "sent" and stored["r1"]["state"] == "pending"


def test_claimed_rows_are_what_sqlalchemy_reads(tmp_path: Path, ledger_url: str) -> None:
    """A claim's rows come from the driver's tuples on SQLite (``fetch_all``): each must equal
    what SQLAlchemy reads of the same row, and no two rows may share a mutable value."""
    from orchestrator.ledger import CLAIMED

    incident = _incident(tmp_path, ledger_url)
    ledger = Ledger(ledger_url)
    start = datetime(2026, 11, 30, 8, 0, 0, 250000, tzinfo=UTC)
    rows = [_row(incident, i, start, recipient_data={"name": "Ana", "attrs": {"tier": i % 2}}
                 if i % 3 else None) for i in range(9)]  # fmt: skip
    rows[4]["locale"] = None
    ledger.insert_deliveries(rows)

    claimed = ledger.claim("twilio-sms", 100, 60.0)

    with ledger.session() as s:
        read = {r.key: r._asdict() for r in s.execute(select(*CLAIMED))}
    assert len(claimed) == 9
    for row in claimed:
        assert row == read[row["key"]]
        assert row["lease_until"].tzinfo is not None and row["attempts"] == 1
    assert {r["key"]: r["recipient_data"] for r in claimed} == {
        r["key"]: r["recipient_data"] for r in rows}  # fmt: skip
    shared = [r["recipient_data"] for r in claimed if r["recipient_data"]]
    shared[0]["attrs"]["tier"] = 7
    assert all(d["attrs"]["tier"] != 7 for d in shared[1:])


def test_reads_of_a_key_list_are_what_sqlalchemy_reads(tmp_path: Path, ledger_url: str) -> None:
    """``select_in`` passes the key list its own way (placeholders written into SQLite's SQL, one
    array for PostgreSQL): it must find exactly the rows SQLAlchemy's expanding ``IN`` finds, with
    the other parameters converted as SQLAlchemy would (a stamp compared as stored), whatever the
    list's length."""
    from sqlalchemy import bindparam

    from orchestrator.ledger import bulk

    incident = _incident(tmp_path, ledger_url)
    ledger = Ledger(ledger_url)
    start = datetime(2026, 11, 30, 8, 0, 0, 250000, tzinfo=UTC)
    later = start + timedelta(seconds=1)
    ledger.insert_deliveries([_row(incident, i, later if i % 2 else start) for i in range(7)])
    table = Delivery.__table__
    statement = select(table.c.id, table.c.key, table.c.state).where(
        table.c.key.in_(bindparam("keys", expanding=True)),
        table.c.updated_at == bindparam("at"),
        table.c.state == DeliveryState.PENDING.value,
    )
    keys = [f"{incident}:s:{i}" for i in range(7)] + ["no-such-key"]
    with ledger.transaction() as connection:
        for wanted in (keys, keys[:1], keys[3:], []):
            for at in (start, later.astimezone(timezone(timedelta(hours=2)))):
                got = bulk.select_in(connection, statement, "keys", wanted, {"at": at})
                expected = [tuple(r) for r in connection.execute(
                    statement, {"keys": wanted, "at": at})] if wanted else []  # fmt: skip
                assert sorted(got) == sorted(expected)
                assert all(isinstance(row, tuple) for row in got)
        found = bulk.select_in(connection, statement, "keys", keys, {"at": later})
    assert sorted(key for _, key, _ in found) == [f"{incident}:s:{i}" for i in (1, 3, 5)]


def test_updates_of_a_key_list_change_what_sqlalchemy_changes(
    tmp_path: Path, ledger_url: str
) -> None:
    """``execute_in`` passes the key list as ``select_in`` does (on PostgreSQL one array: the
    prepared plan of 1,000 placeholders tested every row of the table against the whole list):
    it changes exactly the rows SQLAlchemy's expanding ``IN`` changes, its other parameters
    converted as SQLAlchemy would, and says how many."""
    from sqlalchemy import bindparam, update

    from orchestrator.ledger import bulk

    incident = _incident(tmp_path, ledger_url)
    ledger = Ledger(ledger_url)
    start = datetime(2026, 11, 30, 8, 0, 0, 250000, tzinfo=UTC)
    ledger.insert_deliveries([_row(incident, i, start) for i in range(7)])
    table = Delivery.__table__
    statement = (
        update(table)
        .where(table.c.key.in_(bindparam("keys", expanding=True)),
               table.c.state == bindparam("was"))
        .values(state=bindparam("state"), updated_at=bindparam("at"))
    )  # fmt: skip
    keys = [f"{incident}:s:{i}" for i in range(7)] + ["no-such-key"]
    at = datetime(2026, 12, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    with ledger.transaction() as connection:
        changed = bulk.execute_in(connection, statement, "keys", keys[1:4],
                                  {"was": "pending", "state": "sent", "at": at})  # fmt: skip
        assert (
            bulk.execute_in(
                connection, statement, "keys", [], {"was": "pending", "state": "x", "at": at}
            )
            == 0
        )
        again = connection.execute(statement, {"keys": keys[3:], "was": "pending",
                                               "state": "failed", "at": at}).rowcount  # fmt: skip
    assert (changed, again) == (3, 3)
    with ledger.session() as s:
        got = {d.key: (d.state, d.updated_at) for d in s.scalars(select(Delivery))}
    assert [got[k][0] for k in keys[:7]] == ["pending", "sent", "sent", "sent", "failed",
                                             "failed", "failed"]  # fmt: skip
    assert got[keys[1]][1] == got[keys[4]][1] == at


def test_values_longer_than_the_ledger_keeps_are_skipped_rows_not_a_failed_fan_out(
    ledger_url: str, tmp_path: Path
) -> None:
    """PostgreSQL refuses a value longer than its column, which would fail the whole batch (and
    every retry of it): an id over 200 characters or holding a NUL, or a device token over 320,
    is a skipped row with its reason instead, and the people around it are planned as usual."""
    from orchestrator.campaign import Campaign
    from orchestrator.ledger import now

    playbook = tmp_path / "push.yaml"
    playbook.write_text(
        PLAYBOOK.replace("{id: sms-all, channel: sms,", "{id: push-all, channel: push,")
    )
    people = tmp_path / "people.csv"
    people.write_text("id,push_token\n" f"p1,{'a' * 40}\n" f"{'x' * 201},{'b' * 40}\n"
                      f"p3,{'c' * 321}\n" f"p4,{'d' * 320}\n" f"p\x005,{'e' * 40}\n")  # fmt: skip
    # settings only to pass the live pre-flight: nothing is sent
    breach = Breach(ledger_url, settings=plugin_settings("http://127.0.0.1:9", SimulatorConfig()))
    incident = breach.trigger(playbook, audience=str(people), mode="live").incident_id
    campaign = Campaign(breach, breach.ledger.incident(incident))
    tally = campaign.run_step(campaign.playbook.steps[0], now()).tally
    assert tally is not None and tally.people == 5
    with breach.ledger.session() as s:
        rows = {d.recipient_row: d for d in s.scalars(select(Delivery))}
    assert {n: rows[n].state for n in rows} == {1: "pending", 2: "skipped", 3: "skipped",
                                                4: "pending", 5: "skipped"}  # fmt: skip
    assert rows[2].reason == "malformed row: id longer than 200 characters"
    assert rows[5].reason == "malformed row: id holds a NUL character"
    assert rows[3].reason == "invalid push token"
    assert rows[4].contact == "d" * 320


def test_a_name_longer_than_the_ledger_keeps_is_refused_and_a_quorum_summary_shortened(
    tmp_path: Path, ledger_url: str
) -> None:
    """Approvers' names go into 200-character columns: a longer name is refused with a message
    (PostgreSQL would refuse the write itself, with a driver error); two long names that open a
    gate together make a shortened summary, the timeline keeping each approval whole."""
    from orchestrator.errors import BreachError

    playbook = tmp_path / "gated.yaml"
    playbook.write_text(PLAYBOOK.replace(
        "at: +0m}", "at: +2h, approval: {roles: [dpo, legal], quorum: 2}}"))  # fmt: skip
    people = tmp_path / "people.csv"
    people.write_text("id,phone\np0,+14155550100\n")
    settings = plugin_settings("http://127.0.0.1:9", SimulatorConfig())
    with Breach(ledger_url, settings=settings) as breach:
        incident = breach.trigger(playbook, audience=str(people), mode="live").incident_id
        with pytest.raises(BreachError, match="at most 200 characters"):
            breach.approve(incident, "sms-all", by="d" * 201, as_role="dpo")
        breach.approve(incident, "sms-all", by="d" * 150, as_role="dpo")
        opened = breach.approve(incident, "sms-all", by="l" * 150, as_role="legal")
        [step] = breach.ledger.steps(incident)
        approvals = [e for e in breach.timeline(incident) if e["kind"] == "step.approved"]
    assert opened["open"] is True
    assert step.approved_by is not None and len(step.approved_by) == 200
    assert step.approved_by.startswith("d" * 150 + " (dpo), ") and step.approved_by[-1] == "…"
    assert [e["actor"] for e in approvals] == ["d" * 150, "l" * 150]
