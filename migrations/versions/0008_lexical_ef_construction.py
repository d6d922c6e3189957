"""lexical index: HNSW ef_construction 32 (was pgvector's default 64)

The sparse HNSW index on prodmatch.lexical.vector is built once per full rebuild of the lexical space and
written row by row afterwards; its cost is nearly all sparse inner products, and halving ef_construction
(the candidate list of each insertion) makes the build of 100,000 products about 1.7 times faster for a
recall@10 two points lower (benchmarks/lexical_build.py; docs/benchmarks.md). m stays 16. The option only
steers how rows are inserted, so the existing index is altered, not rebuilt; the next full rebuild
(prodmatch.embed.lexical_refresh) builds it with the same options.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER INDEX prodmatch.lexical_vector_hnsw SET (ef_construction = 32)")


def downgrade() -> None:
    op.execute("ALTER INDEX prodmatch.lexical_vector_hnsw RESET (ef_construction)")
