"""SQL API: prodmatch.catalog_id(name), one catalogue lookup used by similar, search and candidates

The three functions each looked the catalogue up by name and raised their own error; they now call
`prodmatch.catalog_id(name)` (beside `prodmatch.model_id`), which the Python side calls as well, so an unknown
catalogue reads the same everywhere and lists the catalogues that exist.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from prodmatch.store.migrate import apply_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_file(
        op.get_bind(), "versions/matching_0004.sql"
    )  # CREATE OR REPLACE: adds catalog_id, re-creates its callers


def downgrade() -> None:
    # similar / search / candidates keep calling catalog_id (the SQL file is the current one), so the helper stays;
    # 0002's downgrade drops it together with the other functions.
    pass
