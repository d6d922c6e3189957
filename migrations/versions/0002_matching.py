"""matching: duplicate clusters, one stored run per parameter set, the SQL API (sql/matching.sql)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from prodmatch.store.migrate import apply_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duplicate_clusters",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("is_centre", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("similarity", sa.Float(precision=24), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["prodmatch.products.id"],
            name=op.f("duplicate_clusters_product_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["prodmatch.match_runs.id"],
            name=op.f("duplicate_clusters_run_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "product_id", name=op.f("duplicate_clusters_pkey")),
        schema="prodmatch",
    )
    op.create_index(
        "duplicate_clusters_run_id_cluster_id_idx",
        "duplicate_clusters",
        ["run_id", "cluster_id"],
        unique=False,
        schema="prodmatch",
    )
    op.create_index(
        "match_runs_identity_idx",
        "match_runs",
        ["kind", "source_catalog_id", "target_catalog_id", "model_id", "params"],
        unique=True,
        schema="prodmatch",
        postgresql_nulls_not_distinct=True,
    )
    # The SQL API frozen at revision 0004 (later revisions apply their own version of sql/matching.sql).
    apply_sql_file(op.get_bind(), "versions/matching_0004.sql")


def downgrade() -> None:
    op.execute(
        "DROP VIEW IF EXISTS prodmatch.matches_v, prodmatch.duplicates_v, prodmatch.embedding_errors_v;"
        " DROP FUNCTION IF EXISTS prodmatch.similar, prodmatch.search, prodmatch.candidates,"
        " prodmatch.vector_expr, prodmatch.vector_type, prodmatch.model_id, prodmatch.catalog_id"
    )
    op.drop_index("match_runs_identity_idx", table_name="match_runs", schema="prodmatch")
    op.drop_index(
        "duplicate_clusters_run_id_cluster_id_idx", table_name="duplicate_clusters", schema="prodmatch"
    )
    op.drop_table("duplicate_clusters", schema="prodmatch")
