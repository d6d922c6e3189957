"""one view of the vectors whatever a model's storage: `prodmatch.vectors_v` (sql/vectors.sql)

A `halfvec` model (the default storage) keeps its vectors in `embeddings.*_half`, so an analyst's
`SELECT fused_vector FROM prodmatch.embeddings` saw NULL for every product. The view gives every model's image,
text and fused vectors as `vector`, with the product, catalogue and model they belong to.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from prodmatch.store.migrate import apply_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_file(op.get_bind(), "vectors.sql")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS prodmatch.vectors_v")
