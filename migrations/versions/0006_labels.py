"""labels: people's answers to candidate pairs (prodmatch review), history kept; the labels_v view (sql/labels.sql)


Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from prodmatch.store.migrate import apply_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("source_product_id", sa.BigInteger(), nullable=False),
        sa.Column("target_product_id", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("labelled_by", sa.Text(), nullable=False),
        sa.Column("labelled_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("is_current", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.CheckConstraint(
            "label IN ('match', 'non-match', 'unsure')", name=op.f("labels_label_known_check")
        ),
        sa.CheckConstraint("source_product_id <> target_product_id", name=op.f("labels_two_products_check")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["prodmatch.match_runs.id"], name=op.f("labels_run_id_fkey"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["source_product_id"],
            ["prodmatch.products.id"],
            name=op.f("labels_source_product_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_product_id"],
            ["prodmatch.products.id"],
            name=op.f("labels_target_product_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("labels_pkey")),
        schema="prodmatch",
    )
    op.create_index(
        "labels_current_pair_key",
        "labels",
        ["source_product_id", "target_product_id"],
        unique=True,
        schema="prodmatch",
        postgresql_where=sa.text("is_current"),
    )
    op.create_index(
        "labels_target_product_id_idx", "labels", ["target_product_id"], unique=False, schema="prodmatch"
    )
    op.create_index(
        "labels_labelled_by_labelled_at_idx",
        "labels",
        ["labelled_by", "labelled_at"],
        unique=False,
        schema="prodmatch",
    )
    apply_sql_file(op.get_bind(), "labels.sql")


def downgrade() -> None:
    op.execute(
        "DROP VIEW IF EXISTS prodmatch.labels_v;"
        " DROP FUNCTION IF EXISTS prodmatch.record_label, prodmatch.undo_label, prodmatch.label_pair_key"
    )
    op.drop_index("labels_labelled_by_labelled_at_idx", table_name="labels", schema="prodmatch")
    op.drop_index("labels_target_product_id_idx", table_name="labels", schema="prodmatch")
    op.drop_index(
        "labels_current_pair_key",
        table_name="labels",
        schema="prodmatch",
        postgresql_where=sa.text("is_current"),
    )
    op.drop_table("labels", schema="prodmatch")
