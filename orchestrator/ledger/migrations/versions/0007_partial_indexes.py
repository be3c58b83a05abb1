"""partial indexes: provider message ids and address keys are indexed only where set

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# A fan-out writes every row with both columns NULL: full indexes gave each row two B-tree
# inserts that no query reads (lookups are by a given id or key, never by NULL).
_INDEXES = {
    "ix_delivery_provider_id": (["provider_message_id"], False),
    "uq_delivery_address": (["incident_id", "step_id", "address_key"], True),
}


def _where(columns: list[str]) -> dict[str, Any]:
    where = sa.text(f"{columns[-1]} IS NOT NULL")
    return {"sqlite_where": where, "postgresql_where": where}


def upgrade() -> None:
    for name, (columns, unique) in _INDEXES.items():
        op.drop_index(name, table_name="deliveries")
        op.create_index(name, "deliveries", columns, unique=unique, **_where(columns))


def downgrade() -> None:
    for name, (columns, unique) in _INDEXES.items():
        op.drop_index(name, table_name="deliveries")
        op.create_index(name, "deliveries", columns, unique=unique)
