"""How long building the clusters of offers takes as a run's accepted pairs grow (what `link --watch` pays after a
pass that changed its accepted pairs).

    python benchmarks/clusters.py [--sources 30000 300000]

For each size: a throw-away embedded PostgreSQL (or PRODMATCH_DATABASE_URL) gets two catalogues of that many
products and a link run accepting each source's twin and, for every third source, the next target too (clusters
of two to four offers). Prints the first build, a rebuild with nothing changed, and a rebuild after ten accepted
pairs were withdrawn (twenty products move).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prodmatch import store as db  # noqa: E402
from prodmatch.config import Settings, load_settings  # noqa: E402
from prodmatch.match.clusters import build_clusters, rebuild_clusters  # noqa: E402

PAIRS = """INSERT INTO prodmatch.matches (run_id, source_product_id, target_product_id, rank, accepted,
 match_probability) SELECT %(run)s, a.id, b.id, %(rank)s, true, 0.9 FROM prodmatch.products a
 JOIN prodmatch.products b ON b.catalog_id = %(b)s AND b.external_id = 'p' || (substr(a.external_id, 2)::int + %(step)s)
 WHERE a.catalog_id = %(a)s AND substr(a.external_id, 2)::int %% %(every)s = 0"""


def measure(settings: Settings, sources: int) -> str:
    with db.connection(settings) as conn:
        a, b = (
            conn.execute(
                "INSERT INTO prodmatch.catalogs (name) VALUES (%s) RETURNING id", (name,)
            ).fetchone()[0]
            for name in (f"a{sources}", f"b{sources}")
        )
        for catalog in (a, b):
            conn.execute(
                "INSERT INTO prodmatch.products (catalog_id, external_id, title)"
                " SELECT %s, 'p' || i, 'product ' || i FROM generate_series(1, %s) i",
                (catalog, sources),
            )
        run = conn.execute(
            "INSERT INTO prodmatch.match_runs (kind, source_catalog_id, target_catalog_id)"
            " VALUES ('link', %s, %s) RETURNING id",
            (a, b),
        ).fetchone()[0]
        conn.execute(PAIRS, {"run": run, "rank": 1, "a": a, "b": b, "step": 0, "every": 1})
        conn.execute(PAIRS, {"run": run, "rank": 2, "a": a, "b": b, "step": 1, "every": 3})
        conn.commit()
        pairs = conn.execute("SELECT count(*) FROM prodmatch.matches WHERE run_id = %s", (run,)).fetchone()[0]
        conn.commit()
        started = time.perf_counter()
        first = build_clusters(conn, [run])
        built = time.perf_counter() - started
        started = time.perf_counter()
        rebuild_clusters(conn)
        unchanged = time.perf_counter() - started
        conn.execute(
            "UPDATE prodmatch.matches SET accepted = false WHERE run_id = %(run)s AND rank = 2"
            " AND source_product_id IN (SELECT source_product_id FROM prodmatch.matches"
            "  WHERE run_id = %(run)s AND rank = 2 ORDER BY 1 LIMIT 10)",
            {"run": run},
        )
        conn.commit()
        started = time.perf_counter()
        changed = rebuild_clusters(conn)
        after = time.perf_counter() - started
    return (
        f"{pairs:>9,} accepted pairs, {first.clusters:>8,} clusters: first build {built:6.2f} s,"
        f" rebuild with nothing changed {unchanged:5.2f} s, after 10 pairs withdrawn {after:5.2f} s"
        f" ({changed.moved} products moved)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=int, nargs="+", default=[30_000, 300_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = load_settings()
        settings = env if env.database_url else Settings(home=Path(tmp) / "home")
        db.upgrade(settings)
        for sources in args.sources:
            print(measure(settings, sources), flush=True)


if __name__ == "__main__":
    main()
