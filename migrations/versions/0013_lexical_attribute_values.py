"""the lexical space reads attribute values as whole terms: re-encode every product's lexical row

From this revision the lexical encoder adds one ``a`` term per attribute value (``slot=value``, see
`prodmatch.embed.lexical.attribute_value_terms`). Rows encoded before lack them, so every row is marked stale and
the next refresh (`link`, `eval`, `embed`, `matcher train` run one first) re-encodes them; since more than a fifth
of the products are stale, that refresh is a full rebuild that recounts the IDF. Downgrading marks them stale
again, so an older encoder rebuilds them its way.

It also re-applies sql/matching.sql (last applied by 0007), so a database made before this revision gets the SQL
API's current text, as a new one does: `similar`, `search` and `candidates` set `hnsw.ef_search` through
`prodmatch.set_ef_search`, which a Citus coordinator passes on to its workers (sql/citus.sql). The functions
behave as before on one node; downgrading keeps them (the older revisions' text called `set_config` directly,
with the same effect).

Revision ID: 0013
Revises: 0012
"""

from alembic import op

from prodmatch.store.migrate import apply_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# the value `prodmatch.store.catalogs.mark_lexical_stale` writes: no real md5 content hash equals it
_STALE = "00000000-0000-0000-0000-000000000000"


def upgrade() -> None:
    op.execute(f"UPDATE prodmatch.lexical SET content_hash = '{_STALE}'")
    apply_sql_file(op.get_bind(), "matching.sql")


def downgrade() -> None:
    op.execute(f"UPDATE prodmatch.lexical SET content_hash = '{_STALE}'")
