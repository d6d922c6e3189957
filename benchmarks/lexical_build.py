"""Speed of a first full build of the lexical space, and the recall of its HNSW index, in one run.

    python benchmarks/lexical_build.py [--products 100000] [--queries 200] [--variants m:ef_construction ...]

Writes `--products` generated products (two catalogues of near-copies: benchmarks/link_speed.py's generator,
brands in Latin and Cyrillic, model codes written four ways, units) straight into `prodmatch.products` of a
throw-away embedded server with COPY, then times a first `refresh_lexical` end to end and prints each of its
steps (read products, encode, IDF + weigh, COPY into `prodmatch.lexical`, HNSW build) and the total.

Then the index's recall@10 against exact lexical cosine: for `--queries` random products,
`prodmatch.similar(id, space => 'lexical')` (its default ef_search, and pgvector's default 40) against the
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
from prodmatch.embed.lexical_refresh import parse_sparse_text, refresh_lexical  # noqa: E402
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
            started = time.perf_counter()
            built = refresh_lexical(conn, build=settings.index_build)
            conn.commit()
            total = time.perf_counter() - started
            print(
                f"refresh_lexical, first build of {built.documents:,} products "
                f"(maintenance_work_mem {settings.index_build.maintenance_work_mem}, "
                f"{settings.index_build.workers} parallel workers):"
            )
            for step, seconds in built.steps.items():
                print(f"  {step:8s} {seconds:7.1f} s")
            print(f"  {'total':8s} {total:7.1f} s ({total / built.documents * 100_000:.1f} s per 100,000)")
            print(f"  {index_description(conn)}")
            print(f"load average after the build: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            queries, exact = exact_top(conn, args.queries)
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


def exact_top(conn: psycopg.Connection, queries: int) -> tuple[list[int], tuple[np.ndarray, np.ndarray]]:
    """Random query products and (all product ids ascending, each query's exact similarity to each, self -inf)."""
    ids, indptr, indices, values = [], [0], [], []
    with conn.cursor().copy(
        "COPY (SELECT product_id, vector FROM prodmatch.lexical ORDER BY 1) TO STDOUT"
    ) as c:
        for product_id, text in c.rows():
            i, v = parse_sparse_text(text)
            ids.append(int(product_id))
            indices.append(i)
            values.append(v)
            indptr.append(indptr[-1] + len(i))
    matrix = sp.csr_matrix(
        (np.concatenate(values), np.concatenate(indices), np.array(indptr)),
        shape=(len(ids), LEXICAL_DIMENSIONS),
    )
    id_array = np.array(ids)
    print(f"  mean non-zeros per indexed vector: {matrix.nnz / len(ids):.1f}")
    rows = sorted(random.Random(7).sample(range(len(ids)), queries))
    scores = (matrix[rows] @ matrix.T).toarray()
    scores[np.arange(len(rows)), rows] = -np.inf
    return [ids[r] for r in rows], (id_array, scores)


def report_recall(conn: psycopg.Connection, queries: list[int], exact: tuple[np.ndarray, np.ndarray]) -> None:
    id_array, scores = exact
    kth = -np.partition(-scores, K - 1, axis=1)[:, K - 1] - 1e-5  # each query's 10th best exact similarity
    for ef_search in (100, 40):
        hits, started = 0, time.perf_counter()
        for q, query in enumerate(queries):
            found = [
                r[0]
                for r in conn.execute(
                    "SELECT product_id FROM prodmatch.similar(%s, k => %s, space => 'lexical', ef_search => %s)",
                    (query, K, ef_search),
                )
            ]
            hits += int((scores[q, np.searchsorted(id_array, found)] >= kth[q]).sum())
        ms = (time.perf_counter() - started) / len(queries) * 1000
        print(f"  recall@{K} ef_search {ef_search}: {hits / (K * len(queries)):.3f} ({ms:.1f} ms per query)")


if __name__ == "__main__":
    main()
