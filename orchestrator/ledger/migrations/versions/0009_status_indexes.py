"""partial indexes for the status of a large incident: its reasons and its possible duplicates

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# `breach status` and the dashboard (every 2 s per open page) read an incident's reasons and
# the sum of its reclaims. Both read every row of the incident without these: 69 of the 83 ms a
# status took at 200,000 rows on SQLite, growing with the incident. Only rows with a reason
# (skipped, failed, dead) or a reclaim are indexed, so sending rows pay nothing for them.
_INDEXES = {
    "ix_delivery_reasons": (["incident_id", "step_id", "reason"], "reason IS NOT NULL"),
    "ix_delivery_reclaimed": (["incident_id", "reclaims"], "reclaims > 0"),
}


def _where(predicate: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(predicate), "postgresql_where": sa.text(predicate)}


def upgrade() -> None:
    for name, (columns, predicate) in _INDEXES.items():
        op.create_index(name, "deliveries", columns, **_where(predicate))


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="deliveries")
