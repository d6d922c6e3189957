"""what `link --watch` needs at a million products: change indexes and a wake-up for every kind of change

- Indexes on `products.updated_at`, `lexical.updated_at` and `embeddings.embedded_at`: a watcher's pass asks
  "what was written since my checkpoint?" of each of them, which without an index reads every row of catalogues
  of a million products on every pass.
- An index on `lexical.weighted_documents`: the lexical refresh's "how far has IDF moved" check (its minimum)
  becomes one index probe instead of a scan.
- `sql/changes.sql`: NOTIFY prodmatch_changed on product INSERT and DELETE and on vectors written by the worker,
  so a watcher wakes within a moment of a deletion, of an insert into a database with no model, and of an
  embedding becoming ready (before, only the poll interval found those).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from prodmatch.store.migrate import apply_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEXES = (
    ("products_updated_at_idx", "products", "updated_at"),
    ("lexical_updated_at_idx", "lexical", "updated_at"),
    ("lexical_weighted_documents_idx", "lexical", "weighted_documents"),
    ("embeddings_embedded_at_idx", "embeddings", "embedded_at"),
)


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column], schema="prodmatch")
    apply_sql_file(op.get_bind(), "changes.sql")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS embeddings_written ON prodmatch.embeddings")
    op.execute("DROP TRIGGER IF EXISTS products_changed ON prodmatch.products")
    op.execute("DROP FUNCTION IF EXISTS prodmatch.notify_changed()")
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table, schema="prodmatch")
