"""German "sch" read as the "ш" a Russian shop writes: re-encode the lexical rows that have one

From this revision the lexical space's n-grams fold "sch" to "sh" (`prodmatch.embed.lexical._FOLDS`), so a
brand a Russian shop transliterates meets its German spelling: `Бош` (bosh) and `Bosch`, `Фишер` and `Fischer`,
`Шварцкопф` and `Schwarzkopf`. A product whose text has "sch" was encoded with the old n-grams, so its lexical
row is marked stale and the next refresh (`link`, `eval`, `embed`, `matcher train` run one first) re-encodes
it; other rows are untouched (Cyrillic text is transliterated to "sh" already). Downgrading marks them stale
again.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# the value `prodmatch.store.catalogs.mark_lexical_stale` writes: no real md5 content hash equals it
_STALE = "00000000-0000-0000-0000-000000000000"


def _mark_stale() -> None:
    op.get_bind().execute(
        sa.text(
            "UPDATE prodmatch.lexical SET content_hash = :stale WHERE product_id IN ("
            " SELECT id FROM prodmatch.products WHERE concat_ws(' ', title, brand, category, description,"
            " attributes::text) ~* 'sch')"
        ),
        {"stale": _STALE},
    )


def upgrade() -> None:
    _mark_stale()


def downgrade() -> None:
    _mark_stale()
