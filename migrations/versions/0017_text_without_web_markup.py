"""product text read without web markup: re-encode the lexical rows whose text has HTML entities or tags

From this revision every reader of product text decodes HTML entities and drops tags first
(`prodmatch.markup.plain`: "Black &amp; Decker" is "Black & Decker", "&#8220;" no longer the number 8220,
"<b>" no longer a word "b"). A product whose text has an entity or a tag was encoded with those terms, so its
lexical row is marked stale and the next refresh (`link`, `eval`, `embed`, `matcher train` run one first)
re-encodes it; other rows are untouched. Vectors are left as they are (the model reads the plain text from
the next time a product is embedded). Downgrading marks the same rows stale again.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# the value `prodmatch.store.catalogs.mark_lexical_stale` writes: no real md5 content hash equals it
_STALE = "00000000-0000-0000-0000-000000000000"

# an HTML entity ("&amp;", "&#8220;", "&#x201C;") or an element tag ("<b>", "</p>", "<br/>") or a comment, as
# `prodmatch.markup` read them when this revision was written
_MARKUP = r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});|</?[A-Za-z][A-Za-z0-9]*([[:space:]][^<>]*)?/?>|<!--"


def _mark_stale() -> None:
    op.get_bind().execute(
        sa.text(
            "UPDATE prodmatch.lexical SET content_hash = :stale WHERE product_id IN ("
            " SELECT id FROM prodmatch.products WHERE concat_ws(' ', title, brand, category, description,"
            " attributes::text) ~ :pattern)"
        ),
        {"stale": _STALE, "pattern": _MARKUP},
    )


def upgrade() -> None:
    _mark_stale()


def downgrade() -> None:
    _mark_stale()
