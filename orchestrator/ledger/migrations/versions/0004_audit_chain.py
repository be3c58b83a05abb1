"""audit chain: each audit row carries the hash of the previous row of its incident and its own

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The chain's encoding as this revision wrote it (frozen here; orchestrator.ledger.chain is the
# live definition and must stay equal to it, which tests/test_audit_chain.py checks).
_GENESIS = "0" * 64


def _hash(previous: str, row: Any) -> str:
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    detail = row.detail if isinstance(row.detail, dict) else json.loads(row.detail or "{}")
    content = {
        "incident": row.incident_id, "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "kind": row.kind, "step": row.step_id, "actor": row.actor, "detail": detail,
    }  # fmt: skip
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(previous.encode("ascii") + b"\n" + text.encode("utf-8")).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    # Rows written before this revision are chained now, in the order they were written.
    audit = sa.table(
        "audit_events",
        sa.column("id", sa.Integer),
        sa.column("incident_id", sa.String),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("kind", sa.String),
        sa.column("step_id", sa.String),
        sa.column("actor", sa.String),
        sa.column("detail", sa.JSON),
        sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )
    connection = op.get_bind()
    heads: dict[str, str] = {}
    rows = connection.execute(sa.select(audit).order_by(audit.c.id)).all()
    for row in rows:
        previous = heads.get(row.incident_id, _GENESIS)
        heads[row.incident_id] = own = _hash(previous, row)
        connection.execute(
            audit.update().where(audit.c.id == row.id).values(prev_hash=previous, hash=own)
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
