"""attribute roles per catalogue: prodmatch.catalogs.attribute_roles

A JSON object {attribute key as written: role} with role one of brand, code, gtin, identifying or none (switches
a built-in key off), read on top of the built-in key lists of `prodmatch.roles`. Set by
`prodmatch ingest --attribute-role` and `prodmatch catalog roles`.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE prodmatch.catalogs ADD COLUMN attribute_roles jsonb NOT NULL DEFAULT '{}'::jsonb")
    op.execute(
        "ALTER TABLE prodmatch.catalogs ADD CONSTRAINT catalogs_attribute_roles_is_object_check"
        " CHECK (jsonb_typeof(attribute_roles) = 'object')"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE prodmatch.catalogs DROP COLUMN attribute_roles")
