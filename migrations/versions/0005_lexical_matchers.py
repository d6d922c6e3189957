"""match quality: the lexical space, product codes, learned matchers and decisions stored with each pair

- `prodmatch.lexical`: per product the raw hashed terms, the IDF-weighted `vector` (sparsevec, HNSW index,
  cosine) and the extracted product `codes` (GIN index); `prodmatch.lexical_terms`: document frequencies.
- `prodmatch.matchers`: learned match scorers stored as data (JSON / LightGBM text model), never as code.
- `prodmatch.matches` gains `lexical_similarity`, `match_probability`, `accepted` and `signals`;
  `match_runs.model_id` may be NULL (a lexical-only run) and a run names its matcher.
- similar / candidates accept space => 'lexical' and return `lexical_similarity` (their result type changes,
  so they are dropped and re-created); matches_v shows the new columns.

Existing runs keep their pairs: a pair of an earlier cosine-only run is accepted when it is its source's rank 1
(those runs stored only pairs above their threshold).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import SPARSEVEC
from sqlalchemy.dialects import postgresql

from prodmatch.store.migrate import apply_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DIMENSIONS = 2**20  # prodmatch.store.schema.LEXICAL_DIMENSIONS at this revision


def upgrade() -> None:
    op.create_table(
        "lexical",
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.UUID(), nullable=False),
        sa.Column("terms", SPARSEVEC(DIMENSIONS), nullable=False),
        sa.Column("vector", SPARSEVEC(DIMENSIONS), nullable=False),
        sa.Column(
            "codes", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False
        ),
        sa.Column("weighted_documents", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["prodmatch.products.id"],
            name=op.f("lexical_product_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("product_id", name=op.f("lexical_pkey")),
        schema="prodmatch",
    )
    op.create_index(
        "lexical_vector_hnsw",
        "lexical",
        ["vector"],
        unique=False,
        schema="prodmatch",
        postgresql_using="hnsw",
        postgresql_ops={"vector": "sparsevec_cosine_ops"},
    )
    op.create_index(
        "lexical_codes_idx", "lexical", ["codes"], unique=False, schema="prodmatch", postgresql_using="gin"
    )
    op.create_table(
        "lexical_terms",
        sa.Column("term", sa.Integer(), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("term", name=op.f("lexical_terms_pkey")),
        schema="prodmatch",
    )
    op.create_table(
        "matchers",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("features", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column(
            "metrics",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "trained_on",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["prodmatch.models.id"], name=op.f("matchers_model_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("matchers_pkey")),
        sa.UniqueConstraint("name", name=op.f("matchers_name_key")),
        schema="prodmatch",
    )
    op.execute("DROP VIEW prodmatch.matches_v")
    op.execute("DROP FUNCTION prodmatch.similar, prodmatch.candidates")
    op.alter_column("match_runs", "model_id", existing_type=sa.Integer(), nullable=True, schema="prodmatch")
    op.add_column("match_runs", sa.Column("matcher_id", sa.Integer(), nullable=True), schema="prodmatch")
    op.create_foreign_key(
        op.f("match_runs_matcher_id_fkey"),
        "match_runs",
        "matchers",
        ["matcher_id"],
        ["id"],
        source_schema="prodmatch",
        referent_schema="prodmatch",
        ondelete="SET NULL",
    )
    for column in (
        sa.Column("lexical_similarity", sa.REAL(), nullable=True),
        sa.Column("match_probability", sa.REAL(), nullable=True),
        sa.Column("accepted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("signals", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    ):
        op.add_column("matches", column, schema="prodmatch")
    op.execute("UPDATE prodmatch.matches SET accepted = true WHERE rank = 1")
    apply_sql_file(op.get_bind(), "versions/matching_0006.sql")  # the SQL API of revisions 0005 and 0006


def downgrade() -> None:
    op.execute("DROP VIEW prodmatch.matches_v")
    op.execute(
        "DROP FUNCTION prodmatch.similar, prodmatch.candidates, prodmatch.model_id_or_null, prodmatch.lexical_dimensions"
    )
    for name in ("signals", "accepted", "match_probability", "lexical_similarity"):
        op.drop_column("matches", name, schema="prodmatch")
    op.drop_constraint(
        op.f("match_runs_matcher_id_fkey"), "match_runs", schema="prodmatch", type_="foreignkey"
    )
    op.drop_column("match_runs", "matcher_id", schema="prodmatch")
    op.execute(
        "DELETE FROM prodmatch.match_runs WHERE model_id IS NULL"
    )  # lexical-only runs cannot exist at 0004
    op.alter_column("match_runs", "model_id", existing_type=sa.Integer(), nullable=False, schema="prodmatch")
    op.drop_table("matchers", schema="prodmatch")
    op.drop_table("lexical_terms", schema="prodmatch")
    op.drop_index("lexical_codes_idx", table_name="lexical", schema="prodmatch", postgresql_using="gin")
    op.drop_index("lexical_vector_hnsw", table_name="lexical", schema="prodmatch", postgresql_using="hnsw")
    op.drop_table("lexical", schema="prodmatch")
    apply_sql_file(op.get_bind(), "versions/matching_0004.sql")  # the SQL API as it was at revision 0004
