"""prodmatch.similar's last step is a function of its own: Citus replaces that step, not a copy of similar()

Until this revision `sql/citus.sql` replaced `prodmatch.similar` on a Citus coordinator by a 130-line copy whose
last step read the k nearest products' vectors by id instead of an outer join to `embeddings` and `lexical`
(which Citus plans by copying the whole sharded table to the coordinator). sql/matching.sql now builds that last
step from `prodmatch.similar_rows_sql()` (one node: the same join as before, so the same rows at the same speed),
and citus.sql replaces only that function. This revision re-applies sql/matching.sql so a database made earlier
gets the new function and similar()'s new text (on Citus, `db upgrade` then re-applies citus.sql's functions, as
after every migration). Downgrading keeps both: the older similar() text returned the same rows.

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
