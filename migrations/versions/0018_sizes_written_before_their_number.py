"""sizes written before their number: re-encode the lexical rows that have one

From this revision a size written before its number ("Size 42", "Größe 43", "Размер 44", "尺码42") reads as
the Chinese "42码" does, a size token ("42size") in the lexical space and a size the title signals compare
(`prodmatch.embed.lexical.sizes_as_units`). A product whose text has such a size was encoded with other terms
("size" and "42"), so its lexical row is marked stale and the next refresh (`link`, `eval`, `embed`, `matcher
train` run one first) re-encodes it; other rows are untouched. The size words are listed here as they were
added, so this revision marks the same rows whatever the encoder becomes. Downgrading marks them stale again.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# the value `prodmatch.store.catalogs.mark_lexical_stale` writes: no real md5 content hash equals it
_STALE = "00000000-0000-0000-0000-000000000000"

_SIZE_WORDS = (
    "size sz größe groesse gr\\. taille pointure talla tamanho taglia misura maat rozmiar размер разм\\. розмір"
    " 尺码 尺碼 码数 碼數 鞋码 サイズ 사이즈 ไซส์"
).split()


def _mark_stale() -> None:
    pattern = "(" + "|".join(_SIZE_WORDS) + ")[[:space:]]*[:：]?[[:space:]]*[0-9]{2}"
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
