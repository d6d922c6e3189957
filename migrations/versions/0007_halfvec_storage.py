"""halfvec storage: a model may keep its vectors as 2-byte floats

- `prodmatch.models.storage`: 'vector' (4-byte floats in embeddings.*_vector, as before; the default for
  existing models and for rows an application inserts) or 'halfvec' (2-byte floats in embeddings.*_half, with
  its HNSW indexes on those columns).
- `prodmatch.embeddings` gains image_half, text_half and fused_half (halfvec, no fixed dimension).
- The SQL API (sql/matching.sql) follows each model's storage: prodmatch.vector_expr names the right column and
  type, and the new prodmatch.index_type gives the type a query vector is cast to.

Downgrading refuses while a halfvec model is registered: revision 0006 has nowhere to keep its vectors.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import HALFVEC

from prodmatch.errors import DatabaseError
from prodmatch.store.migrate import apply_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

HALF_COLUMNS = ("image_half", "text_half", "fused_half")


def upgrade() -> None:
    op.add_column(
        "models",
        sa.Column("storage", sa.Text(), server_default="vector", nullable=False),
        schema="prodmatch",
    )
    op.create_check_constraint(
        op.f("models_storage_known_check"), "models", "storage IN ('vector', 'halfvec')", schema="prodmatch"
    )
    for name in HALF_COLUMNS:
        op.add_column("embeddings", sa.Column(name, HALFVEC(), nullable=True), schema="prodmatch")
    apply_sql_file(op.get_bind(), "matching.sql")


def downgrade() -> None:
    bind = op.get_bind()
    names = [
        r[0] for r in bind.execute(sa.text("SELECT name FROM prodmatch.models WHERE storage = 'halfvec'"))
    ]
    if names:
        raise DatabaseError(
            f"cannot downgrade below 0007: models {', '.join(names)} keep halfvec vectors; "
            "drop them first (prodmatch models drop NAME)"
        )
    op.execute("DROP FUNCTION prodmatch.index_type")
    apply_sql_file(bind, "versions/matching_0006.sql")  # the SQL API as it was at revision 0006
    for name in HALF_COLUMNS:
        op.drop_column("embeddings", name, schema="prodmatch")
    op.drop_constraint(op.f("models_storage_known_check"), "models", schema="prodmatch", type_="check")
    op.drop_column("models", "storage", schema="prodmatch")
