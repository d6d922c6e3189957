"""one table of unit words for the lexical space and the title signals: re-encode the rows it reads anew

From this revision the lexical encoder and the title signals read one table of unit words
(`prodmatch.embed.lexical.UNIT_WORDS`). The lexical space gains the units only the title signals knew: piece
counts ("10 pcs" = "10 Stück" = "10 шт" -> "10pcs"), ports, feet, pounds, ounces, megapixels, rpm, kilobytes,
kilohertz, and the Russian words "литр" and "грамм". A product whose text has a number before one of them was
encoded with other terms ("10" and "stück"), so its row is marked stale and the next refresh (`link`, `eval`,
`embed`, `matcher train` run one first) re-encodes it; other rows are untouched. The spellings are listed here
as they were added, so this revision marks the same rows whatever the encoder becomes. Downgrading marks them
stale again.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# the value `prodmatch.store.catalogs.mark_lexical_stale` writes: no real md5 content hash equals it
_STALE = "00000000-0000-0000-0000-000000000000"

# unit spellings this revision added to the encoder; a row is re-encoded when a digit precedes one of them
_ADDED = (
    "kb кб kilobyte khz кгц feet ft lbs lb oz mp мп rpm pcs pieces pk pack шт stück stk pièces piezas unidades"
    " port литр гр грамм"
).split()


def _mark_stale() -> None:
    pattern = "[0-9][[:space:]]?-?[[:space:]]?(" + "|".join(_ADDED) + ")"
    op.get_bind().execute(
        sa.text(
            "UPDATE prodmatch.lexical SET content_hash = :stale WHERE product_id IN ("
            " SELECT id FROM prodmatch.products WHERE concat_ws(' ', title, brand, category, description,"
            " attributes::text) ~* :pattern)"
        ),
        {"stale": _STALE, "pattern": pattern},
    )


def upgrade() -> None:
    _mark_stale()


def downgrade() -> None:
    _mark_stale()
