"""SQLAlchemy table definitions: the single source of truth for the `prodmatch` Postgres schema.

Alembic's migrations in `migrations/` create exactly these tables (autogenerate compares against `metadata`).
Everything lives in the Postgres schema `prodmatch` so it sits beside an application's own tables. The table and
column names here are public: analysts and applications write SQL against them.
"""

from __future__ import annotations

from pgvector.sqlalchemy import HALFVEC, SPARSEVEC, VECTOR
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL, UUID

SCHEMA = "prodmatch"

metadata = MetaData(
    schema=SCHEMA,
    naming_convention={
        "ix": "%(table_name)s_%(column_0_N_name)s_idx",
        "uq": "%(table_name)s_%(column_0_N_name)s_key",
        "ck": "%(table_name)s_%(constraint_name)s_check",
        "fk": "%(table_name)s_%(column_0_name)s_fkey",
        "pk": "%(table_name)s_pkey",
    },
)


def _now() -> Column:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


# What makes a product "changed": any field that can feed an embedding or a match. The hash is a generated
# column, so rows written by an application's plain SQL get it too.
CONTENT_HASH_SQL = (
    "(md5(coalesce(title, '') || chr(31) || coalesce(description, '') || chr(31) || coalesce(brand, '')"
    " || chr(31) || coalesce(category, '') || chr(31) || coalesce(price::text, '') || chr(31)"
    " || coalesce(currency, '') || chr(31) || coalesce(image, '') || chr(31) || attributes::text))::uuid"
)

catalogs = Table(
    "catalogs",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("description", Text),
    _now(),
    # {attribute key as written: role} on top of prodmatch.roles' built-in keys (0010)
    Column("attribute_roles", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    CheckConstraint("name <> ''", name="name_not_empty"),
    CheckConstraint("jsonb_typeof(attribute_roles) = 'object'", name="attribute_roles_is_object"),
)

products = Table(
    "products",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("catalog_id", BigInteger, ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
    Column("external_id", Text, nullable=False),
    Column("title", Text),
    Column("description", Text),
    Column("brand", Text),
    Column("category", Text),
    Column("price", Numeric),
    Column("currency", Text),
    Column("image", Text),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("content_hash", UUID(as_uuid=True), Computed(CONTENT_HASH_SQL, persisted=True)),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("catalog_id", "external_id"),
    CheckConstraint("external_id <> ''", name="external_id_not_empty"),
    CheckConstraint("price >= 0", name="price_not_negative"),
    CheckConstraint("jsonb_typeof(attributes) = 'object'", name="attributes_is_object"),
)
Index("products_updated_at_idx", products.c.updated_at)  # `link --watch`: what changed since (0008)

models = Table(
    "models",
    metadata,
    Column("id", Integer, Identity(always=False), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("source", Text, nullable=False),
    Column("revision", Text),
    Column("family", Text, nullable=False),
    Column("dimension", Integer, nullable=False),
    Column("fused_dimension", Integer, nullable=False),
    Column("fusion", Text, nullable=False, server_default="mean"),
    Column("image_weight", Float, nullable=False, server_default=text("0.5")),
    Column("text_template", Text, nullable=False),
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _now(),
    # Where the model's vectors live: 4-byte `vector` in embeddings.*_vector, 2-byte `halfvec` in *_half.
    Column("storage", Text, nullable=False, server_default="vector"),
    CheckConstraint("fusion IN ('mean', 'concat')", name="fusion_known"),
    CheckConstraint("storage IN ('vector', 'halfvec')", name="storage_known"),
    CheckConstraint("image_weight BETWEEN 0 AND 1", name="image_weight_range"),
    CheckConstraint("dimension > 0 AND fused_dimension > 0", name="dimension_positive"),
)

EMBEDDING_STATUSES = ("pending", "done", "image_error", "failed")

embeddings = Table(
    "embeddings",
    metadata,
    Column("product_id", BigInteger, ForeignKey("products.id", ondelete="CASCADE"), nullable=False),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    # No fixed dimension: models of different sizes live side by side; each model gets its own partial
    # expression HNSW indexes cast to its dimension (see prodmatch.models).
    Column("image_vector", VECTOR()),
    Column("text_vector", VECTOR()),
    Column("fused_vector", VECTOR()),
    # The same vectors as 2-byte floats, for a model with halfvec storage (its *_vector columns stay NULL).
    Column("image_half", HALFVEC()),
    Column("text_half", HALFVEC()),
    Column("fused_half", HALFVEC()),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("content_hash", UUID(as_uuid=True)),
    Column("embedded_at", DateTime(timezone=True)),
    # A worker's claim: which backend holds it and until when (a dead backend's claim is taken over).
    Column("claimed_by", Text),
    Column("claimed_pid", Integer),
    Column("claimed_at", DateTime(timezone=True)),
    Column("claim_expires_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("model_id", "product_id"),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in EMBEDDING_STATUSES) + ")", name="status_known"
    ),
)
Index("embeddings_product_id_idx", embeddings.c.product_id)
# "What was written since?" for `link --watch` (migration 0008), on each table whose writes move matches.
Index("embeddings_embedded_at_idx", embeddings.c.embedded_at)
Index(
    "embeddings_pending_idx",
    embeddings.c.model_id,
    embeddings.c.product_id,
    postgresql_where=text("status = 'pending'"),
)

# The lexical space: hashed character n-grams, words and codes of each product's text (prodmatch.embed.lexical),
# with no neural model. `terms` keeps the raw term frequencies (to re-weigh when IDF moves); `vector` is the
# IDF-weighted, L2-normalised form that similar / candidates / link search through the HNSW index.
LEXICAL_DIMENSIONS = 2**20
# HNSW options of the lexical index (migration 0009). Its build is nearly all sparse inner products; with m 12 and
# ef_construction 24 instead of pgvector's 16 and 64 it is ~2-2.5x faster (100,000 products in 25-38 s on 2 cores)
# for recall@10 0.67 instead of 0.75 at similar()'s ef_search 100 (benchmarks/lexical_build.py,
# docs/benchmarks.md). The full rebuild in embed/lexical_refresh.py uses them too.
LEXICAL_HNSW = {"m": 12, "ef_construction": 24}

lexical = Table(
    "lexical",
    metadata,
    Column("product_id", BigInteger, ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
    Column("content_hash", UUID(as_uuid=True), nullable=False),
    Column("terms", SPARSEVEC(LEXICAL_DIMENSIONS), nullable=False),
    Column("vector", SPARSEVEC(LEXICAL_DIMENSIONS), nullable=False),
    # Product codes (model numbers, MPN / SKU-like tokens, check-digit-verified GTINs as 'gtin:' + GTIN-14).
    Column("codes", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("weighted_documents", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index(
    "lexical_vector_hnsw",
    lexical.c.vector,
    postgresql_using="hnsw",
    postgresql_ops={"vector": "sparsevec_cosine_ops"},
    postgresql_with=LEXICAL_HNSW,
)
Index("lexical_codes_idx", lexical.c.codes, postgresql_using="gin")
Index("lexical_updated_at_idx", lexical.c.updated_at)
Index("lexical_weighted_documents_idx", lexical.c.weighted_documents)  # the refresh's min(): one probe

# Document frequency of each hashed lexical term over all products, kept current by the lexical refresh.
lexical_terms = Table(
    "lexical_terms",
    metadata,
    Column("term", Integer, primary_key=True),
    Column("documents", Integer, nullable=False),
)

# Learned match scorers ("matchers"): a definition that cannot execute code (JSON coefficients or LightGBM's
# text model), the features it reads, its threshold and its cross-validated metrics.
matchers = Table(
    "matchers",
    metadata,
    Column("id", Integer, Identity(always=False), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE")),
    Column("kind", Text, nullable=False),
    Column("definition", JSONB, nullable=False),
    Column("features", ARRAY(Text), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("metrics", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("trained_on", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _now(),
)

match_runs = Table(
    "match_runs",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("kind", Text, nullable=False, server_default="link"),
    Column("source_catalog_id", BigInteger, ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
    Column("target_catalog_id", BigInteger, ForeignKey("catalogs.id", ondelete="CASCADE")),
    # NULL for a run on the lexical space alone (no neural model registered).
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE")),
    Column("matcher_id", Integer, ForeignKey("matchers.id", ondelete="SET NULL")),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _now(),
    CheckConstraint("kind IN ('link', 'dedupe')", name="kind_known"),
)
# Re-running link or dedupe with the same parameters replaces the run instead of adding a second one.
Index(
    "match_runs_identity_idx",
    match_runs.c.kind,
    match_runs.c.source_catalog_id,
    match_runs.c.target_catalog_id,
    match_runs.c.model_id,
    match_runs.c.params,
    unique=True,
    postgresql_nulls_not_distinct=True,
)

matches = Table(
    "matches",
    metadata,
    Column("run_id", BigInteger, ForeignKey("match_runs.id", ondelete="CASCADE"), nullable=False),
    Column("source_product_id", BigInteger, ForeignKey("products.id", ondelete="CASCADE"), nullable=False),
    Column("target_product_id", BigInteger, ForeignKey("products.id", ondelete="CASCADE"), nullable=False),
    Column("rank", SmallInteger, nullable=False),
    Column("fused_similarity", REAL),
    Column("image_similarity", REAL),
    Column("text_similarity", REAL),
    Column("lexical_similarity", REAL),
    # The learned matcher's calibrated probability (NULL for a cosine-only run) and the run's decision.
    Column("match_probability", REAL),
    Column("accepted", Boolean, nullable=False, server_default=text("false")),
    # Every signal the decision used, by name (codes agree / conflict, price log-ratio, ranks, ...).
    Column("signals", JSONB),
    PrimaryKeyConstraint("run_id", "source_product_id", "target_product_id"),
)
Index("matches_target_product_id_idx", matches.c.target_product_id)

duplicate_clusters = Table(
    "duplicate_clusters",
    metadata,
    Column("run_id", BigInteger, ForeignKey("match_runs.id", ondelete="CASCADE"), nullable=False),
    Column("cluster_id", Integer, nullable=False),
    Column("product_id", BigInteger, ForeignKey("products.id", ondelete="CASCADE"), nullable=False),
    Column("is_centre", Boolean, nullable=False, server_default=text("false")),
    Column("similarity", REAL),
    PrimaryKeyConstraint("run_id", "product_id"),
)
Index(
    "duplicate_clusters_run_id_cluster_id_idx", duplicate_clusters.c.run_id, duplicate_clusters.c.cluster_id
)

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("catalog_id", BigInteger, ForeignKey("catalogs.id", ondelete="CASCADE"), nullable=False),
    Column("file", Text, nullable=False),
    Column("format", Text, nullable=False),
    Column("options", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("inserted", Integer, nullable=False, server_default=text("0")),
    Column("updated", Integer, nullable=False, server_default=text("0")),
    Column("unchanged", Integer, nullable=False, server_default=text("0")),
    Column("rejected", Integer, nullable=False, server_default=text("0")),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
)

ingest_rejects = Table(
    "ingest_rejects",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("ingest_run_id", BigInteger, ForeignKey("ingest_runs.id", ondelete="CASCADE"), nullable=False),
    Column("file", Text, nullable=False),
    Column("line", Integer, nullable=False),
    Column("external_id", Text),
    Column("field", Text),
    Column("reason", Text, nullable=False),
    Column("raw", Text),
)
Index("ingest_rejects_ingest_run_id_idx", ingest_rejects.c.ingest_run_id)

labels = Table(
    "labels",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("source_product_id", BigInteger, ForeignKey("products.id", ondelete="CASCADE"), nullable=False),
    Column("target_product_id", BigInteger, ForeignKey("products.id", ondelete="CASCADE"), nullable=False),
    Column("label", Text, nullable=False),
    Column("labelled_by", Text, nullable=False),
    Column("labelled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("run_id", BigInteger, ForeignKey("match_runs.id", ondelete="SET NULL")),
    # Answers are never overwritten: a new answer to a pair clears the old row's flag, so history stays.
    Column("is_current", Boolean, nullable=False, server_default=text("true")),
    CheckConstraint("label IN ('match', 'non-match', 'unsure')", name="label_known"),
    CheckConstraint("source_product_id <> target_product_id", name="two_products"),
)
# One current answer per pair: concurrent writers serialise on an advisory lock and this index is the backstop.
Index(
    "labels_current_pair_key",
    labels.c.source_product_id,
    labels.c.target_product_id,
    unique=True,
    postgresql_where=text("is_current"),
)
Index("labels_target_product_id_idx", labels.c.target_product_id)
Index("labels_labelled_by_labelled_at_idx", labels.c.labelled_by, labels.c.labelled_at)

# Clusters of products across catalogues (`prodmatch clusters build`, migration 0011): the accepted pairs of link
# runs and the duplicate clusters of dedupe runs, joined by average linkage (`match.assign.offer_clusters`). An id lives as long as its
# cluster does (prodmatch.match.clusters says how ids survive merges and splits); only clusters of two or more
# products have rows.
clusters = Table(
    "clusters",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

product_clusters = Table(
    "product_clusters",
    metadata,
    Column("product_id", BigInteger, ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
    Column("cluster_id", BigInteger, ForeignKey("clusters.id", ondelete="CASCADE"), nullable=False),
)
Index("product_clusters_cluster_id_idx", product_clusters.c.cluster_id)

# One row per clustering written: which runs fed it (`requested_runs` NULL: the default choice of runs).
cluster_builds = Table(
    "cluster_builds",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("runs", ARRAY(BigInteger), nullable=False),
    Column("requested_runs", ARRAY(BigInteger)),
    Column("clusters", Integer, nullable=False),
    Column("products", Integer, nullable=False),
    _now(),
)

# Tables whose row counts `prodmatch db status` shows, in data-path order.
STATUS_TABLES = (
    "catalogs",
    "products",
    "models",
    "embeddings",
    "match_runs",
    "matches",
    "duplicate_clusters",
    "ingest_runs",
    "ingest_rejects",
    "labels",
    "clusters",
    "product_clusters",
)
