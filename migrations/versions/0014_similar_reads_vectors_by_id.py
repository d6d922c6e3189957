"""prodmatch.similar reads the k nearest products' vectors by id: one form on one node and on Citus

Until this revision `sql/citus.sql` replaced `prodmatch.similar` on a Citus coordinator by a copy whose last step
read the k nearest products' vectors by id instead of an outer join to `embeddings` and `lexical` (which Citus
plans by copying the whole sharded table to the coordinator). sql/matching.sql now has that form for every
database, and citus.sql no longer carries a copy. This revision re-applies sql/matching.sql so a database made
earlier gets it too (on Citus, `db upgrade` then re-applies citus.sql's own functions, as after every
migration). The rows are the same on one node; downgrading keeps the function (the older text returned the same
rows).

Revision ID: 0014
Revises: 0013
"""

from alembic import op

from prodmatch.store.migrate import apply_sql_file

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_file(op.get_bind(), "matching.sql")


def downgrade() -> None:
    pass  # the same rows either way; see the docstring
