"""receipt outcome: what a provider's receipt said, typed, for the fallbacks to select on

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# How receipts worded a bounce and an undelivered message at the start of `reason` before this
# revision (frozen here: the ledger no longer reads them).
_BOUNCES = ("bounce", "dropped", "blocked")
_UNDELIVERED = ("undelivered", "failed", "busy", "no-answer", "canceled")


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("receipt_outcome", sa.String(length=16), nullable=True))
    # A campaign running across the upgrade keeps the fallbacks its receipts already owe.
    deliveries = sa.table(
        "deliveries",
        sa.column("state", sa.String),
        sa.column("reason", sa.Text),
        sa.column("receipt_outcome", sa.String),
    )
    op.execute(
        deliveries.update()
        .where(deliveries.c.state == "delivered")
        .values(receipt_outcome="delivered")
    )
    for outcome, words in (("bounce", _BOUNCES), ("undelivered", _UNDELIVERED)):
        op.execute(
            deliveries.update()
            .where(
                deliveries.c.state == "failed",
                deliveries.c.receipt_outcome.is_(None),
                sa.or_(*(deliveries.c.reason.like(f"{word}%") for word in words)),
            )
            .values(receipt_outcome=outcome)
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("receipt_outcome")
