"""Speed of a first full build of the lexical space, and the recall of its HNSW index, in one run.

    python benchmarks/lexical_build.py [--products 100000] [--queries 200] [--variants m:ef_construction ...]

Writes `--products` generated products (two catalogues of near-copies: benchmarks/link_speed.py's generator,
brands in Latin and Cyrillic, model codes written four ways, units) straight into `prodmatch.products` of a
throw-away embedded server with COPY, then times a first `refresh_lexical` end to end and prints each of its
steps (read products, encode, IDF + weigh, COPY into `prodmatch.lexical`, HNSW build) and the total.

Then the index's recall@10 against exact lexical cosine: for `--queries` random products,
`prodmatch.similar(id, space => 'lexical')` (its default ef_search 100, pgvector's default 40, and 200) against the
exact top 10 computed in numpy from the stored vectors. Ties count (generated copies often have identical bags
of terms): a returned product is right when its exact similarity reaches the 10th best.

`--variants 16:32 8:64 ...` rebuilds only the index with other (m, ef_construction) after the measured build and
prints the build time and recall of each, so that settings can be compared on one set of vectors.
Prints the load average before the build (other work on the machine slows every figure).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
import scipy.sparse as sp
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from link_speed import catalogues  # noqa: E402
from quality import _cpu  # noqa: E402

from prodmatch import store  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.embed.lexical import weigh_many  # noqa: E402
from prodmatch.embed.lexical_refresh import lexical_idf, parse_sparse_text, refresh_lexical  # noqa: E402
from prodmatch.store.models import use_index_build  # noqa: E402
from prodmatch.store.schema import LEXICAL_DIMENSIONS  # noqa: E402

K = 10


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--variants", nargs="*", default=[], help="m:ef_construction of extra index builds")
    args = parser.parse_args()
    print(f"CPU: {_cpu()}; {args.products:,} products; embedded PostgreSQL")
    a, b, _ = catalogues(args.products // 2)
    home = Path(tempfile.mkdtemp(prefix="prodmatch-lexical-build-"))
    try:
        settings = Settings(home=home)
        store.upgrade(settings)
        with store.connection(settings) as conn:
            started = time.perf_counter()
            load(conn, {"A": a, "B": b})
            print(f"load products (COPY): {time.perf_counter() - started:.1f} s")
            print(f"load average before the build: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            notices: list[str] = []
            conn.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
            started = time.perf_counter()
            built = refresh_lexical(conn, build=settings.index_build)
            conn.commit()
            total = time.perf_counter() - started
            print(
                f"refresh_lexical, first build of {built.documents:,} products "
                f"(maintenance_work_mem up to {settings.index_build.maintenance_work_mem}, "
                f"{settings.index_build.workers} parallel workers):"
            )
            for step, seconds in built.steps.items():
                print(f"  {step:8s} {seconds:7.1f} s")
            print(f"  {'total':8s} {total:7.1f} s ({total / built.documents * 100_000:.1f} s per 100,000)")
            print(f"  {index_description(conn)}")
            print(
                f"  graph {'spilled out of' if any('no longer fits' in n for n in notices) else 'built in'} memory"
            )
            print(f"load average after the build: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            queries, exact = exact_scores(conn, args.queries)
            report_recall(conn, queries, exact)
            for variant in args.variants:
                m, ef_construction = (int(x) for x in variant.split(":"))
                started = time.perf_counter()
                conn.execute("DROP INDEX prodmatch.lexical_vector_hnsw")
                use_index_build(conn, settings.index_build)
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX lexical_vector_hnsw ON prodmatch.lexical USING hnsw"
                        " (vector sparsevec_cosine_ops) WITH (m = {}, ef_construction = {})"
                    ).format(sql.Literal(m), sql.Literal(ef_construction))
                )
                conn.commit()
                print(f"index m={m} ef_construction={ef_construction}: {time.perf_counter() - started:.1f} s")
                report_recall(conn, queries, exact)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def load(conn: psycopg.Connection, catalogs: dict[str, list[dict]]) -> None:
    for name, rows in catalogs.items():
        catalog_id = conn.execute(
            "INSERT INTO prodmatch.catalogs (name) VALUES (%s) RETURNING id", (name,)
        ).fetchone()[0]
        with conn.cursor().copy(
            "COPY prodmatch.products (catalog_id, external_id, title, brand, price, currency) FROM STDIN"
        ) as copy:
            for i, row in enumerate(rows):
                copy.write_row((catalog_id, f"{name}-{i}", row["title"], row["brand"], row["price"], "EUR"))
    conn.execute("ANALYZE prodmatch.products")
    conn.commit()


def index_description(conn: psycopg.Connection) -> str:
    size, definition = conn.execute(
        "SELECT pg_size_pretty(pg_relation_size('prodmatch.lexical_vector_hnsw')),"
        " pg_get_indexdef('prodmatch.lexical_vector_hnsw'::regclass)"
    ).fetchone()
    return f"index {size}: {definition}"


def exact_scores(conn: psycopg.Connection, queries: int) -> tuple[list[int], dict[str, tuple]]:
    """Random query products and, per reference, (all product ids ascending, each query's exact similarity to
    each product, self -inf): "stored" from the stored (indexed) vectors, "full" from every raw term weighed with
    the current IDF (the lexical cosine before any cut to `VECTOR_TERMS`)."""
    columns = {}
    for column in ("vector", "terms"):
        ids, indptr, indices, values = [], [0], [], []
        statement = sql.SQL("COPY (SELECT product_id, {} FROM prodmatch.lexical ORDER BY 1) TO STDOUT")
        with conn.cursor().copy(statement.format(sql.Identifier(column))) as copy:
            for product_id, text in copy.rows():
                i, v = parse_sparse_text(text)
                ids.append(int(product_id))
                indices.append(i)
                values.append(v)
                indptr.append(indptr[-1] + len(i))
        columns[column] = (np.array(ids), indices, values, indptr)
    ids, indices, values, indptr = columns["vector"]
    print(f"  mean non-zeros per indexed vector: {indptr[-1] / len(ids):.1f}")
    stored = sp.csr_matrix(
        (np.concatenate(values), np.concatenate(indices), np.array(indptr)),
        shape=(len(ids), LEXICAL_DIMENSIONS),
    )
    ids, indices, values, _ = columns["terms"]
    full_vectors = weigh_many(list(zip(indices, values, strict=True)), lexical_idf(conn))
    lengths = [len(i) for i, _ in full_vectors]
    full = sp.csr_matrix(
        (
            np.concatenate([v for _, v in full_vectors]),
            np.concatenate([i for i, _ in full_vectors]),
            np.concatenate([[0], np.cumsum(lengths)]),
        ),
        shape=(len(ids), LEXICAL_DIMENSIONS),
    )
    rows = sorted(random.Random(7).sample(range(len(ids)), queries))
    references = {}
    for name, matrix in (("full", full), ("stored", stored)):
        scores = (matrix[rows] @ matrix.T).toarray()
        scores[np.arange(len(rows)), rows] = -np.inf
        references[name] = (ids, scores)
    return [int(ids[r]) for r in rows], references


def report_recall(conn: psycopg.Connection, queries: list[int], references: dict[str, tuple]) -> None:
    for ef_search in (100, 40, 200):
        found, started = [], time.perf_counter()
        for query in queries:
            found.append(
                [
                    r[0]
                    for r in conn.execute(
                        "SELECT product_id FROM prodmatch.similar(%s, k => %s, space => 'lexical',"
                        " ef_search => %s)",
                        (query, K, ef_search),
                    )
                ]
            )
        ms = (time.perf_counter() - started) / len(queries) * 1000
        recalls = []
        for name, (id_array, scores) in references.items():
            kth = -np.partition(-scores, K - 1, axis=1)[:, K - 1] - 1e-5  # each query's 10th best similarity
            hits = sum(
                int((scores[q, np.searchsorted(id_array, ids)] >= kth[q]).sum())
                for q, ids in enumerate(found)
            )
            recalls.append(f"{hits / (K * len(queries)):.3f} vs exact {name} cosine")
        print(f"  recall@{K} ef_search {ef_search}: {', '.join(recalls)} ({ms:.1f} ms per query)")


if __name__ == "__main__":
    main()
