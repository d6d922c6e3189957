"""product clusters across catalogues: clusters, product_clusters, cluster_builds; clusters_v and offers_of

The connected components of accepted link pairs and dedupe clusters (`prodmatch clusters build`,
`prodmatch.match.clusters`), each with an id that outlives re-clustering, and the SQL an analyst reads them with
(`sql/clusters.sql`: `prodmatch.clusters_v`, `prodmatch.offers_of(catalog, external_id)`).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from prodmatch.store.migrate import apply_sql_file

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("clusters_pkey")),
        schema="prodmatch",
    )
    op.create_table(
        "product_clusters",
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("cluster_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["prodmatch.clusters.id"],
            name=op.f("product_clusters_cluster_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["prodmatch.products.id"],
            name=op.f("product_clusters_product_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("product_id", name=op.f("product_clusters_pkey")),
        schema="prodmatch",
    )
    op.create_index(
        "product_clusters_cluster_id_idx",
        "product_clusters",
        ["cluster_id"],
        unique=False,
        schema="prodmatch",
    )
    op.create_table(
        "cluster_builds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("runs", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("requested_runs", postgresql.ARRAY(sa.BigInteger()), nullable=True),
        sa.Column("clusters", sa.Integer(), nullable=False),
        sa.Column("products", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("cluster_builds_pkey")),
        schema="prodmatch",
    )
    apply_sql_file(op.get_bind(), "clusters.sql")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS prodmatch.offers_of(text, text)")
    op.execute("DROP VIEW IF EXISTS prodmatch.clusters_v")
    op.drop_table("cluster_builds", schema="prodmatch")
    op.drop_index("product_clusters_cluster_id_idx", table_name="product_clusters", schema="prodmatch")
    op.drop_table("product_clusters", schema="prodmatch")
    op.drop_table("clusters", schema="prodmatch")
