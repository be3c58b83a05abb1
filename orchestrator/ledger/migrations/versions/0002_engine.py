"""delivery engine: fan-out progress, leases reclaimed, receipts by provider id, redirect

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("redirect_to", sa.JSON(), nullable=True))
    with op.batch_alter_table("steps") as batch:
        batch.add_column(
            sa.Column("fanout_rows", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("fanout_done", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("reclaims", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("notifier", sa.String(length=64), nullable=True))
        batch.create_index("ix_delivery_provider_id", ["provider_message_id"])
        batch.drop_index("ix_delivery_dispatch")
        batch.create_index("ix_delivery_dispatch", ["notifier", "state", "next_attempt_at"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_delivery_dispatch")
        batch.create_index("ix_delivery_dispatch", ["state", "next_attempt_at"])
        batch.drop_column("notifier")
        batch.drop_index("ix_delivery_provider_id")
        batch.drop_column("sent_at")
        batch.drop_column("reclaims")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("fanout_done")
        batch.drop_column("fanout_rows")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("redirect_to")
