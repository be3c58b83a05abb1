"""Ledger migrations: a ledger written by an older version opens, upgraded, with its data."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from orchestrator.ledger import Ledger
from orchestrator.ledger.models import Base

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def databases() -> list[str]:
    urls = ["sqlite"]
    if os.environ.get("BREACH_TEST_POSTGRES_URL"):
        urls.append("postgres")
    return urls


@pytest.fixture(params=databases())
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    found = os.environ["BREACH_TEST_POSTGRES_URL"]
    engine = sa.create_engine(found)
    with engine.begin() as c:  # a clean schema for every test
        c.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return found


#: the newest revision
HEAD = "0010"


def alembic(url: str, action: str, revision: str) -> None:
    """Run ``alembic upgrade|downgrade REVISION`` on the ledger at ``url``."""
    cfg = Config()
    location = resources.files("orchestrator.ledger").joinpath("migrations")
    cfg.set_main_option("script_location", str(location))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            getattr(command, action)(cfg, revision)
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def columns(url: str, table: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


#: deliveries as a 0002 ledger held them: (recipient, state, reason) of one failed SMS step
ROWS_0002 = [
    ("bounced", "failed", "bounce: 550 5.1.1 no such mailbox"),
    ("blocked", "failed", "blocked: 550 5.7.1 rejected by policy"),
    ("dropped", "failed", "dropped: Bounced Address"),
    ("undelivered", "failed", "undelivered: 30003 (unreachable destination handset)"),
    ("twilio-failed", "failed", "failed: 30008 (unknown error)"),
    ("refused", "failed", "HTTP 400: invalid number"),
    ("dead", "dead", "gave up after 3 attempts: HTTP 503"),
    ("delivered", "delivered", None),
    ("sent", "sent", None),
]


def write_0002_ledger(url: str) -> None:
    """A ledger at revision 0002 with one incident, one step and :data:`ROWS_0002`."""
    alembic(url, "upgrade", "0002")
    metadata = sa.MetaData()
    engine = sa.create_engine(url)
    try:
        metadata.reflect(engine, only=["incidents", "steps", "deliveries"])
        incidents, steps, deliveries = (metadata.tables[n] for n in ("incidents", "steps",
                                                                      "deliveries"))  # fmt: skip
        with engine.begin() as c:
            c.execute(incidents.insert().values(
                id="inc-1", playbook_id="pb", playbook_version="1", playbook_text="id: pb",
                playbook_digest="0" * 64, title="Old incident", severity="high", mode="live",
                state="running", aware_at=T0, created_at=T0, facts={}, facts_version=1,
                audience_spec="people.csv", audience_options={}, source="cli"))  # fmt: skip
            c.execute(steps.insert().values(
                incident_id="inc-1", step_id="sms-all", position=0, channel="sms", due_at=T0,
                state="running", detail={}, fanout_rows=9, fanout_done=True))  # fmt: skip
            rows: list[dict[str, Any]] = [
                {"key": f"inc-1:sms-all:{who}", "incident_id": "inc-1", "step_id": "sms-all",
                 "recipient_id": who, "recipient_row": n, "channel": "sms", "via_fallback": False,
                 "contact": "+14155550100", "state": state, "reason": reason, "attempts": 1,
                 "sent_at": T0, "created_at": T0, "updated_at": T0, "notifier": "twilio-sms"}
                for n, (who, state, reason) in enumerate(ROWS_0002)
            ]  # fmt: skip
            c.execute(deliveries.insert(), rows)
    finally:
        engine.dispose()


def test_a_0002_ledger_is_upgraded_with_its_receipt_outcomes_read_from_the_reasons(
    url: str,
) -> None:
    write_0002_ledger(url)
    assert revision_of(url) == "0002"
    assert "receipt_outcome" not in columns(url, "deliveries")

    ledger = Ledger(url)  # opening a ledger upgrades it
    try:
        assert revision_of(url) == HEAD
        with ledger.engine.connect() as c:
            found = dict(c.execute(sa.text(
                "SELECT recipient_id, receipt_outcome FROM deliveries")).all())  # fmt: skip
        assert found == {
            "bounced": "bounce", "blocked": "bounce", "dropped": "bounce",
            "undelivered": "undelivered", "twilio-failed": "undelivered",
            "refused": None, "dead": None, "delivered": "delivered", "sent": None,
        }  # fmt: skip
        # A campaign running across the upgrade still owes the same fallbacks.
        later = T0 + timedelta(hours=2)
        candidates = {
            trigger: sorted(ledger.fallback_candidates("inc-1", "sms-all", [trigger],
                                                       older_than=later))
            for trigger in ("bounce", "undelivered", "failed", "no_receipt")
        }  # fmt: skip
        assert candidates == {
            "bounce": ["blocked", "bounced", "dropped"],
            "undelivered": ["twilio-failed", "undelivered"],
            "failed": ["blocked", "bounced", "dead", "dropped", "refused", "twilio-failed",
                       "undelivered"],
            "no_receipt": ["sent"],
        }  # fmt: skip
    finally:
        ledger.close()


def test_0003_downgrades_and_upgrades_again(url: str) -> None:
    write_0002_ledger(url)
    alembic(url, "upgrade", "head")
    assert "receipt_outcome" in columns(url, "deliveries")
    alembic(url, "downgrade", "0002")
    assert "receipt_outcome" not in columns(url, "deliveries")
    alembic(url, "upgrade", "head")
    assert revision_of(url) == HEAD


def test_a_0009_ledgers_address_keys_become_the_keys_a_resumed_fan_out_looks_up(
    url: str,
) -> None:
    """A step fanned out half-way before the upgrade and resumed after it: the holder of an
    address recorded before is found by the key the fan-out computes now, so the address still
    gets one message (0010 scoped the key to its step, in 16 bytes)."""
    from orchestrator import sharing

    write_0002_ledger(url)
    alembic(url, "upgrade", "0009")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(sa.text("UPDATE deliveries SET address_key = :k WHERE recipient_id = 'sent'"),
                      {"k": sharing.address_hash("phone", "+14155550100")})  # fmt: skip
    finally:
        engine.dispose()

    ledger = Ledger(url)  # opening a ledger upgrades it
    try:
        assert revision_of(url) == HEAD
        key = sharing.address_key("inc-1", "sms-all", "phone", "+14155550100")
        assert ledger.address_holders([key]) == {key: "sent"}
        # the same address in another step is another key
        other = sharing.address_key("inc-1", "email-all", "phone", "+14155550100")
        assert ledger.address_holders([other]) == {}
        indexes = {i["name"] for i in sa.inspect(ledger.engine).get_indexes("deliveries")}
        assert "ix_delivery_recipient" not in indexes
    finally:
        ledger.close()
    alembic(url, "downgrade", "0009")  # the keys are gone: a hash cannot be undone
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            keys = "SELECT count(*) FROM deliveries WHERE address_key IS NOT NULL"
            assert c.execute(sa.text(keys)).scalar() == 0
    finally:
        engine.dispose()
    alembic(url, "upgrade", "head")
    assert revision_of(url) == HEAD


def test_the_migrations_build_the_schema_the_models_describe(url: str) -> None:
    Ledger(url).close()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    # Column and index additions or removals: what a migration forgot, or a model left out.
    structural = [
        d for d in differences if isinstance(d, tuple) and d[0].startswith(("add_", "remove_"))
    ]
    assert structural == []


def test_provider_ids_and_address_keys_are_indexed_only_where_set_and_their_lookups_use_it(
    url: str,
) -> None:
    """A fan-out writes both columns empty: indexing those NULLs cost every row two B-tree
    inserts. The receipt and same-address lookups must still find their index."""
    Ledger(url).close()
    engine = sa.create_engine(url)
    by_id = "SELECT id FROM deliveries WHERE provider_message_id = 'SM1'"
    # as Ledger.address_holders asks: the key names its step, so the lookup names no step
    by_address = "SELECT recipient_id FROM deliveries WHERE address_key IN (X'61', X'62')"
    if engine.dialect.name == "postgresql":
        by_address = ("SELECT recipient_id FROM deliveries "
                      "WHERE address_key = ANY(ARRAY['\\x61'::bytea, '\\x62'::bytea])")  # fmt: skip
    try:
        with engine.begin() as c:
            if engine.dialect.name == "sqlite":
                ddl = dict(c.execute(sa.text(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index'")).all())  # fmt: skip
                plans = [" ".join(str(r[-1]) for r in c.execute(sa.text(f"EXPLAIN QUERY PLAN {q}")))
                         for q in (by_id, by_address)]  # fmt: skip
            else:
                ddl = dict(c.execute(sa.text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'deliveries'"
                )).all())  # fmt: skip
                c.execute(sa.text("SET LOCAL enable_seqscan = off"))  # an empty table: force it
                plans = [" ".join(str(r[0]) for r in c.execute(sa.text(f"EXPLAIN {q}")))
                         for q in (by_id, by_address)]  # fmt: skip
    finally:
        engine.dispose()
    assert "provider_message_id IS NOT NULL" in ddl["ix_delivery_provider_id"]
    assert "address_key IS NOT NULL" in ddl["uq_delivery_address"]
    assert "ix_delivery_provider_id" in plans[0], plans[0]
    assert "uq_delivery_address" in plans[1], plans[1]


def test_a_claim_reads_due_rows_in_the_dispatch_index_order_without_sorting(url: str) -> None:
    """A claim takes the first due rows by (next attempt, id). An index that gave that order
    only up to the time made PostgreSQL sort every pending row of the notifier on every claim
    (37 ms a claim in a 100,000-person campaign, and growing with it)."""
    from datetime import UTC, datetime

    from orchestrator.ledger import _claim_statements, bulk

    ledger = Ledger(url)
    postgres = ledger.is_postgres
    stamp = datetime(2026, 12, 1, tzinfo=UTC)
    params = {"by": "twilio-sms", "now": stamp, "lease": stamp, "n": 1000}
    compiled = bulk._compiled(_claim_statements(postgres)[1], ledger.engine.dialect)
    with ledger.transaction() as c:
        if postgres:
            c.exec_driver_sql("SET LOCAL enable_seqscan = off")  # an empty table: force it
            args: Any = {name: compiled.value(name, params) for name in compiled.named}
            rows = c.exec_driver_sql(f"EXPLAIN {compiled.sql}", args)
        else:
            args = tuple(compiled.value(name, params) for name in compiled.order)
            rows = c.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled.sql}", args)
        plan = " ".join(str(row[-1]) for row in rows)
    ledger.close()
    assert "ix_delivery_dispatch" in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan


def test_an_incidents_reasons_and_possible_duplicates_are_read_from_their_partial_indexes(
    url: str,
) -> None:
    """``breach status`` (and the dashboard, every 2 s) read an incident's reasons and the sum
    of its reclaims; without these indexes both read every row of the incident (69 of the
    83 ms a status took at 200,000 rows on SQLite)."""
    Ledger(url).close()
    engine = sa.create_engine(url)
    reclaimed = "SELECT sum(reclaims) FROM deliveries WHERE incident_id = 'i' AND reclaims > 0"
    reasons = ("SELECT step_id, reason, count(*) FROM deliveries WHERE incident_id = 'i' "
               "AND reason IS NOT NULL GROUP BY step_id, reason")  # fmt: skip
    try:
        with engine.begin() as c:
            if engine.dialect.name == "sqlite":
                explain, column = "EXPLAIN QUERY PLAN", -1
            else:
                c.execute(sa.text("SET LOCAL enable_seqscan = off"))  # an empty table: force it
                explain, column = "EXPLAIN", 0
            plans = [" ".join(str(r[column]) for r in c.execute(sa.text(f"{explain} {q}")))
                     for q in (reclaimed, reasons)]  # fmt: skip
    finally:
        engine.dispose()
    assert "ix_delivery_reclaimed" in plans[0], plans[0]
    assert "ix_delivery_reasons" in plans[1], plans[1]
