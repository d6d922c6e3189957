"""lexical index: HNSW m 12 and ef_construction 24 (were pgvector's defaults 16 and 64)

The sparse HNSW index on prodmatch.lexical.vector is built at every full rebuild of the lexical space
(prodmatch.embed.lexical_refresh) and written row by row afterwards. Its build is nearly all sparse inner
products, half of them choosing neighbours; with m 12 and ef_construction 24 it is ~2-2.5 times faster (100,000
products: 25-38 s instead of 65-80 s on 2 cores), for a recall@10 of 0.67 instead of 0.75 against the exact
lexical cosine at similar()'s ef_search 100 (benchmarks/lexical_build.py, docs/benchmarks.md). `link`, `eval` and
`matcher train` do not use this index (their lexical top-k is exact), so match quality is unchanged.

m is fixed when an index is built, so the index is built again (at once for the rows there are).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _rebuild_index("WITH (m = 12, ef_construction = 24)")


def downgrade() -> None:
    _rebuild_index("")


def _rebuild_index(options: str) -> None:
    op.execute("DROP INDEX prodmatch.lexical_vector_hnsw")
    op.execute(
        "CREATE INDEX lexical_vector_hnsw ON prodmatch.lexical USING hnsw (vector sparsevec_cosine_ops) "
        + options
    )
