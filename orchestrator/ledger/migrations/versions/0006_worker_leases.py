"""workers: a registry with heartbeats, the fan-out lease of a step, shared pacing slots

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("fanout_owner", sa.String(length=96), nullable=True))
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=96), primary_key=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("alive_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_workers_alive_until", "workers", ["alive_until"])
    op.create_table(
        "rate_slots",
        sa.Column("notifier", sa.String(length=64), primary_key=True),
        sa.Column("next_start", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_slots")
    op.drop_index("ix_workers_alive_until", table_name="workers")
    op.drop_table("workers")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("fanout_owner")
