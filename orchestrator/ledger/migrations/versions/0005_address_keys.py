"""one message per address per step: the hash of the address a delivery sends to, unique per
step, and the holder a skipped sharer of an address follows into fallbacks

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows written before this revision hold no key: a step fanned out under an older version
    # and resumed under this one dedupes only the rows it writes from now on.
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("address_key", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("shares_with", sa.String(length=200), nullable=True))
    op.create_index(
        "uq_delivery_address",
        "deliveries",
        ["incident_id", "step_id", "address_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_delivery_address", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("shares_with")
        batch.drop_column("address_key")
