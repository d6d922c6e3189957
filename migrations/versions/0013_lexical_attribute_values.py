"""the lexical space reads attribute values as whole terms: re-encode every product's lexical row

From this revision the lexical encoder adds one ``a`` term per attribute value (``slot=value``, see
`prodmatch.embed.lexical.attribute_value_terms`). Rows encoded before lack them, so every row is marked stale and
the next refresh (`link`, `eval`, `embed`, `matcher train` run one first) re-encodes them; since more than a fifth
of the products are stale, that refresh is a full rebuild that recounts the IDF. Downgrading marks them stale
again, so an older encoder rebuilds them its way.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# the value `prodmatch.store.catalogs.mark_lexical_stale` writes: no real md5 content hash equals it
_STALE = "00000000-0000-0000-0000-000000000000"


def upgrade() -> None:
    op.execute(f"UPDATE prodmatch.lexical SET content_hash = '{_STALE}'")


def downgrade() -> None:
    op.execute(f"UPDATE prodmatch.lexical SET content_hash = '{_STALE}'")
